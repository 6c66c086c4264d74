//! The one back-off rule of annals's retry policies.

use std::time::Duration;

/// The wait after failed attempt `attempt` (counting from 1): `initial`,
/// doubled for every further attempt, never more than `max`. The repository,
/// the projection runner and the Kafka consumer all wait by it (the
/// repository draws a random wait below it).
///
/// ```
/// use std::time::Duration;
///
/// use annals::exponential_backoff;
///
/// let (initial, max) = (Duration::from_millis(10), Duration::from_millis(50));
/// let waits: Vec<u128> = (1..=5)
///     .map(|attempt| exponential_backoff(initial, max, attempt).as_millis())
///     .collect();
/// assert_eq!(waits, [10, 20, 40, 50, 50]);
/// ```
pub fn exponential_backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    initial.saturating_mul(1 << exponent).min(max)
}
