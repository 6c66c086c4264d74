//! The `projection` suite: how fast the projection runner catches up with
//! 1,000,000 events, applying one upsert per event to a read-model table,
//! beside the same client reading the same events and applying the same
//! upserts in batches with raw statements.

use std::time::{Duration, Instant};

use annals::ProjectionBackend as _;
use annals::{
    AppendRequest, BoxError, Envelope, EventStore, ExpectedVersion, GlobalPosition, Projection,
    ProjectionRunner, StreamId,
};
use annals_postgres::tokio_postgres::types::{FromSql, Type};
use annals_postgres::{PgEventStore, PgProjectionBackend, PgTx, Xid8};
use futures::future::try_join_all;
use tokio_postgres::Client;

use super::append::model::{AccountEvent, deposits};
use crate::database::Database;
use crate::report::{Better, Measurement};

const SUITE: &str = "projection";
/// Events in the global stream.
const EVENTS: usize = 1_000_000;
/// Accounts the events are spread over: rows of the read model.
const ACCOUNTS: usize = 1_000;
/// Events per append while filling.
const PER_APPEND: usize = 1_000;
/// Events per batch, for the runner (its default) and the raw reader.
const BATCH: usize = 500;
/// Catch-ups of each reader, alternating.
const ROUNDS: usize = 2;

