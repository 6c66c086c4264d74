//! The loop that feeds a projection: read the global stream after the
//! checkpoint, apply a batch and move the checkpoint in one transaction,
//! retry and park failures, follow live.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{
    EventFilter, FailurePolicy, OnExhausted, ParkedEvent, Projection, ProjectionBackend,
    ProjectionHandle, ProjectionState, ProjectionStatus,
};
use tracing::Instrument;

use crate::{BoxError, Envelope, Error, EventStore, GlobalPosition, RecordedEvent};

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
    /// How often the backlog is counted for the status (default 2 s). A
    /// count that takes long (a big backlog) waits twenty times its own
    /// duration before the next one, so that counting never takes more than
    /// a twentieth of the runner's time.
    pub progress_interval: Duration,
    /// The most events counted for the backlog (default 1,000,000).
    pub backlog_limit: u64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            failure: FailurePolicy::default(),
            progress_interval: Duration::from_secs(2),
            backlog_limit: 1_000_000,
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

    /// Sets how often the backlog is counted, and up to how many events.
    pub fn with_progress(mut self, interval: Duration, backlog_limit: u64) -> Self {
        self.progress_interval = interval;
        self.backlog_limit = backlog_limit;
        self
    }
}

/// What a replay of parked events did ([`ProjectionRunner::replay_parked`],
/// [`ProjectionHandle::replay_parked`]).
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
    /// projection under [`OnExhausted::Stop`]): left to the runner, which
    /// applies them in order when it starts again.
    pub ahead: u64,
    /// The last error of a failed replay.
    pub last_error: Option<String>,
}

/// What a [`ProjectionHandle`] asks of its running runner.
pub(super) enum Request {
    ReplayParked(oneshot::Sender<Result<ReplayReport, Error>>),
}

