//! The event store on PostgreSQL.

mod append;
mod call;
mod group;
mod horizon;
mod notify;
mod outbox;
mod prepared;
mod read;
mod relay;
pub(crate) mod rows;
mod signal;
mod within;

use std::fmt;
use std::sync::{Arc, OnceLock};

use annals::{
    AppendOutcome, AppendRequest, AppendSignal, EventStore, EventStream, FromSnapshot,
    GlobalBacklog, GlobalPosition, Limits, RecordedEvent, Snapshot, StreamId,
};
use deadpool_postgres::Pool;
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

pub use horizon::BlockingTransaction;
pub use relay::PgShardLease;

use crate::pool::{build_pool, connection_config, tls_connector};
use crate::schema::{SchemaName, Statements};
use crate::{Config, Error, MigrationReport, Notify};
use group::Lanes;
use prepared::Prepared;
use signal::Signal;

/// An [`EventStore`] on PostgreSQL: events, streams, snapshots and the
/// outbox in one schema, over a pool of connections. Cheap to clone (clones
/// share the pool).
///
/// - An append is one statement in one round trip (a refused one takes a
///   second to say why); a unit of work ([`EventStore::append_all`]) is one
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
/// - It is the [`OutboxSource`](annals::OutboxSource) of outbox relays:
///   shards by key hash, one relay per shard by advisory lock
///   ([`PgShardLease`]).
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
    pool: Pool,
    schema: SchemaName,
    sql: Statements,
    /// The lone append statements, by connection.
    prepared: Prepared,
    limits: Limits,
    notify: Notify,
    /// Lone appends, sent in groups.
    lanes: Lanes,
    signal: Signal,
    /// How the listener opens its own connection.
    listen_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    horizon_warning: std::time::Duration,
    horizon_check_interval: std::time::Duration,
    horizon_wait: std::time::Duration,
    /// Set once the after-commit notifier runs.
    notifier: OnceLock<()>,
}

impl PgEventStore {
    /// Connects (the pool opens connections as they are needed) and, unless
    /// the configuration says otherwise, runs the migrations.
    ///
    /// Errors: an invalid configuration or schema name before any SQL runs;
    /// a retriable error when the server cannot be reached.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let schema = SchemaName::new(&config.schema)?;
        let tls = tls_connector(&config)?;
        let pool = build_pool(&config, tls.clone())?;
        if config.migrate {
            let mut client = pool.get().await?;
            crate::migrate(&mut client, schema.as_str()).await?;
        }
        let sql = Statements::new(&schema);
        Ok(PgEventStore {
            inner: Arc::new(Inner {
                pool,
                prepared: Prepared::new(sql.append.len()),
                sql,
                schema,
                limits: config.limits,
                notify: config.notify,
                lanes: Lanes::new(config.append_lanes()),
                signal: Signal::new(),
                listen_config: connection_config(&config),
                tls,
                horizon_warning: config.horizon_warning,
                horizon_check_interval: config.horizon_check_interval,
                horizon_wait: config.horizon_wait,
                notifier: OnceLock::new(),
            }),
        })
    }

    /// Runs the migrations (see [`migrate`](crate::migrate)).
    pub async fn migrate(&self) -> Result<MigrationReport, Error> {
        let mut client = self.inner.pool.get().await?;
        crate::migrate(&mut client, self.inner.schema.as_str()).await
    }

    /// The pool, e.g. to run a transaction that appends with
    /// [`PgEventStore::append_in`] and writes other tables too.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The schema that holds the store's tables.
    pub fn schema(&self) -> &str {
        self.inner.schema.as_str()
    }

    /// The size limits appends are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The channel the store notifies on after appends (the schema name), for
    /// readers that `LISTEN` themselves.
    pub fn channel(&self) -> &str {
        self.inner.schema.as_str()
    }
}

impl fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.pool.status();
        f.debug_struct("PgEventStore")
            .field("schema", &self.inner.schema.as_str())
            .field("pool_size", &status.max_size)
            .field("pool_available", &status.available)
            .field("limits", &self.inner.limits)
            .field("notify", &self.inner.notify)
            .finish()
    }
}

impl EventStore for PgEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, annals::Error> {
        self.append_lone(request).await
    }

    async fn append_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, annals::Error> {
        self.append_unit(requests).await
    }

    fn read_stream(&self, stream: StreamId, from_version: u64) -> EventStream {
        self.stream_events(stream, from_version)
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, annals::Error> {
        self.global_events(after, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, annals::Error> {
        self.version_of(stream).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, annals::Error> {
        self.snapshot_of(stream).await
    }

    async fn read_from_snapshot(&self, stream: StreamId) -> Result<FromSnapshot, annals::Error> {
        self.events_from_snapshot(stream).await
    }

    async fn command_outcome(
        &self,
        command_id: Uuid,
    ) -> Result<Option<AppendOutcome>, annals::Error> {
        self.outcome_of(command_id).await
    }

    fn append_signal(&self) -> AppendSignal {
        self.subscribe()
    }

    async fn global_backlog(
        &self,
        after: GlobalPosition,
        limit: u64,
    ) -> Result<GlobalBacklog, annals::Error> {
        self.backlog_after(after, limit).await
    }
}
