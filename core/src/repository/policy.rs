//! When to retry and when to snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Backoff, Exhaustion, RetryPolicy};

/// What the [`Repository`](crate::Repository) does when a command's
/// attempts are used up: the choice of its [`RetryPolicy`].
///
/// The repository retries a command after a version conflict (always:
/// reload and decide again) and after a retriable store error (only when
/// the command carries an id, which makes the retry idempotent; every
/// command does unless told otherwise, see
/// [`Repository::with_transient_retries`](crate::Repository::with_transient_retries)).
/// Its default policy: 20 attempts (a hot aggregate with eight writers
/// through a store with real round trips needs up to about a dozen, since
/// the writer whose state is warm keeps winning while the others reload),
/// waits from 2 ms up to 200 ms, each drawn at random between zero and its
/// bound ("full jitter") so that writers that collided do not collide again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CommandExhausted {
    /// Return the last error to the caller: the conflict, or the store's
    /// error.
    #[default]
    ReturnError,
}

impl Exhaustion for CommandExhausted {
    fn default_policy() -> RetryPolicy<Self> {
        RetryPolicy::new(
            20,
            Backoff::exponential(Duration::from_millis(2), Duration::from_millis(200))
                .with_jitter(1.0),
            CommandExhausted::ReturnError,
        )
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
    fn commands_default_to_full_jitter_below_a_growing_bound() {
        let policy = RetryPolicy::<CommandExhausted>::default();
        assert_eq!(policy.max_attempts(), 20);
        for _ in 0..1000 {
            assert!(policy.delay(1) <= Duration::from_millis(2));
            assert!(policy.delay(30) <= Duration::from_millis(200));
        }
        let large: Vec<_> = (0..1000).map(|_| policy.delay(30)).collect();
        assert!(large.iter().any(|wait| *wait > Duration::from_millis(100)));
        assert!(large.iter().any(|wait| *wait < Duration::from_millis(100)));
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
