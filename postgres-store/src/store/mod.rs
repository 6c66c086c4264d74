//! The event store on PostgreSQL.

mod append;
mod call;
mod event_store;
mod group;
mod prepared;
mod read;
mod within;

use std::fmt;
use std::sync::Arc;

use annals::Limits;
use deadpool_postgres::Pool;

use crate::database::Database;
use crate::{Config, Error, MigrationReport};
use group::Lanes;
use prepared::Prepared;

/// An [`EventStore`](annals::EventStore) on PostgreSQL: events, streams, snapshots and the
/// outbox in one schema, over a pool of connections. Cheap to clone (clones
/// share the pool).
///
/// - An append is one statement in one round trip (a refused one takes a
///   second to say why); a unit of work ([`EventStore::append_all`](annals::EventStore::append_all)) is one
///   transaction sent in one round trip.
/// - Lone appends that arrive while every append lane is busy
///   ([`Config::with_append_lanes`]) commit together in the next free one
///   (group commit), each with an outcome of its own; the single events of
///   such a group are one statement.
/// - The global stream and the outbox are read in `(tx_id, position)` order,
///   only up to the oldest transaction still running, so that nothing can
///   appear behind a reader's checkpoint.
/// - Command ids, snapshots and the outbox live in the same transaction as
///   the events.
///
/// The parts beside it share its pool: [`PgOutbox`](crate::PgOutbox) (what
/// relays read), [`PgInbox`](crate::PgInbox),
/// [`PgProjectionBackend`](crate::PgProjectionBackend) and
/// [`PgHorizon`](crate::PgHorizon) (what holds readers back).
///
/// ```no_run
/// use annals::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};
/// use annals_postgres::{Config, PgEventStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(Config::from_url("postgres://postgres@localhost/app")?).await?;
/// let event = NewEvent::raw("OrderPlaced", 1, Payload::encode(&42)?, Metadata::default());
/// let outcome = store
///     .append(AppendRequest::new(StreamId::new("order-1")?, ExpectedVersion::NoStream).event(event))
///     .await?;
/// assert_eq!(outcome.last_version, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// The lone append statements, by connection.
    prepared: Prepared,
    /// Lone appends, sent in groups.
    lanes: Lanes,
}

impl PgEventStore {
    /// Connects (the pool opens connections as they are needed) and, unless
    /// the configuration says otherwise, runs the migrations.
    ///
    /// Errors: an invalid configuration or schema name before any SQL runs;
    /// a retriable error when the server cannot be reached.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        let db = Database::open(&config).await?;
        Ok(PgEventStore {
            inner: Arc::new(Inner {
                prepared: Prepared::new(db.sql.append.len()),
                lanes: Lanes::new(config.append_lanes()),
                db,
            }),
        })
    }

    /// Runs the migrations (see [`migrate`](crate::migrate)).
    pub async fn migrate(&self) -> Result<MigrationReport, Error> {
        let mut client = self.inner.db.pool.get().await?;
        crate::migrate(&mut client, self.inner.db.schema.as_str()).await
    }

    /// The pool, e.g. to run a transaction that appends with
    /// [`PgEventStore::append_in`] and writes other tables too.
    pub fn pool(&self) -> &Pool {
        &self.inner.db.pool
    }

    /// The schema that holds the store's tables.
    pub fn schema(&self) -> &str {
        self.inner.db.schema.as_str()
    }

    /// The size limits appends are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.db.limits
    }

    /// The channel the store notifies on after appends (the schema name), for
    /// readers that `LISTEN` themselves.
    pub fn channel(&self) -> &str {
        self.inner.db.schema.as_str()
    }

    /// What the parts built beside the store share with it.
    pub(crate) fn database(&self) -> &Arc<Database> {
        &self.inner.db
    }
}

impl fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = &self.inner.db;
        let status = db.pool.status();
        f.debug_struct("PgEventStore")
            .field("schema", &db.schema.as_str())
            .field("pool_size", &status.max_size)
            .field("pool_available", &status.available)
            .field("limits", &db.limits)
            .field("notify", &db.notify)
            .finish()
    }
}
