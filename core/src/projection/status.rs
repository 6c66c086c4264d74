//! What a projection runner reports, and what it does when a handler keeps
//! failing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Backoff, Exhaustion, GlobalPosition, RetryPolicy};

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
    /// (counted at most once per interval and up to a limit, see
    /// [`ProjectionRunner::progress`](super::ProjectionRunner::progress));
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
    /// [`ProjectionExhausted::Skip`]).
    pub skipped: u64,
    /// Events parked since the runner started.
    pub parked: u64,
    /// The last error seen, handled or not.
    pub last_error: Option<String>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
}

impl ProjectionStatus {
    /// Whether the runner has caught up and follows new events.
    pub fn is_live(&self) -> bool {
        self.state == ProjectionState::Live
    }

    /// Whether the runner has stopped, by policy or shut down.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, ProjectionState::Stopped { .. })
    }

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

/// What a projection runner does with an event whose handler failed every
/// attempt of its [`RetryPolicy`]: the choice of the policy given to
/// [`ProjectionRunner::retry_policy`](super::ProjectionRunner::retry_policy).
///
/// The default policy: 5 attempts per event, waits from 100 ms doubling up
/// to 10 s, then [`ProjectionExhausted::Stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProjectionExhausted {
    /// Park the event and stop the projection: nothing after it is applied
    /// until the cause is fixed and the runner restarted (it retries the
    /// parked event first).
    #[default]
    Stop,
    /// Park the event, count it and go on. The read model misses the event
    /// until it is replayed.
    Skip,
}

impl Exhaustion for ProjectionExhausted {
    fn default_policy() -> RetryPolicy<Self> {
        RetryPolicy::new(
            5,
            Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)),
            ProjectionExhausted::Stop,
        )
    }
}
