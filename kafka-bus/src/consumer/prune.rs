//! Forgetting old inbox claims, so the inbox does not grow forever.

use std::sync::Arc;
use std::time::Duration;

use annals::Inbox;
use chrono::Utc;
use tokio::task::JoinHandle;

use super::monitor::Monitor;

/// Prunes `consumer`'s claims older than `retention` now and every `every`.
///
/// A message redelivered after its claim was pruned is handled again, so
/// the retention must exceed how long the broker may redeliver: the topic's
/// retention, or at least the longest a partition may wait uncommitted.
pub(crate) fn spawn<I: Inbox>(
    inbox: I,
    monitor: Arc<Monitor>,
    retention: Duration,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        loop {
            let before = Utc::now()
                .checked_sub_signed(retention)
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
            match inbox.prune(monitor.name(), before).await {
                Ok(pruned) => {
                    if pruned > 0 {
                        tracing::info!(consumer = monitor.name(), pruned, "pruned inbox claims");
                    }
                    monitor.pruned(pruned);
                }
                Err(error) => {
                    tracing::warn!(consumer = monitor.name(), %error, "pruning the inbox failed; trying again later");
                    monitor.error(&format!("pruning the inbox: {error}"));
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