/// Runs one projection against a store and a backend.
///
/// Exactly-once effect: the read model and the checkpoint change in one
/// transaction (or, for a backend without atomic batches, one event at a
/// time), and the global stream never shows an event behind a position once
/// read, so nothing is applied twice or skipped.
///
/// Versions: the first version of a projection serves queries from its
/// start. A runner of a newer version rebuilds from the start of the global
/// stream beside it (state [`ProjectionState::Rebuilding`]) and, once caught
/// up, promotes itself in one transaction ([`Projection::promote`]); the
/// older version's runners go on applying for readers that still use it
/// until they are stopped.
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
        let (requests, received) = mpsc::channel(4);
        let status = self.status.subscribe();
        let task = tokio::spawn(self.run_serving(stop, received));
        ProjectionHandle::new(status, shutdown, requests, task)
    }

    /// Runs until `shutdown` turns true, the lease is lost or an event stops
    /// the projection. Returns `Ok` on shutdown and on a stop by policy (the
    /// status says why), an error when the backend fails for good.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        // Nobody can ask anything of a runner without a handle.
        let (_, requests) = mpsc::channel(1);
        self.run_serving(shutdown, requests).await
    }

    /// Clears this version of the projection: its read model
    /// ([`Projection::reset`]), its checkpoint and its parked events, in one
    /// transaction, so that the next run replays the global stream from the
    /// start. Waits for the version's lease: stop its runners first (a
    /// timeout around the call bounds the wait).
    pub async fn reset(&self) -> Result<(), Error> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let _lease = self.backend.acquire(name, version).await?;
        let mut tx = self.backend.begin(name, version).await?;
        if let Err(cause) = self.projection.reset(&mut tx).await {
            let _ = self.backend.rollback(tx).await;
            return Err(self.failed_in("reset", cause));
        }
        self.backend.reset(tx, name, version).await?;
        tracing::info!(projection = %name, version, "projection reset; the next run replays it from the start");
        Ok(())
    }

    /// Applies again the events parked behind the checkpoint (skipped under
    /// [`OnExhausted::Skip`]), oldest first, each in a transaction of its own
    /// that also unparks it; an event that fails again stays parked with the
    /// new error. They are applied after the events that followed them.
    /// Waits for the version's lease: for a running projection use
    /// [`ProjectionHandle::replay_parked`] instead.
    pub async fn replay_parked(&self) -> Result<ReplayReport, Error> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let _lease = self.backend.acquire(name, version).await?;
        let checkpoint = self
            .backend
            .checkpoint(name, version)
            .await?
            .unwrap_or(GlobalPosition::START);
        self.replay_behind(checkpoint, &mut HashSet::new()).await
    }

    async fn run_serving(
        self,
        shutdown: watch::Receiver<bool>,
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
        mut shutdown: watch::Receiver<bool>,
        mut requests: mpsc::Receiver<Request>,
    ) -> Result<(), Error> {
        let (name, version) = (self.projection.name().to_owned(), self.projection.version());
        // Consecutive outages of the store or backend, for the back-off.
        let mut outages = 0;
        loop {
            let applied = self.status.borrow().applied;
            let acquired = tokio::select! {
                lease = self.backend.acquire(&name, version) => lease,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let halt = match acquired {
                Ok(lease) => {
                    self.run_with_lease(&lease, &mut shutdown, &mut requests)
                        .await
                }
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

    async fn run_with_lease(
        &self,
        lease: &B::Lease,
        shutdown: &mut watch::Receiver<bool>,
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
            if *shutdown.borrow() {
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
            if next_count.is_none_or(|at| at <= Instant::now()) {
                let started = Instant::now();
                self.count_backlog(checkpoint).await;
                let spacing = self.config.progress_interval.max(started.elapsed() * 20);
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
                _ = signal.wait(self.config.poll_interval) => None,
                Some(request) = requests.recv() => Some(request),
                _ = shutdown.wait_for(|stop| *stop) => return Halt::Shutdown,
            };
            if let Some(request) = request {
                self.answer(request, checkpoint, &mut parked).await;
            }
        }
    }

    /// The error of the projection's own code failing in `step`.
    fn failed_in(&self, step: &'static str, cause: BoxError) -> Error {
        Error::Projection {
            projection: self.projection.name().to_owned(),
            step,
            cause,
        }
    }

    /// The version that serves queries; noted in the status.
    async fn serving(&self) -> Result<Option<u32>, Error> {
        let serving = self.backend.serving(self.projection.name()).await?;
        self.status
            .send_modify(|status| status.serving_version = serving);
        Ok(serving)
    }

    /// Makes this version the one that serves queries, unless a newer one
    /// does already.
    async fn promote(&self) -> Result<(), Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let tx = self.hook(Hook::Promote).await?;
        if self
            .backend
            .promote(tx, name, version)
            .await
            .map_err(|error| Halt::Resync(error.to_string()))?
        {
            tracing::info!(projection = %name, version, "this version now serves queries");
        }
        match self.serving().await {
            Ok(Some(serving)) if serving > version => {
                tracing::info!(projection = %name, version, serving, "a newer version serves queries; this one is applied only for readers that still use it");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(error) => Err(Halt::Failed(error)),
        }
    }

    /// Counts the events after `checkpoint` still to be read and looks at
    /// the horizon, for the status. A failed count is noted, not fatal: the
    /// reads report outages.
    async fn count_backlog(&self, checkpoint: GlobalPosition) {
        // Another runner may have promoted a newer version meanwhile.
        if let Err(error) = self.serving().await {
            tracing::debug!(%error, "could not read the projection's serving version");
        }
        match self
            .store
            .global_backlog(checkpoint, self.config.backlog_limit)
            .await
        {
            Ok(backlog) => {
                metrics::gauge!("annals_projection_lag_events", "projection" => self.projection.name().to_owned())
                    .set(backlog.events as f64);
                self.status.send_modify(|status| {
                    status.lag_events = Some(backlog.events);
                    status.lag_events_capped = backlog.capped;
                    status.horizon_held_for = backlog.horizon_held_for;
                });
            }
            Err(error) => {
                tracing::debug!(%error, "could not count the projection's backlog");
            }
        }
    }

    /// Notes a batch of `read` events applied up to `checkpoint`; `full`
    /// when more may follow at once.
    fn note_applied(&self, checkpoint: GlobalPosition, read: u64, full: bool) {
        self.status.send_modify(|status| {
            status.checkpoint = checkpoint;
            status.lag_events = if full {
                status.lag_events.map(|events| events.saturating_sub(read))
            } else {
                // Caught up with what was readable at the read.
                Some(0)
            };
            if !full {
                status.lag_events_capped = false;
            }
        });
    }

    /// Answers a handle's request between batches.
    async fn answer(
        &self,
        request: Request,
        checkpoint: GlobalPosition,
        parked: &mut HashSet<Uuid>,
    ) {
        match request {
            Request::ReplayParked(reply) => {
                let _ = reply.send(self.replay_behind(checkpoint, parked).await);
            }
        }
    }

    /// Replays the events parked behind `checkpoint`; forgets those applied
    /// from `parked`.
    async fn replay_behind(
        &self,
        checkpoint: GlobalPosition,
        parked: &mut HashSet<Uuid>,
    ) -> Result<ReplayReport, Error> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut report = ReplayReport::default();
        for event in self.backend.parked(name, version).await? {
            if event.event.position > checkpoint {
                report.ahead += 1;
                continue;
            }
            let event_id = event.event.event_id;
            let outcome = match event.event.to_envelopes::<P::Event>() {
                Ok(envelopes) => {
                    self.try_apply(&envelopes, checkpoint, checkpoint, Some(event_id))
                        .await
                }
                Err(error) => Err(Attempt::Handler(error.to_string())),
            };
            match outcome {
                Ok(()) => {
                    parked.remove(&event_id);
                    report.replayed += 1;
                    self.count_applied(1);
                    tracing::info!(event = %event_id, "replayed a parked event");
                }
                Err(Attempt::Handler(error)) => {
                    tracing::warn!(event = %event_id, %error, "a replayed parked event failed again; it stays parked");
                    report.failed += 1;
                    report.last_error = Some(error.clone());
                    self.backend
                        .park(ParkedEvent {
                            attempts: event.attempts.saturating_add(1),
                            error,
                            parked_at: Utc::now(),
                            ..event
                        })
                        .await?;
                }
                Err(Attempt::Backend(error)) => {
                    return Err(Error::backend("projection replay", true, error));
                }
            }
        }
        Ok(report)
    }

    /// Runs the projection's `hook` in a new transaction, to be committed by
    /// the caller.
    async fn hook(&self, hook: Hook) -> Result<B::Tx, Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self
            .backend
            .begin(name, version)
            .await
            .map_err(Halt::Failed)?;
        let (step, ran) = match hook {
            Hook::Setup => ("setup", self.projection.setup(&mut tx).await),
            Hook::Promote => ("promote", self.projection.promote(&mut tx).await),
        };
        match ran {
            Ok(()) => Ok(tx),
            Err(cause) => Err(match self.backend.rollback(tx).await {
                Ok(()) => Halt::Failed(self.failed_in(step, cause)),
                Err(rollback) => Halt::Resync(format!("{cause} (rollback failed: {rollback})")),
            }),
        }
    }

    async fn setup(&self) -> Result<(), Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let tx = self.hook(Hook::Setup).await?;
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
        // A batch with a parked event in it goes one by one, so that the
        // event is unparked in the transaction that applies it.
        let plain = items
            .iter()
            .all(|item| item.decoded.is_ok() && !parked.contains(&item.record.event_id));
        if self.backend.atomic_batches() && plain {
            match self.try_apply(&envelopes, checkpoint, last, None).await {
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
        for item in items {
            let position = item.record.position;
            let mut attempts = 0;
            loop {
                if !self.backend.is_held(lease) {
                    return Err(Halt::LeaseLost);
                }
                attempts += 1;
                let unpark = parked
                    .contains(&item.record.event_id)
                    .then_some(item.record.event_id);
                let outcome = match &item.decoded {
                    Ok(range) => {
                        self.try_apply(&envelopes[range.clone()], checkpoint, position, unpark)
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
                        parked.remove(&item.record.event_id);
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
        match self.try_apply(&[], from, to, None).await {
            Ok(()) => Ok(to),
            Err(Attempt::Backend(error)) | Err(Attempt::Handler(error)) => Err(Halt::Resync(error)),
        }
    }

    /// Applies `envelopes` and moves the checkpoint from `from` to `to` in one
    /// transaction, unparking the event `unpark` in it.
    async fn try_apply(
        &self,
        envelopes: &[Envelope<P::Event>],
        from: GlobalPosition,
        to: GlobalPosition,
        unpark: Option<Uuid>,
    ) -> Result<(), Attempt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self
            .backend
            .begin(name, version)
            .await
            .map_err(|error| Attempt::Backend(error.to_string()))?;
        if let Some(event_id) = unpark
            && let Err(error) = self.backend.unpark(&mut tx, name, version, event_id).await
        {
            let _ = self.backend.rollback(tx).await;
            return Err(Attempt::Backend(error.to_string()));
        }
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

    /// Records the lag seen at a read: `oldest` is the first unapplied event,
    /// `more` when the read was full.
    fn note_lag(&self, oldest: Option<&RecordedEvent>, more: bool, rebuilding: bool) {
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
                _ if rebuilding => ProjectionState::Rebuilding,
                (_, true) => ProjectionState::CatchingUp,
                (_, false) if oldest.is_none() => ProjectionState::Live,
                (state, false) => state.clone(),
            };
            status.updated_at = Utc::now();
        });
    }
}

/// A projection hook that runs in a transaction of its own.
enum Hook {
    Setup,
    Promote,
}

/// How one attempt failed.
enum Attempt {
    /// The handler (or decoding) failed: counts against the event.
    Handler(String),
    /// The backend failed: retried without counting.
    Backend(String),
}