pub(crate) async fn run(database: &Database) -> Result<Vec<Measurement>, String> {
    let store = database
        .store("projection", |config| config)
        .await
        .map_err(|error| error.to_string())?;
    let started = Instant::now();
    let last = fill(&store).await?;
    eprintln!(
        "  filled {EVENTS} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    vacuum(database, &store).await?;
    // Alternating rounds, the better of each kept: the machine may be
    // shared, and the first reader also warms the caches for the second.
    let (mut raw, mut runner) = (0.0_f64, 0.0_f64);
    for round in 1..=ROUNDS {
        // A task of its own, as the runner is: a future driven by the
        // main thread would pay a cross-thread wake-up per statement.
        settle(database).await;
        let raw_round = tokio::spawn(raw_catch_up(database.connect(), store.clone(), last, round))
            .await
            .map_err(|error| error.to_string())??;
        settle(database).await;
        let runner_round = runner_catch_up(&store, last, round).await?;
        eprintln!(
            "  round {round}: raw catch-up {raw_round:.0} events/s, runner {runner_round:.0} events/s"
        );
        (raw, runner) = (raw.max(raw_round), runner.max(runner_round));
    }
    Ok(vec![
        Measurement::new(
            SUITE,
            "catch-up of 1,000,000 events, one upsert per event, batches of 500 (events/s)",
            runner,
            "events/s",
        )
        .with_limit(raw, Better::Higher),
    ])
}

/// Appends `EVENTS` deposits to `ACCOUNTS` accounts, four appends at a time;
/// the position of the last one.
async fn fill(store: &PgEventStore) -> Result<GlobalPosition, String> {
    let appends_per_account = EVENTS / ACCOUNTS / PER_APPEND;
    let writers = (0..4).map(|writer| {
        let store = store.clone();
        async move {
            let mut last = GlobalPosition::START;
            for account in (writer..ACCOUNTS).step_by(4) {
                let stream = StreamId::new(format!("account-{account}"))
                    .map_err(|error| error.to_string())?;
                for append in 0..appends_per_account {
                    let version = (append * PER_APPEND) as u64;
                    let expected = match version {
                        0 => ExpectedVersion::NoStream,
                        version => ExpectedVersion::Exact(version),
                    };
                    let request = AppendRequest::new(stream.clone(), expected)
                        .events(deposits(version as i64 + 1, PER_APPEND));
                    let outcome = store
                        .append(request)
                        .await
                        .map_err(|error| error.to_string())?;
                    last = last.max(outcome.last_position);
                }
            }
            Ok::<_, String>(last)
        }
    });
    let lasts = try_join_all(writers).await?;
    Ok(lasts.into_iter().max().unwrap_or(GlobalPosition::START))
}

/// Vacuums the events table, so that both readers find the same
/// visibility map (index-only scans) whichever runs first.
async fn vacuum(database: &Database, store: &PgEventStore) -> Result<(), String> {
    let client = database
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    client
        .batch_execute(&format!("VACUUM ANALYZE \"{}\".events", store.schema()))
        .await
        .map_err(|error| error.to_string())
}

/// Writes out what the previous phase left dirty (`CHECKPOINT`), so that
/// neither reader pays for the writes of the fill or of the other reader.
/// Without the privilege it needs, the run goes on unsettled, and says so.
async fn settle(database: &Database) {
    let settled = match database.connect().await {
        Ok(client) => client
            .batch_execute("CHECKPOINT")
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = settled {
        eprintln!("  could not run CHECKPOINT between the readers ({error}); going on without");
    }
}

/// The read model: per account, the balance and the number of deposits.
struct Balances {
    upsert: String,
}

impl Balances {
    fn new(schema: &str, table: &str) -> Self {
        let upsert = format!(
            "INSERT INTO \"{schema}\".{table} AS balance (account, balance, deposits) \
             VALUES ($1, $2, 1) \
             ON CONFLICT (account) DO UPDATE \
                SET balance = balance.balance + excluded.balance, \
                    deposits = balance.deposits + 1"
        );
        Balances { upsert }
    }
}

/// The runner's projection: one upsert per event, through the default
/// `handle_batch`, into a table named as the projection.
pub(crate) struct RunnerBalances {
    schema: String,
    name: String,
    balances: Balances,
}

impl RunnerBalances {
    /// The projection `name`, whose table `name` is in `schema`.
    pub(crate) fn new(schema: &str, name: String) -> Self {
        RunnerBalances {
            balances: Balances::new(schema, &name),
            schema: schema.to_owned(),
            name,
        }
    }
}

impl Projection<PgTx> for RunnerBalances {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        &self.name
    }

    async fn setup(&self, tx: &mut PgTx) -> Result<(), BoxError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{}\".{} \
             (account text PRIMARY KEY, balance bigint NOT NULL, deposits bigint NOT NULL)",
            self.schema, self.name
        ))
        .await?;
        Ok(())
    }

    async fn handle(&self, tx: &mut PgTx, event: &Envelope<AccountEvent>) -> Result<(), BoxError> {
        let AccountEvent::Deposited { amount, .. } = &event.event;
        let upsert = tx.prepare_cached(&self.balances.upsert).await?;
        tx.execute(&upsert, &[&event.stream.as_str(), amount])
            .await?;
        Ok(())
    }
}

/// Events per second of the runner catching up from the start to `last`.
async fn runner_catch_up(
    store: &PgEventStore,
    last: GlobalPosition,
    round: usize,
) -> Result<f64, String> {
    let projection = RunnerBalances::new(store.schema(), format!("balances_{round}"));
    catch_up(
        store,
        projection,
        GlobalPosition::START,
        last,
        EVENTS as u64,
    )
    .await
}

