//! The stores the relay tests run against, and a wrapper that makes one
//! unreachable on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use annals::{
    AppendSignal, Error, EventStore, GlobalPosition, InFlight, MemoryEventStore, OutboxBacklog,
    OutboxReader, OutboxRecord, OutboxShard, OutboxSource,
};
use annals_postgres::{PgEventStore, PgOutbox};
use annals_tests::postgres::Schema;

/// A store the tests write to, and the outbox of it that relays read.
pub(crate) trait RelayStore: EventStore + Clone + 'static {
    /// What relays read the store's outbox through.
    type Outbox: OutboxSource;

    /// The store's outbox.
    fn outbox(&self) -> Self::Outbox;
}

impl RelayStore for MemoryEventStore {
    type Outbox = MemoryEventStore;

    fn outbox(&self) -> MemoryEventStore {
        self.clone()
    }
}

impl RelayStore for PgEventStore {
    type Outbox = PgOutbox;

    fn outbox(&self) -> PgOutbox {
        PgOutbox::new(self)
    }
}

/// A PostgreSQL store in a schema of its own, and the schema, which is
/// dropped with everything in it when the guard goes.
pub(crate) async fn postgres_store() -> (Schema, PgEventStore) {
    let schema = Schema::new();
    let store = PgEventStore::connect(schema.config())
        .await
        .expect("connecting to the test database");
    (schema, store)
}

/// An outbox source that fails every call while `down`, as a store whose
/// server is unreachable would, and can hold back reads alone.
#[derive(Debug, Clone)]
pub(crate) struct FlakySource<S> {
    inner: S,
    down: Arc<AtomicBool>,
    reads_held: Arc<AtomicBool>,
}

impl<S: OutboxSource> FlakySource<S> {
    pub(crate) fn new(inner: S) -> Self {
        FlakySource {
            inner,
            down: Arc::default(),
            reads_held: Arc::default(),
        }
    }

    /// Makes every call fail (`true`) or work again.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes outbox reads return nothing new (`true`), so that a backlog
    /// builds up, or work again.
    pub(crate) fn hold_reads(&self, held: bool) {
        self.reads_held.store(held, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::backend(
                "test",
                true,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "the store is down"),
            ));
        }
        Ok(())
    }
}

impl<S: OutboxSource> OutboxReader for FlakySource<S> {
    async fn read_outbox(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, Error> {
        self.check()?;
        if self.reads_held.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.inner.read_outbox(shard, after, limit).await
    }
}

impl<S: OutboxSource> OutboxSource for FlakySource<S> {
    type Lease = S::Lease;

    async fn acquire(&self, relay: &str, shard: OutboxShard) -> Result<S::Lease, Error> {
        self.check()?;
        self.inner.acquire(relay, shard).await
    }

    fn is_held(&self, lease: &S::Lease) -> bool {
        self.inner.is_held(lease)
    }

    fn lease_loss_bound(&self) -> Duration {
        self.inner.lease_loss_bound()
    }

    async fn in_flight(&self, relay: &str, shard: OutboxShard) -> Result<InFlight, Error> {
        self.check()?;
        self.inner.in_flight(relay, shard).await
    }

    async fn set_in_flight(
        &self,
        lease: &S::Lease,
        relay: &str,
        shard: OutboxShard,
        possible: bool,
    ) -> Result<(), Error> {
        self.check()?;
        self.inner
            .set_in_flight(lease, relay, shard, possible)
            .await
    }

    async fn checkpoint(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> Result<Option<GlobalPosition>, Error> {
        self.check()?;
        self.inner.checkpoint(relay, shard).await
    }

    async fn save_checkpoint(
        &self,
        lease: &S::Lease,
        relay: &str,
        shard: OutboxShard,
        position: GlobalPosition,
    ) -> Result<(), Error> {
        self.check()?;
        self.inner
            .save_checkpoint(lease, relay, shard, position)
            .await
    }

    async fn prune(
        &self,
        shard: OutboxShard,
        through: GlobalPosition,
        limit: usize,
    ) -> Result<u64, Error> {
        self.check()?;
        self.inner.prune(shard, through, limit).await
    }

    async fn park(&self, relay: &str, record: &OutboxRecord, reason: &str) -> Result<(), Error> {
        self.check()?;
        self.inner.park(relay, record, reason).await
    }

    async fn parked(&self, relay: &str) -> Result<Vec<(OutboxRecord, String)>, Error> {
        self.check()?;
        self.inner.parked(relay).await
    }

    async fn backlog(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
    ) -> Result<OutboxBacklog, Error> {
        self.check()?;
        self.inner.backlog(shard, after).await
    }

    fn outbox_signal(&self) -> AppendSignal {
        self.inner.outbox_signal()
    }
}
