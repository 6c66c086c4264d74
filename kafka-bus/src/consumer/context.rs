//! The client context of a running consumer: what happens when the group
//! takes partitions away or hands new ones over, how settled offsets are
//! committed, and where the broker's statistics go.
//!
//! Everything here runs on the consumer's polling thread: librdkafka calls
//! the rebalance and statistics callbacks from `poll`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use annals::Inbox;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::partitions::{OwnedPartitions, Release};
use super::runtime::Runtime;

/// The context of a running consumer's client.
pub(crate) struct RuntimeContext<I: Inbox> {
    runtime: Arc<Runtime<I>>,
    partitions: OwnedPartitions<I>,
    /// Set when a commit failed: the next one carries every partition
    /// again.
    recommit: AtomicBool,
}

impl<I: Inbox> RuntimeContext<I> {
    pub(crate) fn new(runtime: Arc<Runtime<I>>, tokio: tokio::runtime::Handle) -> Self {
        RuntimeContext {
            partitions: OwnedPartitions::new(Arc::clone(&runtime), tokio),
            runtime,
            recommit: AtomicBool::new(false),
        }
    }

    pub(crate) fn runtime(&self) -> &Runtime<I> {
        &self.runtime
    }

    /// Hands `record` to its partition's worker.
    pub(crate) fn dispatch(&self, consumer: &BaseConsumer<Self>, record: OwnedMessage) {
        self.partitions.dispatch(consumer, record);
    }

    /// Moves records waiting for queue room on; whether some still wait.
    pub(crate) fn feed(&self, consumer: &BaseConsumer<Self>) -> bool {
        self.partitions.feed(consumer)
    }

    /// Commits, for each partition that moved, the offset below which every
    /// record is settled.
    pub(crate) fn commit(&self, consumer: &BaseConsumer<Self>) {
        let everything = self.recommit.swap(false, Ordering::AcqRel);
        self.commit_now(consumer, &self.partitions.to_commit(everything));
    }

    /// Stops the workers of `partitions` (all when `None`) and, unless
    /// abandoning, commits what they settled.
    pub(crate) fn release(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: Option<&TopicPartitionList>,
        release: Release,
    ) {
        // Offsets of settled records only, so the next owner starts at the
        // first unsettled one; if this commit is lost, the next owner gets
        // records again that the inbox turns into no-ops.
        let offsets = self.partitions.release(partitions, release);
        self.commit_now(consumer, &offsets);
    }

    /// Commits `offsets` and waits for the broker's answer (about a
    /// millisecond), so the status knows what is committed: librdkafka 2.12
    /// reports no results of asynchronous commits to a `BaseConsumer`
    /// without an `offset_commit_cb`, which rdkafka does not set.
    fn commit_now(&self, consumer: &BaseConsumer<Self>, offsets: &TopicPartitionList) {
        if offsets.count() == 0 {
            return;
        }
        match consumer.commit(offsets, CommitMode::Sync) {
            Ok(()) => {
                for element in offsets.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        self.runtime.monitor.committed(
                            element.topic(),
                            element.partition(),
                            offset,
                        );
                    }
                }
            }
            Err(error) => {
                self.recommit.store(true, Ordering::Release);
                let error = format!("committing offsets: {error}");
                tracing::warn!(consumer = self.runtime.name, %error);
                self.runtime.monitor.error(&error);
            }
        }
    }
}

impl<I: Inbox> ClientContext for RuntimeContext<I> {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 {
                    self.runtime.monitor.watermarks(
                        name,
                        *partition,
                        stats.hi_offset,
                        stats.lo_offset,
                        stats.committed_offset,
                    );
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(consumer = self.runtime.name, %error, reason, "Kafka client error");
        self.runtime.monitor.error(&format!("{error}: {reason}"));
    }
}

impl<I: Inbox> ConsumerContext for RuntimeContext<I> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                tracing::info!(consumer = self.runtime.name, partitions = ?names(partitions), "partitions revoked");
                self.release(consumer, Some(partitions), Release::Graceful);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(consumer = self.runtime.name, %error, "rebalance failed");
                self.runtime.monitor.error(&format!("rebalance: {error}"));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(consumer = self.runtime.name, partitions = ?names(partitions), "partitions assigned");
            // The group consumer starts each at its committed offset.
            self.partitions.take_over(consumer, partitions);
        }
    }
}

fn names(partitions: &TopicPartitionList) -> Vec<String> {
    partitions
        .elements()
        .iter()
        .map(|element| format!("{}[{}]", element.topic(), element.partition()))
        .collect()
}
