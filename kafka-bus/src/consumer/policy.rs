//! What a consumer does when a handler keeps failing, and with records that
//! no handler is registered for.

use std::time::Duration;

/// What happens to a record whose handler failed
/// [`FailurePolicy::max_attempts`] times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnExhausted {
    /// Send it to the dead-letter topic with the error and its origin, and go
    /// on with the partition (the default). Later records with the same key
    /// are handled before a replay brings it back.
    #[default]
    DeadLetter,
    /// Keep it, and every later record with the same key, in order: the
    /// first is retried with capped backoff until it succeeds, the others
    /// wait behind it, records with other keys go on. Offsets are committed
    /// only up to the first kept record, so a restart delivers again from
    /// there (the inbox makes the records handled meanwhile no-ops). Choose
    /// it when order per key matters more than progress on that key.
    BlockKey,
}

/// What happens to a record whose type no handler is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownTypes {
    /// Send it to the dead-letter topic with reason `unknown-type` (the
    /// default): a consumer that reads a topic of its own should know every
    /// type on it, and a new type deserves attention, not silence.
    #[default]
    DeadLetter,
    /// Commit past it and count it as skipped: for topics that carry many
    /// types of which this consumer wants a few.
    Skip,
}

/// How a consumer retries a failing handler, and what follows.
///
/// Only failures of the handler count as attempts. When the inbox's
/// transaction cannot begin or commit, or fails because its connection is
/// gone (a database outage), the record is retried with capped backoff
/// without counting, so an outage never dead-letters anything.
///
/// ```
/// use std::time::Duration;
///
/// use annals_kafka::{FailurePolicy, OnExhausted};
///
/// let policy = FailurePolicy::default()
///     .with_max_attempts(3)
///     .with_backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .with_on_exhausted(OnExhausted::BlockKey);
/// assert_eq!(policy.backoff(1), Duration::from_millis(50));
/// assert_eq!(policy.backoff(3), Duration::from_millis(200));
/// assert_eq!(policy.backoff(30), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailurePolicy {
    /// Attempts per record, the first included (default 5).
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
            on_exhausted: OnExhausted::DeadLetter,
        }
    }
}

impl FailurePolicy {
    /// Sets the attempts per record (at least 1).
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
        annals::exponential_backoff(self.initial_backoff, self.max_backoff, attempt)
    }
}
