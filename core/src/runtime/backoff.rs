//! The one back-off rule of annals: how long to wait before the next
//! attempt.

use std::time::Duration;

/// Waits that double after every failed attempt, from `initial` up to `max`,
/// optionally drawn at random below that bound so that callers that failed
/// together do not retry together.
///
/// Every retrying part of annals waits by it: the repository after a
/// conflict, the projection runner and the consumer after a failed handler,
/// the relay and the saga runner after an outage.
///
/// ```
/// use std::time::Duration;
///
/// use annals::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
/// let waits: Vec<u128> = (1..=5).map(|attempt| backoff.delay(attempt).as_millis()).collect();
/// assert_eq!(waits, [10, 20, 40, 50, 50]);
///
/// // Full jitter: anywhere between zero and the bound.
/// let jittered = backoff.with_jitter(1.0);
/// assert!(jittered.delay(3) <= Duration::from_millis(40));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Waits of `initial`, doubled for every further attempt, never more
    /// than `max` (raised to `initial` when below it), without jitter.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            jitter: 0.0,
        }
    }

    /// The same waits, each drawn at random from the top `fraction` of its
    /// bound: 0 waits exactly the bound, 0.25 between three quarters of it
    /// and all of it, 1 anywhere from zero to the bound ("full jitter").
    /// Values outside 0 to 1 are clamped.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The first wait.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The fraction of each wait drawn at random.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The longest wait after failed attempt `attempt` (counting from 1):
    /// `initial * 2^(attempt - 1)`, at most `max`.
    pub fn bound(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1 << exponent).min(self.max)
    }

    /// The wait after failed attempt `attempt` (counting from 1): the
    /// [`bound`](Backoff::bound), less a random part of it as the jitter
    /// allows.
    pub fn delay(&self, attempt: u32) -> Duration {
        let bound = self.bound(attempt);
        if self.jitter == 0.0 {
            return bound;
        }
        bound.mul_f64(1.0 - self.jitter * fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap() {
        let backoff = Backoff::exponential(MS * 100, MS * 1000);
        let waits: Vec<_> = (1..=6).map(|attempt| backoff.delay(attempt)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000].map(|ms| MS * ms));
        assert_eq!(backoff.delay(0), MS * 100, "attempt 0 counts as the first");
        assert_eq!(backoff.delay(u32::MAX), MS * 1000, "no overflow");
    }

    #[test]
    fn a_cap_below_the_first_wait_is_raised_to_it() {
        let backoff = Backoff::exponential(MS * 100, MS * 10);
        assert_eq!(backoff.max(), MS * 100);
        assert_eq!(backoff.delay(5), MS * 100);
    }

    #[test]
    fn jitter_stays_within_its_fraction_of_the_bound() {
        let quarter = Backoff::exponential(MS * 100, MS * 1000).with_jitter(0.25);
        let full = quarter.with_jitter(1.0);
        let mut below_half = false;
        for _ in 0..1000 {
            let wait = quarter.delay(2);
            assert!(wait <= MS * 200 && wait >= MS * 150, "{wait:?}");
            let wait = full.delay(2);
            assert!(wait <= MS * 200, "{wait:?}");
            below_half |= wait < MS * 100;
        }
        assert!(below_half, "full jitter reaches the lower half");
    }

    #[test]
    fn jitter_is_clamped() {
        let backoff = Backoff::exponential(MS, MS * 8);
        assert_eq!(backoff.with_jitter(7.0).jitter(), 1.0);
        assert_eq!(backoff.with_jitter(-1.0).jitter(), 0.0);
        assert_eq!(backoff.with_jitter(f64::NAN).jitter(), 0.0);
    }
}
