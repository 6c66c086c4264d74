//! When to retry and when to snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How the [`Repository`](crate::Repository) retries a command after a
/// version conflict (always: reload and decide again) and after a retriable
/// store error (only when the command carries an id, which makes the retry
/// idempotent; every command does unless told otherwise).
///
/// Waits grow exponentially from `initial_backoff` up to `max_backoff`, each
/// drawn at random between zero and the current bound ("full jitter"), so
/// that writers that collided do not collide again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 20: a hot aggregate with
    /// eight writers through a store with real round trips needs up to about
    /// a dozen, since the writer whose state is warm keeps winning while the
    /// others reload).
    pub max_attempts: u32,
    /// The bound of the first wait (default 2 ms).
    pub initial_backoff: Duration,
    /// The largest bound (default 200 ms).
    pub max_backoff: Duration,
    /// Whether retriable store errors are retried too (default true).
    pub retry_transient_errors: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
            retry_transient_errors: true,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first conflict or error is returned.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the bounds of the waits.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets whether retriable store errors are retried.
    pub fn with_retry_transient_errors(mut self, retry: bool) -> Self {
        self.retry_transient_errors = retry;
        self
    }

    /// The wait before attempt `attempt + 1`, `attempt` counting from 1.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let bound = crate::exponential_backoff(self.initial_backoff, self.max_backoff, attempt);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// When the [`Repository`](crate::Repository) stores a snapshot with an
/// append. Loading reads the newest snapshot and the events after it.
#[derive(Clone, Default)]
pub enum SnapshotPolicy {
    /// Never: loads read every event, and no snapshot is looked for.
    #[default]
    Never,
    /// Whenever an append crosses a multiple of this many events.
    Every(u64),
    /// When the function, given the version before and after the append and
    /// the version of the snapshot loaded (0 when none), says so.
    Custom(Arc<dyn Fn(SnapshotDecision) -> bool + Send + Sync>),
}

/// What a [`SnapshotPolicy::Custom`] function decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotDecision {
    /// The stream's version before the append.
    pub version_before: u64,
    /// The stream's version after the append.
    pub version_after: u64,
    /// The version of the snapshot the state was loaded from, 0 when none.
    pub last_snapshot: u64,
}

impl SnapshotPolicy {
    /// Whether an append from `decision.version_before` to
    /// `decision.version_after` should carry a snapshot.
    pub fn should_snapshot(&self, decision: SnapshotDecision) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::Every(0) => false,
            SnapshotPolicy::Every(every) => {
                decision.version_after / every > decision.version_before / every
            }
            SnapshotPolicy::Custom(decide) => decide(decision),
        }
    }

    /// Whether loads should look for a snapshot.
    pub fn uses_snapshots(&self) -> bool {
        !matches!(self, SnapshotPolicy::Never | SnapshotPolicy::Every(0))
    }
}

impl fmt::Debug for SnapshotPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotPolicy::Never => f.write_str("Never"),
            SnapshotPolicy::Every(every) => f.debug_tuple("Every").field(every).finish(),
            SnapshotPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let policy =
            RetryPolicy::default().with_backoff(Duration::from_millis(1), Duration::from_millis(8));
        for _ in 0..1000 {
            assert!(policy.backoff(1) <= Duration::from_millis(1));
            assert!(policy.backoff(3) <= Duration::from_millis(4));
            assert!(policy.backoff(30) <= Duration::from_millis(8));
        }
        let large: Vec<_> = (0..1000).map(|_| policy.backoff(30)).collect();
        assert!(large.iter().any(|wait| *wait > Duration::from_millis(4)));
    }

    #[test]
    fn every_n_snapshots_when_crossing_a_multiple() {
        let policy = SnapshotPolicy::Every(10);
        let decide = |before, after| SnapshotDecision {
            version_before: before,
            version_after: after,
            last_snapshot: 0,
        };
        assert!(!policy.should_snapshot(decide(0, 9)));
        assert!(policy.should_snapshot(decide(9, 10)));
        assert!(policy.should_snapshot(decide(8, 13)));
        assert!(!policy.should_snapshot(decide(10, 19)));
        assert!(!SnapshotPolicy::Every(0).should_snapshot(decide(0, 100)));
    }
}
