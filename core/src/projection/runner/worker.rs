//! The running projection: waits for its version's lease, then reads the
//! global stream after the checkpoint, applies batches and follows live;
//! stands by and starts over from the stored checkpoint after an outage.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{Request, Settings};
use crate::projection::{
    EventFilter, Projection, ProjectionBackend, ProjectionState, ProjectionStatus,
};
use crate::{Error, EventStore, GlobalPosition};

/// A projection runner at work: what [`ProjectionRunner`](super::ProjectionRunner)
/// starts, and what its maintenance calls use.
pub(super) struct Worker<S, B, P> {
    pub(super) store: S,
    pub(super) backend: B,
    pub(super) projection: Arc<P>,
    pub(super) settings: Settings,
    pub(super) filter: EventFilter,
    pub(super) status: watch::Sender<ProjectionStatus>,
}

/// Why processing stopped.
pub(super) enum Halt {
    Shutdown,
    LeaseLost,
    Stopped(String),
    Failed(Error),
    /// The backend failed while committing, so whether the checkpoint moved
    /// is unknown: start over from the backend's checkpoint.
    Resync(String),
}

impl<S, B, P> Worker<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    pub(super) async fn run_serving(
        self,
        shutdown: CancellationToken,
        requests: mpsc::Receiver<Request>,
    ) -> Result<(), Error> {
        let span = tracing::info_span!(
            "annals.projection",
            projection = %self.projection.name(),
            version = self.projection.version(),
        );
        self.run_leases(shutdown, requests).instrument(span).await
    }

    async fn run_leases(
        self,
        shutdown: CancellationToken,
        mut requests: mpsc::Receiver<Request>,
    ) -> Result<(), Error> {
        let (name, version) = (self.projection.name().to_owned(), self.projection.version());
        // Consecutive outages of the store or backend, for the back-off.
        let mut outages = 0;
        loop {
            let applied = self.status.borrow().applied;
            let acquired = tokio::select! {
                lease = self.backend.acquire(&name, version) => lease,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let halt = match acquired {
                Ok(lease) => self.run_with_lease(&lease, &shutdown, &mut requests).await,
                Err(error) => Halt::Failed(error),
            };
            if self.status.borrow().applied > applied {
                outages = 0;
            }
            let outage = match halt {
                Halt::Shutdown => {
                    self.set_state(ProjectionState::Stopped { error: None });
                    return Ok(());
                }
                Halt::LeaseLost => {
                    tracing::warn!(projection = %name, "lost the projection lease; standing by");
                    self.set_state(ProjectionState::Standby);
                    continue;
                }
                Halt::Stopped(error) => {
                    self.set_state(ProjectionState::Stopped { error: Some(error) });
                    return Ok(());
                }
                // An outage (a lost connection, a restarting server) or a
                // commit of unknown outcome: the lease is let go and taken
                // again, and processing resumes from the stored checkpoint.
                Halt::Resync(error) => error,
                Halt::Failed(error) if error.is_retriable() => error.to_string(),
                Halt::Failed(error) => {
                    self.set_state(ProjectionState::Stopped {
                        error: Some(error.to_string()),
                    });
                    return Err(error);
                }
            };
            outages += 1;
            if !self
                .stand_by_after(&name, &outage, outages, &shutdown)
                .await
            {
                self.set_state(ProjectionState::Stopped { error: None });
                return Ok(());
            }
        }
    }

    /// Notes `error`, stands by and waits out the back-off of the `outages`th
    /// outage in a row; false when shutdown came first.
    async fn stand_by_after(
        &self,
        name: &str,
        error: &str,
        outages: u32,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(projection = %name, %error, outages, "projection backend failed; starting over from the stored checkpoint");
        self.note_error(error);
        self.set_state(ProjectionState::Standby);
        let wait = self.settings.retry.delay(outages);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    async fn run_with_lease(
        &self,
        lease: &B::Lease,
        shutdown: &CancellationToken,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Halt {
        let (name, version) = (self.projection.name(), self.projection.version());
        if let Err(halt) = self.setup().await {
            return halt;
        }
        let mut checkpoint = match self.backend.checkpoint(name, version).await {
            Ok(checkpoint) => checkpoint.unwrap_or(GlobalPosition::START),
            Err(error) => return Halt::Failed(error),
        };
        let mut parked: HashSet<Uuid> = match self.backend.parked(name, version).await {
            Ok(parked) => parked
                .into_iter()
                .map(|parked| parked.event.event_id)
                .collect(),
            Err(error) => return Halt::Failed(error),
        };
        let mut rebuilding = match self.serving().await {
            // The first version of the projection: nothing older serves
            // queries, so it serves them while it catches up.
            Ok(None) => match self.promote().await {
                Ok(_) => false,
                Err(halt) => return halt,
            },
            Ok(Some(serving)) => serving < version,
            Err(error) => return Halt::Failed(error),
        };
        self.status.send_modify(|status| {
            status.checkpoint = checkpoint;
            status.state = if rebuilding {
                ProjectionState::Rebuilding
            } else {
                ProjectionState::CatchingUp
            };
        });
        let mut next_count: Option<Instant> = None;
        let mut read_failures = 0;
        loop {
            if shutdown.is_cancelled() {
                return Halt::Shutdown;
            }
            if !self.backend.is_held(lease) {
                return Halt::LeaseLost;
            }
            while let Ok(request) = requests.try_recv() {
                self.answer(request, checkpoint, &mut parked).await;
            }
            let mut signal = self.store.append_signal();
            let records = match self
                .store
                .read_all(checkpoint, self.settings.batch_size)
                .await
            {
                Ok(records) => {
                    read_failures = 0;
                    records
                }
                Err(error) if error.is_retriable() => {
                    read_failures += 1;
                    self.note_error(&error.to_string());
                    let wait = self.settings.retry.delay(read_failures);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = shutdown.cancelled() => return Halt::Shutdown,
                    }
                }
                Err(error) => return Halt::Failed(error),
            };
            let full = records.len() == self.settings.batch_size;
            if next_count.is_none_or(|at| at <= Instant::now()) {
                let started = Instant::now();
                self.count_backlog(checkpoint).await;
                let spacing = self.settings.progress_interval.max(started.elapsed() * 20);
                next_count = Some(started + spacing);
            }
            self.note_lag(records.first(), full, rebuilding);
            if !records.is_empty() {
                let read = records.len() as u64;
                checkpoint = match self
                    .apply(records, checkpoint, lease, &mut parked, shutdown)
                    .await
                {
                    Ok(next) => next,
                    Err(halt) => return halt,
                };
                self.note_applied(checkpoint, read, full);
            }
            if rebuilding && !full {
                // Caught up with what the global stream shows: switch.
                match self.promote().await {
                    Ok(_) => rebuilding = false,
                    Err(halt) => return halt,
                }
                self.note_lag(None, false, rebuilding);
            }
            if full {
                continue;
            }
            let request = tokio::select! {
                _ = signal.wait(self.settings.poll_interval) => None,
                Some(request) = requests.recv() => Some(request),
                _ = shutdown.cancelled() => return Halt::Shutdown,
            };
            if let Some(request) = request {
                self.answer(request, checkpoint, &mut parked).await;
            }
        }
    }
}
