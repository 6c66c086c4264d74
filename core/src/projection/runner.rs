//! The loop that feeds a projection: read the global stream after the
//! checkpoint, apply a batch and move the checkpoint in one transaction,
//! retry and park failures, follow live.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    EventFilter, FailurePolicy, OnExhausted, ParkedEvent, Projection, ProjectionBackend,
    ProjectionHandle, ProjectionState, ProjectionStatus,
};
use tracing::Instrument;

use crate::{Envelope, Error, EventStore, GlobalPosition, RecordedEvent};

/// How a runner reads and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunnerConfig {
    /// Events read per batch (default 500).
    pub batch_size: usize,
    /// How long to wait for a wake-up before polling again (default 1 s).
    pub poll_interval: Duration,
    /// How handler failures are retried and what follows.
    pub failure: FailurePolicy,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            failure: FailurePolicy::default(),
        }
    }
}

impl RunnerConfig {
    /// Sets the batch size (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets the poll interval.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets the failure policy.
    pub fn with_failure_policy(mut self, failure: FailurePolicy) -> Self {
        self.failure = failure;
        self
    }
}

/// Runs one projection against a store and a backend.
///
/// Exactly-once effect: the read model and the checkpoint change in one
/// transaction (or, for a backend without atomic batches, one event at a
/// time), and the global stream never shows an event behind a position once
/// read, so nothing is applied twice or skipped.
pub struct ProjectionRunner<S, B: ProjectionBackend, P> {
    store: S,
    backend: B,
    projection: Arc<P>,
    config: RunnerConfig,
    filter: EventFilter,
    status: watch::Sender<ProjectionStatus>,
}

impl<S: fmt::Debug, B: ProjectionBackend + fmt::Debug, P> fmt::Debug for ProjectionRunner<S, B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("store", &self.store)
            .field("backend", &self.backend)
            .field("config", &self.config)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// Why processing stopped.
enum Halt {
    Shutdown,
    LeaseLost,
    Stopped(String),
    Failed(Error),
    /// The backend failed while committing, so whether the checkpoint moved
    /// is unknown: start over from the backend's checkpoint.
    Resync(String),
}

/// One event of a batch after filtering and decoding: its envelopes are a
/// range of the batch's envelopes.
struct Item {
    record: RecordedEvent,
    decoded: Result<Range<usize>, Error>,
}

