//! What a projection runner reports, and what it does when a handler keeps
//! failing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::GlobalPosition;

/// Where a projection runner is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionState {
    /// Not started, or waiting to become the active runner.
    Standby,
    /// Reading events that were written before it caught up.
    CatchingUp,
    /// Caught up, following new events.
    Live,
    /// Building a new version from the start of the global stream beside
    /// the older version that serves queries; it is promoted to serve them
    /// once it has caught up.
    Rebuilding,
    /// Stopped by an event it could not apply (parked), or shut down.
    Stopped {
        /// Why; `None` after a clean shutdown.
        error: Option<String>,
    },
}

/// A projection's progress.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// The version being built.
    pub version: u32,
    /// The version that serves queries, as last seen: this one once it was
    /// promoted, an older one while this one rebuilds, a newer one when this
    /// runner is superseded and only kept up for readers that still use it.
    pub serving_version: Option<u32>,
    /// Where the runner is.
    pub state: ProjectionState,
    /// The position of the last event applied (or skipped by the filter).
    pub checkpoint: GlobalPosition,
    /// How long ago the oldest unapplied event was recorded; zero when caught
    /// up.
    pub lag: Duration,
    /// Events readable after the checkpoint that are still to be read
    /// (counted up to [`RunnerConfig::backlog_limit`](super::RunnerConfig),
    /// at most once per [`RunnerConfig::progress_interval`](super::RunnerConfig));
    /// `None` until first counted.
    pub lag_events: Option<u64>,
    /// Whether the count of [`ProjectionStatus::lag_events`] stopped at the
    /// limit: the backlog may be larger.
    pub lag_events_capped: bool,
    /// How long the oldest running transaction has held the global stream's
    /// readers back (nothing committed after it began is readable until it
    /// ends); `None` when nothing holds them back or the store cannot tell.
    pub horizon_held_for: Option<Duration>,
    /// Events applied since the runner started.
    pub applied: u64,
    /// Events skipped after their handler failed for good (only with
    /// [`OnExhausted::Skip`]).
    pub skipped: u64,
    /// Events parked since the runner started.
    pub parked: u64,
    /// The last error seen, handled or not.
    pub last_error: Option<String>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
}

impl ProjectionStatus {
    pub(crate) fn new(name: &str, version: u32) -> Self {
        ProjectionStatus {
            name: name.to_owned(),
            version,
            serving_version: None,
            state: ProjectionState::Standby,
            checkpoint: GlobalPosition::START,
            lag: Duration::ZERO,
            lag_events: None,
            lag_events_capped: false,
            horizon_held_for: None,
            applied: 0,
            skipped: 0,
            parked: 0,
            last_error: None,
            updated_at: Utc::now(),
        }
    }
}

/// What happens after an event's handler failed `max_attempts` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExhausted {
    /// Park the event and stop the projection: nothing after it is applied
    /// until the cause is fixed and the runner restarted (it retries the
    /// parked event first).
    #[default]
    Stop,
    /// Park the event, count it and go on. The read model misses the event
    /// until it is replayed.
    Skip,
}

/// How a runner retries a failing handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailurePolicy {
    /// Attempts per event, the first included (default 5).
    pub max_attempts: u32,
    /// The first wait between attempts, doubled each time (default 100 ms).
    pub initial_backoff: Duration,
    /// The longest wait (default 10 s).
    pub max_backoff: Duration,
    /// What happens when the attempts are used up.
    pub on_exhausted: OnExhausted,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            on_exhausted: OnExhausted::Stop,
        }
    }
}

impl FailurePolicy {
    /// Sets the attempts per event (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the waits between attempts.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets what happens when the attempts are used up.
    pub fn with_on_exhausted(mut self, on_exhausted: OnExhausted) -> Self {
        self.on_exhausted = on_exhausted;
        self
    }

    /// The wait after failed attempt `attempt` (from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        crate::exponential_backoff(self.initial_backoff, self.max_backoff, attempt)
    }
}
