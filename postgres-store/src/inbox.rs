//! The consumers' inbox in PostgreSQL: claims inserted in the handler's own
//! transaction.

use std::sync::Arc;

use annals::{Error, Inbox};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::PgEventStore;
use crate::database::Database;
use crate::error::backend;
use crate::tx::PgTx;

/// How many claims one prune statement deletes at most.
const PRUNE_BATCH: i64 = 10_000;

/// The [`Inbox`] of consumers whose handlers write to PostgreSQL: the
/// `inbox` table of a [`PgEventStore`]'s schema, over the store's pool.
/// Cheap to clone.
///
/// Handlers get a [`PgTx`] and write their effects with it; the runtime
/// claims the message id in the same transaction and commits both together,
/// so a redelivered message (after a crash, a rebalance, or a producer that
/// sent it twice) finds its claim and has no second effect. The same message
/// handled concurrently (a copy on another partition) waits on the first
/// transaction's claim and is skipped once that commits.
///
/// ```no_run
/// use annals::Inbox;
/// use annals_postgres::{Config, PgEventStore, PgInbox};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(Config::from_url("postgres://postgres@localhost/app")?).await?;
/// let inbox = PgInbox::new(&store);
/// let message_id = uuid::Uuid::now_v7();
///
/// // What a consumer runtime does for each message.
/// let mut tx = inbox.begin().await?;
/// if inbox.claim(&mut tx, "shipping", message_id).await? {
///     // The handler's effect, in the claim's transaction.
///     tx.execute("INSERT INTO shipments (message_id) VALUES ($1)", &[&message_id])
///         .await?;
///     inbox.commit(tx).await?;
/// } else {
///     inbox.rollback(tx).await?; // handled before: nothing to do
/// }
/// # Ok(())
/// # }
/// ```
///
/// With `annals-kafka`, pass it to `Consumer::builder(config, inbox)` and
/// implement the handlers as `Handler<PgTx>`.
#[derive(Clone, Debug)]
pub struct PgInbox {
    db: Arc<Database>,
}

impl PgInbox {
    /// The inbox in `store`'s schema, sharing its pool. The table is created
    /// by the store's migrations.
    pub fn new(store: &PgEventStore) -> Self {
        PgInbox {
            db: Arc::clone(store.database()),
        }
    }
}

impl Inbox for PgInbox {
    type Tx = PgTx;

    async fn begin(&self) -> Result<PgTx, Error> {
        PgTx::begin(&self.db.pool).await
    }

    async fn claim(&self, tx: &mut PgTx, consumer: &str, message_id: Uuid) -> Result<bool, Error> {
        let statement = tx.prepare_cached(&self.db.sql.inbox.claim).await?;
        let inserted = tx.execute(&statement, &[&consumer, &message_id]).await?;
        Ok(inserted == 1)
    }

    async fn commit(&self, tx: PgTx) -> Result<(), Error> {
        tx.commit().await
    }

    async fn rollback(&self, tx: PgTx) -> Result<(), Error> {
        tx.rollback().await
    }

    async fn prune(&self, consumer: &str, before: DateTime<Utc>) -> Result<u64, Error> {
        let connection = self.db.client().await?;
        let statement = connection
            .prepare_cached(&self.db.sql.inbox.prune)
            .await
            .map_err(backend)?;
        let mut pruned = 0;
        loop {
            let deleted = connection
                .execute(&statement, &[&consumer, &before, &PRUNE_BATCH])
                .await
                .map_err(backend)?;
            pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
        }
    }
}
