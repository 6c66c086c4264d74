//! The one shape of a retry policy: attempts, waits, and what a worker does
//! when the attempts are used up.

use std::fmt;
use std::time::Duration;

use super::Backoff;

/// The choices a kind of worker offers when a step failed
/// [`RetryPolicy::max_attempts`] times, and that kind's default policy.
///
/// Each worker kind has its own choices (a projection parks and stops or
/// parks and skips, a consumer dead-letters or blocks the key, ...), so a
/// policy cannot be handed to a worker that cannot honour it.
pub trait Exhaustion: Copy + fmt::Debug + Send + Sync + 'static {
    /// The policy a worker of this kind follows unless told otherwise.
    fn default_policy() -> RetryPolicy<Self>;
}

/// How a worker retries a failing step (a command after a conflict, a
/// handler, a compensation), and what follows when it keeps failing.
///
/// `X` is the worker kind's [`Exhaustion`] choice; [`Default`] gives that
/// kind's documented default.
///
/// ```
/// use std::time::Duration;
///
/// use annals::{Backoff, CommandExhausted, RetryPolicy};
///
/// let policy = RetryPolicy::<CommandExhausted>::default()
///     .with_max_attempts(3)
///     .with_backoff(Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2)))
///     .with_on_exhausted(CommandExhausted::ReturnError);
/// assert_eq!(policy.max_attempts(), 3);
/// assert_eq!(policy.delay(3), Duration::from_millis(200));
/// assert!(policy.exhausted(3) && !policy.exhausted(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy<X> {
    max_attempts: u32,
    backoff: Backoff,
    on_exhausted: X,
}

impl<X: Exhaustion> Default for RetryPolicy<X> {
    fn default() -> Self {
        X::default_policy()
    }
}

impl<X> RetryPolicy<X> {
    /// Up to `max_attempts` attempts (the first included, at least 1),
    /// waiting by `backoff` between them, then `on_exhausted`.
    pub fn new(max_attempts: u32, backoff: Backoff, on_exhausted: X) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            backoff,
            on_exhausted,
        }
    }

    /// Sets the attempts, the first included (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the waits between attempts.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets what happens when the attempts are used up.
    pub fn with_on_exhausted(mut self, on_exhausted: X) -> Self {
        self.on_exhausted = on_exhausted;
        self
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The waits between attempts.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// What happens when the attempts are used up.
    pub fn on_exhausted(&self) -> X
    where
        X: Copy,
    {
        self.on_exhausted
    }

    /// The wait after failed attempt `attempt` (counting from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff.delay(attempt)
    }

    /// Whether failed attempt `attempt` (counting from 1) was the last.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Choice {
        Give,
    }

    impl Exhaustion for Choice {
        fn default_policy() -> RetryPolicy<Self> {
            RetryPolicy::new(
                0,
                Backoff::exponential(Duration::from_millis(1), Duration::from_millis(4)),
                Choice::Give,
            )
        }
    }

    #[test]
    fn at_least_one_attempt() {
        let policy = RetryPolicy::<Choice>::default();
        assert_eq!(policy.max_attempts(), 1);
        assert!(policy.exhausted(1));
        assert_eq!(policy.with_max_attempts(0).max_attempts(), 1);
        assert_eq!(policy.on_exhausted(), Choice::Give);
    }

    #[test]
    fn delays_follow_the_backoff() {
        let policy = RetryPolicy::<Choice>::default().with_max_attempts(4);
        let waits: Vec<_> = (1..=4).map(|attempt| policy.delay(attempt)).collect();
        assert_eq!(waits, [1, 2, 4, 4].map(Duration::from_millis));
        assert!(!policy.exhausted(3));
        assert!(policy.exhausted(4));
    }
}
