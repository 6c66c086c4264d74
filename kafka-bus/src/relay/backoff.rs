//! Capped exponential backoff between attempts that failed for a passing
//! reason (broker or database unreachable).

use std::time::Duration;

/// Doubles the wait after each failure, from `min` up to `max`, with up to a
/// quarter of random jitter so that several relays do not retry in step.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub(super) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = wait.mul_f64(fastrand::f64() * 0.25);
        wait - jitter
    }

    /// Back to the shortest wait, after a success.
    pub(super) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<_> = (0..6).map(|_| backoff.next_wait()).collect();
        let caps = [100, 200, 400, 800, 1000, 1000];
        for (wait, cap) in waits.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(
                *wait <= cap && *wait >= cap.mul_f64(0.75),
                "{wait:?} vs {cap:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(100));
    }
}
