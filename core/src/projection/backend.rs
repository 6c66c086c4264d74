//! What a projection runner needs from where the read model lives:
//! transactions, the checkpoint, the active-runner lease and parked events.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, GlobalPosition, RecordedEvent};

/// An event a projection could not apply, kept with the error.
#[derive(Debug, Clone)]
pub struct ParkedEvent {
    /// The projection's name.
    pub projection: String,
    /// The projection's version.
    pub version: u32,
    /// The event, as stored.
    pub event: RecordedEvent,
    /// The last error.
    pub error: String,
    /// How many attempts failed.
    pub attempts: u32,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// Where a projection keeps its checkpoint, its parked events and its read
/// model, which of its versions serves queries, and how its runners take
/// turns: implemented by the in-memory backend here and by the Postgres one
/// in `annals-postgres`.
///
/// Everything is per projection name and version except the serving
/// version, which is per name: the runners of two versions of one
/// projection run side by side while the newer one rebuilds.
///
/// The runner drives it; one step of it, against any backend:
///
/// ```
/// use annals::{GlobalPosition, MemoryProjectionBackend, ProjectionBackend};
///
/// /// Applies one batch ending at `to` and moves the checkpoint there.
/// async fn apply_batch<B: ProjectionBackend>(backend: &B, to: GlobalPosition) -> Result<(), annals::Error> {
///     let lease = backend.acquire("order-totals", 1).await?;
///     assert!(backend.is_held(&lease));
///     let from = backend.checkpoint("order-totals", 1).await?.unwrap_or(GlobalPosition::START);
///     let tx = backend.begin("order-totals", 1).await?;
///     // ... the projection's handler writes the batch's effects with `tx` ...
///     backend.commit(tx, "order-totals", 1, from, to).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let backend = MemoryProjectionBackend::new();
/// let to = GlobalPosition::new(1, 7);
/// apply_batch(&backend, to).await?;
/// assert_eq!(backend.checkpoint("order-totals", 1).await?, Some(to));
/// # Ok(())
/// # }
/// ```
pub trait ProjectionBackend: Clone + Send + Sync + 'static {
    /// What handlers write with.
    type Tx: Send;
    /// Proof of being the one active runner of a projection; released when
    /// dropped.
    type Lease: Send + Sync + 'static;

    /// Whether one transaction can hold a batch of events atomically. When
    /// false the runner commits after every event.
    fn atomic_batches(&self) -> bool;

    /// Waits until this runner is the active one for `name` at `version`.
    fn acquire(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Self::Lease, Error>> + Send;

    /// Whether `lease` still holds; a runner that lost it stops applying.
    fn is_held(&self, lease: &Self::Lease) -> bool;

    /// The checkpoint of `name` at `version`, `None` before the first event.
    fn checkpoint(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Option<GlobalPosition>, Error>> + Send;

    /// Starts a transaction for `name` at `version`.
    fn begin(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Self::Tx, Error>> + Send;

    /// Moves the checkpoint from `from` to `to` in `tx` and commits. Fails
    /// with [`Error::Conflict`]-like backend errors, writing nothing, when
    /// the checkpoint is no longer at `from` (another runner moved it).
    fn commit(
        &self,
        tx: Self::Tx,
        name: &str,
        version: u32,
        from: GlobalPosition,
        to: GlobalPosition,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Abandons `tx`.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = Result<(), Error>> + Send;

    /// The version of `name` that serves queries, `None` before the first
    /// version was promoted.
    fn serving(&self, name: &str) -> impl Future<Output = Result<Option<u32>, Error>> + Send;

    /// Makes `version` the serving version of `name` in `tx` and commits,
    /// unless the same or a newer version serves already: then commits
    /// nothing and returns false.
    fn promote(
        &self,
        tx: Self::Tx,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Forgets the checkpoint and the parked events of `name` at `version`
    /// in `tx`, and commits.
    fn reset(
        &self,
        tx: Self::Tx,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Keeps `event` with the error that stopped it.
    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), Error>> + Send;

    /// The events parked for `name` at `version`, oldest first.
    fn parked(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, Error>> + Send;

    /// Forgets a parked event in `tx`, the transaction that applies it, so
    /// that it is applied and unparked together.
    fn unpark(
        &self,
        tx: &mut Self::Tx,
        name: &str,
        version: u32,
        event_id: Uuid,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}
