//! Work beside publishing while a relay leads a shard: pruning what the
//! checkpoint covers, and measuring the backlog for the status and the
//! metrics. Both run as tasks of their own so that publishing never waits
//! for them.

use std::time::{Duration, Instant};

use annals::{GlobalPosition, OutboxSource};
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::shard::{Progress, ShardContext};

/// The housekeeping tasks of one lead; they end when it is dropped.
#[derive(Debug)]
pub(super) struct Housekeeping {
    tasks: Vec<JoinHandle<()>>,
}

impl Housekeeping {
    pub(super) fn spawn<S: OutboxSource>(
        context: &ShardContext<S>,
        progress: watch::Receiver<Progress>,
    ) -> Self {
        let pruner = tokio::spawn(prune(
            context.source.clone(),
            Label::of(context),
            context.settings.prune_batch,
            (context.settings.backoff_min, context.settings.backoff_max),
            progress.clone(),
        ));
        let monitor = tokio::spawn(monitor(
            context.source.clone(),
            Label::of(context),
            context.status.clone(),
            context.metrics.clone(),
            context.settings.status_interval,
            progress,
        ));
        Housekeeping {
            tasks: vec![pruner, monitor],
        }
    }
}

impl Drop for Housekeeping {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Which shard of which relay, for logs.
#[derive(Debug, Clone)]
struct Label {
    relay: String,
    shard: annals::OutboxShard,
}

impl Label {
    fn of<S>(context: &ShardContext<S>) -> Self {
        Label {
            relay: context.settings.name.clone(),
            shard: context.shard,
        }
    }
}

/// Deletes published records behind the saved checkpoint, `batch` at a time
/// so that no single delete holds locks for long.
async fn prune<S: OutboxSource>(
    source: S,
    label: Label,
    batch: usize,
    (backoff_min, backoff_max): (Duration, Duration),
    mut progress: watch::Receiver<Progress>,
) {
    let mut backoff = Backoff::new(backoff_min, backoff_max);
    let mut pruned_through = GlobalPosition::START;
    loop {
        let saved = progress.borrow_and_update().saved;
        if saved > pruned_through {
            match source.prune(label.shard, saved, batch).await {
                Ok(deleted) if deleted as usize >= batch => {
                    backoff.reset();
                    continue;
                }
                Ok(_) => {
                    backoff.reset();
                    pruned_through = saved;
                }
                Err(error) => {
                    tracing::warn!(relay = %label.relay, shard = %label.shard, %error,
                        "pruning published outbox records failed; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                    continue;
                }
            }
        }
        if progress.changed().await.is_err() {
            return;
        }
    }
}

/// How many times its own duration the backlog count waits before the
/// next: counting a large backlog reads every waiting row, on the same
/// cores the drain needs.
const MONITOR_SPACING: u32 = 20;

/// Refreshes the backlog and lag every `interval`, or less often when
/// counting takes long (see [`MONITOR_SPACING`]).
async fn monitor<S: OutboxSource>(
    source: S,
    label: Label,
    status: super::status::StatusCell,
    metrics: super::metrics::ShardMetrics,
    interval: Duration,
    progress: watch::Receiver<Progress>,
) {
    loop {
        let started = Instant::now();
        let after = progress.borrow().done_through;
        match source.backlog(label.shard, after).await {
            Ok(backlog) => {
                let lag = backlog
                    .oldest
                    .and_then(|oldest| (Utc::now() - oldest).to_std().ok())
                    .unwrap_or_default();
                metrics.record_backlog(backlog.messages, lag);
                status.update(|status| {
                    status.backlog = backlog.messages;
                    status.lag = lag;
                });
            }
            Err(error) => {
                tracing::debug!(relay = %label.relay, shard = %label.shard, %error,
                    "measuring the backlog failed");
            }
        }
        let took = started.elapsed();
        tokio::time::sleep(interval.max(took * MONITOR_SPACING).saturating_sub(took)).await;
    }
}
