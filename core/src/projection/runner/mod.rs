//! The projection runner: builds a projection's read model from the global
//! stream, each event applied once, in order, together with the checkpoint.

mod apply;
mod hooks;
mod parked;
mod progress;
mod worker;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use self::worker::Worker;
use super::{
    Projection, ProjectionBackend, ProjectionControl, ProjectionExhausted, ProjectionHandle,
    ProjectionStatus,
};
use crate::{Error, EventStore, GlobalPosition, RetryPolicy, WorkerHandle};

/// What a replay of parked events did ([`ProjectionRunner::replay_parked`],
/// [`ProjectionControl::replay_parked`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Parked events applied, each unparked in the transaction that applied
    /// it.
    pub replayed: u64,
    /// Parked events whose handler failed again: they stay parked, with the
    /// new error.
    pub failed: u64,
    /// Parked events after the checkpoint (the event that stopped a
    /// projection under [`ProjectionExhausted::Stop`]): left to the runner,
    /// which applies them in order when it starts again.
    pub ahead: u64,
    /// The last error of a failed replay.
    pub last_error: Option<String>,
}

/// What a [`ProjectionHandle`] asks of its running runner.
pub(super) enum Request {
    ReplayParked(oneshot::Sender<Result<ReplayReport, Error>>),
}

/// How a runner reads, waits and retries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    batch_size: usize,
    poll_interval: Duration,
    retry: RetryPolicy<ProjectionExhausted>,
    progress_interval: Duration,
    backlog_limit: u64,
}

/// Runs one projection against a store and a backend: configure it with its
/// setters, then [`start`](ProjectionRunner::start) it.
///
/// Exactly-once effect: the read model and the checkpoint change in one
/// transaction (or, for a backend without atomic batches, one event at a
/// time), and the global stream never shows an event behind a position once
/// read, so nothing is applied twice or skipped.
///
/// One runner at a time applies a version of a projection: each runner
/// waits for the version's lease in its backend, so several instances of a
/// service can start the same runner and one of them works while the others
/// stand by.
///
/// Versions: the first version of a projection serves queries from its
/// start. A runner of a newer version rebuilds from the start of the global
/// stream beside it (state [`ProjectionState::Rebuilding`](super::ProjectionState::Rebuilding))
/// and, once caught up, promotes itself in one transaction
/// ([`Projection::promote`]); the older version's runners go on applying for
/// readers that still use it until they are stopped.
///
/// ```
/// use std::time::Duration;
///
/// use annals::{
///     BoxError, DomainEvent, Envelope, MemoryEventStore, MemoryProjectionBackend, Projection,
///     ProjectionRunner,
/// };
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
/// #[event(name = "Pinged")]
/// struct Pinged;
///
/// struct Pings;
///
/// impl Projection<()> for Pings {
///     type Event = Pinged;
///
///     fn name(&self) -> &str {
///         "pings"
///     }
///
///     async fn handle(&self, _: &mut (), _: &Envelope<Pinged>) -> Result<(), BoxError> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let store = MemoryEventStore::new();
/// let pings = ProjectionRunner::new(store, MemoryProjectionBackend::new(), Pings)
///     .batch_size(1_000)
///     .start()?;
/// let status = pings.wait_until(Duration::from_secs(5), |status| status.is_live()).await?;
/// assert_eq!(status.applied, 0);
/// pings.stop(Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
pub struct ProjectionRunner<S, B, P> {
    store: S,
    backend: B,
    projection: P,
    settings: Settings,
}

impl<S: fmt::Debug, B: fmt::Debug, P> fmt::Debug for ProjectionRunner<S, B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("store", &self.store)
            .field("backend", &self.backend)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S, B, P> ProjectionRunner<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    /// A runner of `projection` over `store`, keeping its read model,
    /// checkpoint and parked events in `backend`.
    pub fn new(store: S, backend: B, projection: P) -> Self {
        ProjectionRunner {
            store,
            backend,
            projection,
            settings: Settings {
                batch_size: 500,
                poll_interval: Duration::from_secs(1),
                retry: RetryPolicy::default(),
                progress_interval: Duration::from_secs(2),
                backlog_limit: 1_000_000,
            },
        }
    }

    /// Events read and applied per batch (default 500, at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.settings.batch_size = events.max(1);
        self
    }

    /// How long to wait for a wake-up from the store before reading again
    /// (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// How a failing handler is retried and what follows (see
    /// [`ProjectionExhausted`] for the default). Outages of the store or the
    /// backend are retried by the same back-off without counting.
    pub fn retry_policy(mut self, policy: RetryPolicy<ProjectionExhausted>) -> Self {
        self.settings.retry = policy;
        self
    }

    /// How often the backlog is counted for the status (default 2 s), and up
    /// to how many events (default 1,000,000). A count that takes long (a
    /// big backlog) waits twenty times its own duration before the next
    /// one, so that counting never takes more than a twentieth of the
    /// runner's time.
    pub fn progress(mut self, interval: Duration, backlog_limit: u64) -> Self {
        self.settings.progress_interval = interval;
        self.settings.backlog_limit = backlog_limit;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Starts the runner in the background. It waits for its version's
    /// lease, then catches up and follows the global stream until stopped,
    /// until an event stops it by policy (its status says why), or until
    /// the backend fails for good (the handle's `stop` returns the error).
    pub fn start(self) -> Result<ProjectionHandle, Error> {
        let name = format!(
            "projection {} v{}",
            self.projection.name(),
            self.projection.version()
        );
        let shutdown = CancellationToken::new();
        let (requests, received) = mpsc::channel(4);
        let worker = self.into_worker();
        let status = worker.status.subscribe();
        let task = tokio::spawn(worker.run_serving(shutdown.clone(), received));
        Ok(WorkerHandle::watched(name, shutdown, status)
            .with_task(task)
            .with_control(ProjectionControl::new(requests)))
    }

    /// Clears this version of the projection: its read model
    /// ([`Projection::reset`]), its checkpoint and its parked events, in one
    /// transaction, so that the next run replays the global stream from the
    /// start. Waits for the version's lease: stop its runners first (a
    /// timeout around the call bounds the wait).
    pub async fn reset(self) -> Result<(), Error> {
        self.into_worker().reset().await
    }

    /// Applies again the events parked behind the checkpoint (skipped under
    /// [`ProjectionExhausted::Skip`]), oldest first, each in a transaction of
    /// its own that also unparks it; an event that fails again stays parked
    /// with the new error. They are applied after the events that followed
    /// them. Waits for the version's lease: for a running projection use
    /// [`ProjectionControl::replay_parked`] through its handle instead.
    pub async fn replay_parked(self) -> Result<ReplayReport, Error> {
        let worker = self.into_worker();
        let (name, version) = (worker.projection.name(), worker.projection.version());
        let _lease = worker.backend.acquire(name, version).await?;
        let checkpoint = worker
            .backend
            .checkpoint(name, version)
            .await?
            .unwrap_or(GlobalPosition::START);
        worker.replay_behind(checkpoint, &mut HashSet::new()).await
    }

    fn into_worker(self) -> Worker<S, B, P> {
        let filter = self.projection.filter();
        let status = ProjectionStatus::new(self.projection.name(), self.projection.version());
        Worker {
            store: self.store,
            backend: self.backend,
            projection: Arc::new(self.projection),
            settings: self.settings,
            filter,
            status: watch::Sender::new(status),
        }
    }
}
