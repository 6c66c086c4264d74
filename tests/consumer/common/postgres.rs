//! Effects in PostgreSQL: the [`PgInbox`] of a store in a schema of the
//! test's own, and a handler that counts each message in a table, in the
//! transaction that claims it.

use std::sync::Arc;

use annals::BoxError;
use annals_kafka::{Handler, ReceivedEvent};
use annals_postgres::{PgEventStore, PgInbox, PgTx};
use annals_tests::postgres::Schema;
use uuid::Uuid;

use super::{Backend, Effect, Faults, Ping};

/// The counter table: how often each message had its effect, with where
/// the first one came from. `first` orders the rows by first commit.
const CREATE_COUNTS: &str = "CREATE TABLE {schema}.counts ( \
                                 message_id uuid PRIMARY KEY, \
                                 key text, \
                                 partition integer NOT NULL, \
                                 \"offset\" bigint NOT NULL, \
                                 count integer NOT NULL, \
                                 first bigserial NOT NULL)";

/// The handler's effect: a new row, or one more on the message's count.
const COUNT: &str = "INSERT INTO {schema}.counts (message_id, key, partition, \"offset\", count) \
                     VALUES ($1, $2, $3, $4, 1) \
                     ON CONFLICT (message_id) DO UPDATE SET count = counts.count + 1";

const READ_COUNTS: &str =
    "SELECT message_id, key, partition, \"offset\", count FROM {schema}.counts ORDER BY first";

/// Effects in a counter table beside the inbox, in a schema dropped at the
/// end of the test.
#[derive(Debug, Clone)]
pub(crate) struct PostgresBackend {
    store: PgEventStore,
    sql: Arc<Statements>,
    /// Dropped with the last clone, which drops the schema.
    schema: Arc<Schema>,
}

#[derive(Debug)]
struct Statements {
    count: String,
    read_counts: String,
}

impl PostgresBackend {
    pub(crate) async fn new() -> Self {
        let schema = Schema::new();
        // Every partition of both members of a group may hold a
        // transaction at once, and pruning takes a connection too.
        let store = PgEventStore::connect(schema.config().with_pool_size(16))
            .await
            .expect("connecting to the test database");
        let render = |sql: &str| sql.replace("{schema}", &format!("\"{}\"", schema.name()));
        store
            .pool()
            .get()
            .await
            .expect("a connection")
            .batch_execute(&render(CREATE_COUNTS))
            .await
            .expect("the counter table");
        PostgresBackend {
            store,
            sql: Arc::new(Statements {
                count: render(COUNT),
                read_counts: render(READ_COUNTS),
            }),
            schema: Arc::new(schema),
        }
    }
}

impl PostgresBackend {
    /// The `application_name` of the store's connections, to find (and
    /// kill) them by.
    pub(crate) fn application_name(&self) -> String {
        self.schema.application_name()
    }
}

/// The counting handler over [`PgInbox`].
#[derive(Debug, Clone)]
pub(crate) struct CountInPostgres {
    faults: Faults,
    sql: Arc<Statements>,
}

impl Handler<PgTx> for CountInPostgres {
    type Event = Ping;

    async fn handle(&self, tx: &mut PgTx, received: &ReceivedEvent<Ping>) -> Result<(), BoxError> {
        let message = &received.message;
        if self.faults.fails(message.message_id) {
            return Err(format!("ping {} is poisoned", received.event.n).into());
        }
        let statement = tx.prepare_cached(&self.sql.count).await?;
        tx.execute(
            &statement,
            &[
                &message.message_id,
                &message.key,
                &message.origin.partition,
                &message.origin.offset,
            ],
        )
        .await?;
        Ok(())
    }
}

impl Backend for PostgresBackend {
    type Inbox = PgInbox;
    type Effect = CountInPostgres;

    fn inbox(&self) -> PgInbox {
        PgInbox::new(&self.store)
    }

    fn effect(&self, faults: Faults) -> CountInPostgres {
        CountInPostgres {
            faults,
            sql: Arc::clone(&self.sql),
        }
    }

    /// One effect per count: a message counted twice shows twice.
    async fn effects(&self) -> Vec<Effect> {
        let client = self.store.pool().get().await.expect("a connection");
        let rows = client
            .query(&self.sql.read_counts, &[])
            .await
            .expect("reading the counts");
        let mut effects = Vec::with_capacity(rows.len());
        for row in rows {
            let effect = Effect {
                message_id: row.get::<_, Uuid>(0),
                key: row.get(1),
                partition: row.get(2),
                offset: row.get(3),
            };
            let count: i32 = row.get(4);
            effects.extend(std::iter::repeat_n(effect, count as usize));
        }
        effects
    }
}
