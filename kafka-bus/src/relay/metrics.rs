//! The relay's metrics (`metrics` crate), labelled by relay name and shard.

use std::time::Duration;

use annals::OutboxShard;
use metrics::{Counter, Gauge, Histogram};

/// Records published (acked by the broker).
pub(super) const PUBLISHED: &str = "annals_relay_published_total";
/// Records parked because the broker refused them for good.
pub(super) const PARKED: &str = "annals_relay_parked_total";
/// Records found already published during recovery and not sent again.
pub(super) const SKIPPED: &str = "annals_relay_skipped_total";
/// Producer sessions started; each begins with recovery.
pub(super) const RECOVERIES: &str = "annals_relay_recoveries_total";
/// From reading a batch to the checkpoint covering all of it, in seconds.
pub(super) const BATCH_SECONDS: &str = "annals_relay_batch_seconds";
/// Records waiting in the shard.
pub(super) const BACKLOG: &str = "annals_relay_backlog_messages";
/// Age of the oldest waiting record, in seconds.
pub(super) const LAG_SECONDS: &str = "annals_relay_lag_seconds";

/// The metric handles of one shard.
#[derive(Debug, Clone)]
pub(super) struct ShardMetrics {
    pub(super) published: Counter,
    pub(super) parked: Counter,
    pub(super) skipped: Counter,
    pub(super) recoveries: Counter,
    pub(super) batch_seconds: Histogram,
    pub(super) backlog: Gauge,
    pub(super) lag_seconds: Gauge,
}

impl ShardMetrics {
    pub(super) fn new(relay: &str, shard: OutboxShard) -> Self {
        let labels = [("relay", relay.to_owned()), ("shard", shard.to_string())];
        ShardMetrics {
            published: metrics::counter!(PUBLISHED, &labels),
            parked: metrics::counter!(PARKED, &labels),
            skipped: metrics::counter!(SKIPPED, &labels),
            recoveries: metrics::counter!(RECOVERIES, &labels),
            batch_seconds: metrics::histogram!(BATCH_SECONDS, &labels),
            backlog: metrics::gauge!(BACKLOG, &labels),
            lag_seconds: metrics::gauge!(LAG_SECONDS, &labels),
        }
    }

    pub(super) fn record_backlog(&self, messages: u64, lag: Duration) {
        self.backlog.set(messages as f64);
        self.lag_seconds.set(lag.as_secs_f64());
    }
}