impl<S, B, P> ProjectionRunner<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    /// A runner of `projection` over `store`, keeping its state in `backend`.
    pub fn new(store: S, backend: B, projection: P) -> Self {
        let filter = projection.filter();
        let status = ProjectionStatus::new(projection.name(), projection.version());
        ProjectionRunner {
            store,
            backend,
            projection: Arc::new(projection),
            config: RunnerConfig::default(),
            filter,
            status: watch::Sender::new(status),
        }
    }

    /// Sets how the runner reads, waits and retries.
    pub fn with_config(mut self, config: RunnerConfig) -> Self {
        self.config = config;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Starts the runner in the background.
    pub fn spawn(self) -> ProjectionHandle {
        let (shutdown, stop) = watch::channel(false);
        let status = self.status.subscribe();
        let task = tokio::spawn(self.run(stop));
        ProjectionHandle::new(status, shutdown, task)
    }

    /// Runs until `shutdown` turns true, the lease is lost or an event stops
    /// the projection. Returns `Ok` on shutdown and on a stop by policy (the
    /// status says why), an error when the backend fails for good.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let span = tracing::info_span!(
            "annals.projection",
            projection = %self.projection.name(),
            version = self.projection.version(),
        );
        self.run_leases(shutdown).instrument(span).await
    }

    async fn run_leases(self, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let name = self.projection.name().to_owned();
        // Consecutive outages of the store or backend, for the back-off.
        let mut outages = 0;
        loop {
            let applied = self.status.borrow().applied;
            let acquired = tokio::select! {
                lease = self.backend.acquire(&name) => lease,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let halt = match acquired {
                Ok(lease) => self.run_with_lease(&lease, &mut shutdown).await,
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
                .stand_by_after(&name, &outage, outages, &mut shutdown)
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
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        tracing::warn!(projection = %name, %error, outages, "projection backend failed; starting over from the stored checkpoint");
        self.note_error(error);
        self.set_state(ProjectionState::Standby);
        let wait = self.config.failure.backoff(outages);
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }

    async fn run_with_lease(&self, lease: &B::Lease, shutdown: &mut watch::Receiver<bool>) -> Halt {
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
        self.status.send_modify(|status| {
            status.checkpoint = checkpoint;
            status.state = ProjectionState::CatchingUp;
        });
        let mut read_failures = 0;
        loop {
            if *shutdown.borrow() {
                return Halt::Shutdown;
            }
            if !self.backend.is_held(lease) {
                return Halt::LeaseLost;
            }
            let mut signal = self.store.append_signal();
            let records = match self
                .store
                .read_all(checkpoint, self.config.batch_size)
                .await
            {
                Ok(records) => {
                    read_failures = 0;
                    records
                }
                Err(error) if error.is_retriable() => {
                    read_failures += 1;
                    self.note_error(&error.to_string());
                    let wait = self.config.failure.backoff(read_failures);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = shutdown.wait_for(|stop| *stop) => return Halt::Shutdown,
                    }
                }
                Err(error) => return Halt::Failed(error),
            };
            let full = records.len() == self.config.batch_size;
            self.note_lag(records.first(), full);
            if records.is_empty() {
                tokio::select! {
                    _ = signal.wait(self.config.poll_interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Halt::Shutdown,
                }
                continue;
            }
            checkpoint = match self
                .apply(records, checkpoint, lease, &mut parked, shutdown)
                .await
            {
                Ok(next) => next,
                Err(halt) => return halt,
            };
            self.status
                .send_modify(|status| status.checkpoint = checkpoint);
        }
    }

    async fn setup(&self) -> Result<(), Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self
            .backend
            .begin(name, version)
            .await
            .map_err(Halt::Failed)?;
        match self.projection.setup(&mut tx).await {
            Ok(()) => {}
            Err(error) => {
                let _ = self.backend.rollback(tx).await;
                return Err(Halt::Failed(Error::backend(
                    "projection setup",
                    false,
                    error,
                )));
            }
        }
        let checkpoint = self
            .backend
            .checkpoint(name, version)
            .await
            .map_err(Halt::Failed)?
            .unwrap_or(GlobalPosition::START);
        self.backend
            .commit(tx, name, version, checkpoint, checkpoint)
            .await
            .map_err(Halt::Failed)
    }

    /// Applies one batch read after `checkpoint`; returns the new checkpoint.
    async fn apply(
        &self,
        records: Vec<RecordedEvent>,
        checkpoint: GlobalPosition,
        lease: &B::Lease,
        parked: &mut HashSet<Uuid>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<GlobalPosition, Halt> {
        let last = records
            .last()
            .map(|record| record.position)
            .unwrap_or(checkpoint);
        let mut envelopes: Vec<Envelope<P::Event>> = Vec::with_capacity(records.len());
        let items: Vec<Item> = records
            .into_iter()
            .filter(|record| self.filter.matches(record))
            .map(|record| {
                let decoded = record.to_envelopes().map(|decoded| {
                    let start = envelopes.len();
                    envelopes.extend(decoded);
                    start..envelopes.len()
                });
                Item { record, decoded }
            })
            .collect();
        let all_decoded = items.iter().all(|item| item.decoded.is_ok());
        if self.backend.atomic_batches() && all_decoded && parked.is_empty() {
            match self.try_apply(&envelopes, checkpoint, last).await {
                Ok(()) => {
                    self.count_applied(items.len() as u64);
                    return Ok(last);
                }
                Err(Attempt::Handler(error)) => {
                    tracing::debug!(%error, "batch failed; applying its events one by one");
                }
                Err(Attempt::Backend(error)) => return Err(Halt::Resync(error)),
            }
        }
        self.apply_one_by_one(&envelopes, items, checkpoint, last, lease, parked, shutdown)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_one_by_one(
        &self,
        envelopes: &[Envelope<P::Event>],
        items: Vec<Item>,
        mut checkpoint: GlobalPosition,
        last: GlobalPosition,
        lease: &B::Lease,
        parked: &mut HashSet<Uuid>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<GlobalPosition, Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        for item in items {
            let position = item.record.position;
            let mut attempts = 0;
            loop {
                if !self.backend.is_held(lease) {
                    return Err(Halt::LeaseLost);
                }
                attempts += 1;
                let outcome = match &item.decoded {
                    Ok(range) => {
                        self.try_apply(&envelopes[range.clone()], checkpoint, position)
                            .await
                    }
                    // Decoding is deterministic: retrying cannot help.
                    Err(error) => {
                        attempts = self.config.failure.max_attempts;
                        Err(Attempt::Handler(error.to_string()))
                    }
                };
                match outcome {
                    Ok(()) => {
                        checkpoint = position;
                        self.count_applied(1);
                        if parked.remove(&item.record.event_id) {
                            self.backend
                                .unpark(name, version, item.record.event_id)
                                .await
                                .map_err(Halt::Failed)?;
                        }
                        break;
                    }
                    // The store or connection failed, not the handler: it
                    // does not count against the event.
                    Err(Attempt::Backend(error)) => return Err(Halt::Resync(error)),
                    Err(Attempt::Handler(error)) if attempts < self.config.failure.max_attempts => {
                        self.note_error(&error);
                        tracing::warn!(event = %item.record.event_id, attempts, %error, "projection handler failed; retrying");
                        self.pause(self.config.failure.backoff(attempts), shutdown)
                            .await?;
                    }
                    Err(Attempt::Handler(error)) => {
                        checkpoint = self
                            .give_up(&item.record, error, attempts, checkpoint, parked)
                            .await?;
                        break;
                    }
                }
            }
        }
        if checkpoint < last {
            // The batch ended with events the filter skipped: move past them.
            checkpoint = self.advance(checkpoint, last).await?;
        }
        Ok(checkpoint)
    }

    /// Parks an event whose attempts are used up, then stops or skips it.
    async fn give_up(
        &self,
        record: &RecordedEvent,
        error: String,
        attempts: u32,
        checkpoint: GlobalPosition,
        parked: &mut HashSet<Uuid>,
    ) -> Result<GlobalPosition, Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        tracing::error!(event = %record.event_id, stream = %record.stream, version = record.version, %error, "parking an event the projection cannot apply");
        if parked.insert(record.event_id) {
            self.backend
                .park(ParkedEvent {
                    projection: name.to_owned(),
                    version,
                    event: record.clone(),
                    error: error.clone(),
                    attempts,
                    parked_at: Utc::now(),
                })
                .await
                .map_err(Halt::Failed)?;
            self.status.send_modify(|status| status.parked += 1);
            metrics::counter!("annals_projection_parked_total", "projection" => name.to_owned())
                .increment(1);
        }
        match self.config.failure.on_exhausted {
            OnExhausted::Stop => Err(Halt::Stopped(format!(
                "event {} ({} at `{}` version {}) is parked: {error}",
                record.event_id, record.event_type, record.stream, record.version
            ))),
            OnExhausted::Skip => {
                let next = self.advance(checkpoint, record.position).await?;
                self.status.send_modify(|status| status.skipped += 1);
                metrics::counter!("annals_projection_skipped_total", "projection" => name.to_owned()).increment(1);
                Ok(next)
            }
        }
    }

    /// Moves the checkpoint without applying anything.
    async fn advance(
        &self,
        from: GlobalPosition,
        to: GlobalPosition,
    ) -> Result<GlobalPosition, Halt> {
        match self.try_apply(&[], from, to).await {
            Ok(()) => Ok(to),
            Err(Attempt::Backend(error)) | Err(Attempt::Handler(error)) => Err(Halt::Resync(error)),
        }
    }

    async fn try_apply(
        &self,
        envelopes: &[Envelope<P::Event>],
        from: GlobalPosition,
        to: GlobalPosition,
    ) -> Result<(), Attempt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self
            .backend
            .begin(name, version)
            .await
            .map_err(|error| Attempt::Backend(error.to_string()))?;
        if !envelopes.is_empty()
            && let Err(error) = self.projection.handle_batch(&mut tx, envelopes).await
        {
            if let Err(rollback) = self.backend.rollback(tx).await {
                // The transaction's connection is gone: the failure is the
                // backend's, whatever the handler reported.
                return Err(Attempt::Backend(format!(
                    "{error} (rollback failed: {rollback})"
                )));
            }
            return Err(Attempt::Handler(error.to_string()));
        }
        self.backend
            .commit(tx, name, version, from, to)
            .await
            .map_err(|error| Attempt::Backend(error.to_string()))
    }

    async fn pause(
        &self,
        wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), Halt> {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = shutdown.wait_for(|stop| *stop) => Err(Halt::Shutdown),
        }
    }

    fn set_state(&self, state: ProjectionState) {
        self.status.send_modify(|status| {
            status.state = state;
            status.updated_at = Utc::now();
        });
    }

    fn note_error(&self, error: &str) {
        self.status.send_modify(|status| {
            status.last_error = Some(error.to_owned());
            status.updated_at = Utc::now();
        });
    }

    fn count_applied(&self, events: u64) {
        self.status.send_modify(|status| status.applied += events);
        metrics::counter!("annals_projection_events_total", "projection" => self.projection.name().to_owned())
            .increment(events);
    }

    /// Records the lag seen at a read: `oldest` is the first unapplied event.
    fn note_lag(&self, oldest: Option<&RecordedEvent>, more: bool) {
        let lag = oldest
            .map(|record| {
                (Utc::now() - record.recorded_at)
                    .to_std()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let name = self.projection.name().to_owned();
        metrics::gauge!("annals_projection_lag_seconds", "projection" => name)
            .set(lag.as_secs_f64());
        self.status.send_modify(|status| {
            status.lag = lag;
            status.state = match (&status.state, more) {
                (ProjectionState::Stopped { .. }, _) => status.state.clone(),
                (_, true) => ProjectionState::CatchingUp,
                (_, false) if oldest.is_none() => ProjectionState::Live,
                (state, false) => state.clone(),
            };
            status.updated_at = Utc::now();
        });
    }
}

/// How one attempt failed.
enum Attempt {
    /// The handler (or decoding) failed: counts against the event.
    Handler(String),
    /// The backend failed: retried without counting.
    Backend(String),
}