/// Events per second of the projection runner (batches of 500, its
/// defaults otherwise) running `projection` from `from` to `last`, which
/// must be `events` events on. A projection that starts past the start of
/// the global stream has its first checkpoint set there, as a user starts
/// a read model of new events only.
pub(crate) async fn catch_up(
    store: &PgEventStore,
    projection: RunnerBalances,
    from: GlobalPosition,
    last: GlobalPosition,
    events: u64,
) -> Result<f64, String> {
    let backend = PgProjectionBackend::new(store);
    if from != GlobalPosition::START {
        let (name, version) = (projection.name.clone(), projection.version());
        let tx = backend
            .begin(&name, version)
            .await
            .map_err(|error| error.to_string())?;
        backend
            .commit(tx, &name, version, GlobalPosition::START, from)
            .await
            .map_err(|error| error.to_string())?;
    }
    let started = Instant::now();
    let handle = ProjectionRunner::new(store.clone(), backend, projection)
        .batch_size(BATCH)
        .start()
        .map_err(|error| error.to_string())?;
    let status = handle
        .wait_for(last, Duration::from_secs(3_600))
        .await
        .map_err(|error| format!("the runner did not catch up: {error}"))?;
    let elapsed = started.elapsed();
    handle
        .stop(Duration::from_secs(60))
        .await
        .map_err(|error| error.to_string())?;
    if status.checkpoint < last || status.applied != events {
        return Err(format!("the runner did not catch up: {status:?}"));
    }
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// What the raw reader decodes of a `Deposited` payload (the event's fields;
/// its type is the `event_type` column).
#[derive(serde::Deserialize)]
struct Deposited {
    amount: i64,
}

/// A `jsonb` column's text.
struct Jsonb<'a>(&'a str);

impl<'a> FromSql<'a> for Jsonb<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        match raw.split_first() {
            Some((1, text)) => Ok(Jsonb(std::str::from_utf8(text)?)),
            _ => Err("unsupported jsonb version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

/// Events per second of one connection reading the same pages and applying
/// the same upserts with raw statements, moving a checkpoint per batch.
async fn raw_catch_up(
    connect: impl Future<Output = Result<Client, tokio_postgres::Error>>,
    store: PgEventStore,
    last: GlobalPosition,
    round: usize,
) -> Result<f64, String> {
    let schema = store.schema();
    let render = |template: &str| {
        template
            .replace("{schema}", &format!("\"{schema}\""))
            .replace("{round}", &round.to_string())
    };
    let mut client = connect.await.map_err(|error| error.to_string())?;
    client
        .batch_execute(&render(include_str!("../../sql/projection_tables.sql")))
        .await
        .map_err(|error| error.to_string())?;
    let read = client
        // The runner's own statement: the same pages, rows and columns.
        .prepare(&render(include_str!(
            "../../../../postgres-store/sql/read_all.sql"
        )))
        .await
        .map_err(|error| error.to_string())?;
    let upsert = client
        .prepare(&Balances::new(schema, &format!("raw_balances_{round}")).upsert)
        .await
        .map_err(|error| error.to_string())?;
    let move_checkpoint = client
        .prepare(&render(include_str!("../../sql/projection_checkpoint.sql")))
        .await
        .map_err(|error| error.to_string())?;
    let started = Instant::now();
    let (mut commit, mut position, mut applied) = (Xid8(0), 0_i64, 0_usize);
    loop {
        let rows = client
            .query(&read, &[&commit, &position, &(BATCH as i64)])
            .await
            .map_err(|error| error.to_string())?;
        let Some(end) = rows.last() else { break };
        let tx = client
            .transaction()
            .await
            .map_err(|error| error.to_string())?;
        for row in &rows {
            let account: &str = row.get(0);
            let Jsonb(payload) = row.get(7);
            let Deposited { amount } =
                serde_json::from_str(payload).map_err(|error| error.to_string())?;
            tx.execute(&upsert, &[&account, &amount])
                .await
                .map_err(|error| error.to_string())?;
        }
        (commit, position) = (end.get(2), end.get(3));
        tx.execute(&move_checkpoint, &[&commit, &position])
            .await
            .map_err(|error| error.to_string())?;
        tx.commit().await.map_err(|error| error.to_string())?;
        applied += rows.len();
    }
    let elapsed = started.elapsed();
    let reached = GlobalPosition::new(commit.0, u64::try_from(position).unwrap_or_default());
    if applied != EVENTS || reached != last {
        return Err(format!(
            "the raw reader applied {applied} events up to {reached}, not {EVENTS} up to {last}"
        ));
    }
    Ok(EVENTS as f64 / elapsed.as_secs_f64())
}
