//! The worker of one partition: takes its records in order, runs their
//! handlers in inbox transactions (a batch at a time while all goes well),
//! retries, dead-letters or blocks keys, and publishes how far every record
//! is settled so that only that prefix is committed.

mod attempt;
mod blocked;
mod failures;
mod offsets;

use std::sync::Arc;

use annals::Inbox;
use chrono::Utc;
use rdkafka::message::OwnedMessage;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::attempt::{Failure, Outcome};
use self::blocked::BlockedKeys;
use self::offsets::OffsetTracker;
use super::progress::PartitionProgress;
use super::routes::{Disposition, Item};
use super::runtime::Runtime;

/// Tells a worker to stop; cloned into each wait so that any wait ends.
#[derive(Debug, Clone)]
pub(crate) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    pub(crate) fn new() -> (watch::Sender<bool>, StopSignal) {
        let (sender, receiver) = watch::channel(false);
        (sender, StopSignal(receiver))
    }

    fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    async fn stopped(&self) {
        let mut receiver = self.0.clone();
        // A dropped sender means the consumer is gone: stop as well.
        let _ = receiver.wait_for(|stop| *stop).await;
    }
}

/// The worker was told to stop in the middle of a record: that record and
/// the ones after it stay unsettled, for the partition's next owner.
#[derive(Debug)]
pub(crate) struct Abandoned;

/// Processes one partition's records.
pub(crate) struct PartitionWorker<I: Inbox> {
    runtime: Arc<Runtime<I>>,
    queue: mpsc::Receiver<OwnedMessage>,
    stop: StopSignal,
    progress: Arc<PartitionProgress>,
    offsets: OffsetTracker,
    blocked: BlockedKeys<I::Tx>,
}

impl<I: Inbox> PartitionWorker<I> {
    pub(crate) fn new(
        runtime: Arc<Runtime<I>>,
        queue: mpsc::Receiver<OwnedMessage>,
        stop: StopSignal,
        progress: Arc<PartitionProgress>,
    ) -> Self {
        PartitionWorker {
            runtime,
            queue,
            stop,
            progress,
            offsets: OffsetTracker::default(),
            blocked: BlockedKeys::default(),
        }
    }

    /// Runs until told to stop or the queue closes.
    pub(crate) async fn run(mut self) {
        let max_batch = self.runtime.options.max_batch;
        loop {
            let retry_at = self.blocked.next_retry();
            let accepting = self.blocked.kept() < self.runtime.options.max_kept;
            let stop = self.stop.clone();
            let outcome = tokio::select! {
                biased;
                _ = stop.stopped() => return,
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(far_future)),
                    if retry_at.is_some() => self.retry_blocked().await,
                record = self.queue.recv(), if accepting => {
                    let Some(record) = record else { return };
                    let mut records = vec![record];
                    while records.len() < max_batch {
                        match self.queue.try_recv() {
                            Ok(record) => records.push(record),
                            Err(_) => break,
                        }
                    }
                    self.process(records).await
                }
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    /// Settles `records`, in order, handling runs of decodable ones in one
    /// transaction.
    async fn process(&mut self, records: Vec<OwnedMessage>) -> Result<(), Abandoned> {
        let runtime = Arc::clone(&self.runtime);
        let mut ready = Vec::with_capacity(records.len());
        for record in records {
            let item = runtime
                .routes
                .prepare(record, &runtime.name, runtime.options.unknown_types);
            if self.blocked.is_blocked(&item.key) {
                self.keep(item);
            } else if matches!(item.disposition, Disposition::Handle { .. }) {
                ready.push(item);
            } else {
                self.flush(&mut ready).await?;
                self.settle_unhandled(item).await?;
            }
        }
        self.flush(&mut ready).await
    }

    /// Handles `ready` in one transaction, or one by one when that fails.
    async fn flush(&mut self, ready: &mut Vec<Item<I::Tx>>) -> Result<(), Abandoned> {
        let items = std::mem::take(ready);
        // The batch's failure is the first failed attempt of the record
        // whose handler failed; the others start afresh.
        let mut failed_at = None;
        if items.len() > 1 {
            let batch: Vec<&Item<I::Tx>> = items.iter().collect();
            match self.runtime.attempt(&batch).await {
                Ok(outcomes) => {
                    self.count(&outcomes);
                    for item in &items {
                        self.settle(item.offset());
                    }
                    return Ok(());
                }
                Err((at, failure)) => {
                    tracing::debug!(
                        ?failure,
                        records = items.len(),
                        "batch failed; handling its records one by one"
                    );
                    if let (Some(at), Failure::Handler(error)) = (at, failure) {
                        failed_at = Some((at, error));
                    }
                }
            }
        }
        for (index, item) in items.into_iter().enumerate() {
            let earlier = match &failed_at {
                Some((at, error)) if *at == index => Some(error.clone()),
                _ => None,
            };
            self.handle_one(item, earlier).await?;
        }
        Ok(())
    }

    /// Dead-letters or skips a record that is not to be handled.
    async fn settle_unhandled(&mut self, item: Item<I::Tx>) -> Result<(), Abandoned> {
        match &item.disposition {
            Disposition::DeadLetter { reason, error } => {
                item.span.in_scope(|| {
                    tracing::warn!(%reason, %error, "record refused; dead-lettering it");
                });
                self.dead_letter(&item, *reason, error, 0, Utc::now())
                    .await?;
            }
            Disposition::Skip => {
                self.runtime.monitor.skipped();
            }
            Disposition::Handle { .. } => unreachable!("records to handle are attempted"),
        }
        self.settle(item.offset());
        Ok(())
    }

    fn keep(&mut self, item: Item<I::Tx>) {
        self.offsets.keep(item.offset());
        self.progress.set_stuck(None);
        self.blocked.keep(item);
        self.publish();
    }

    fn settle(&mut self, offset: i64) {
        self.offsets.settle(offset);
        self.progress.set_stuck(None);
        self.publish();
    }

    fn publish(&self) {
        self.progress.set_committable(self.offsets.committable());
        self.progress
            .set_blocked(self.blocked.kept(), self.blocked.len());
    }

    fn count(&self, outcomes: &[Outcome]) {
        let handled = outcomes
            .iter()
            .filter(|outcome| **outcome == Outcome::Handled)
            .count() as u64;
        self.runtime.monitor.handled(handled);
        self.runtime
            .monitor
            .duplicates(outcomes.len() as u64 - handled);
    }

    fn transient_error(&self, item: &Item<I::Tx>, error: &str) {
        self.runtime.monitor.transient_error(error);
        item.span.in_scope(|| {
            tracing::warn!(%error, "inbox or broker failed; retrying without counting");
        });
    }

    /// Reports that `item` cannot be settled for now (the inbox or the
    /// dead-letter topic fails): the partition waits on it, and its status
    /// says so with the cause until it settles.
    fn stuck(&self, item: &Item<I::Tx>, error: &str) {
        self.transient_error(item, error);
        self.progress.set_stuck(Some((item.offset(), error)));
    }

    /// Waits `wait`, or less when told to stop.
    async fn pause(&self, wait: std::time::Duration) -> Result<(), Abandoned> {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = self.stop.stopped() => Err(Abandoned),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600)
}

#[cfg(test)]
mod tests;
