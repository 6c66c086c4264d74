//! The partitions a consumer owns, each with a worker and a bounded queue:
//! records handed over in order, partitions paused while their queue is
//! full, workers started on assignment and stopped on revocation.
//!
//! Used only from the polling thread.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use annals::Inbox;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::progress::PartitionProgress;
use super::runtime::Runtime;
use super::worker::{PartitionWorker, StopSignal};

/// How long to wait for aborted workers to finish: only the time for their
/// tasks to reach their next await.
const ABORT_WAIT: Duration = Duration::from_secs(2);

/// How workers are let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Finish the record in hand (up to the drain timeout), then commit.
    Graceful,
    /// Stop at once and commit nothing, as a crash would.
    Abandon,
}

/// An owned partition.
struct Slot {
    queue: mpsc::Sender<OwnedMessage>,
    /// Records that arrived while the queue was full, in order; nothing
    /// enters the queue before them.
    overflow: VecDeque<OwnedMessage>,
    paused: bool,
    progress: Arc<PartitionProgress>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The offset last sent in a commit.
    committed: Option<i64>,
}

type Slots = HashMap<String, HashMap<i32, Slot>>;

/// The partitions a consumer owns.
pub(crate) struct OwnedPartitions<I: Inbox> {
    runtime: Arc<Runtime<I>>,
    tokio: tokio::runtime::Handle,
    slots: Mutex<Slots>,
}

impl<I: Inbox> OwnedPartitions<I> {
    pub(crate) fn new(runtime: Arc<Runtime<I>>, tokio: tokio::runtime::Handle) -> Self {
        OwnedPartitions {
            runtime,
            tokio,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Only the polling thread takes the lock; a panic there ends the
        // consumer anyway.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `record` to its partition's worker, pausing the partition when
    /// the worker's queue is full.
    pub(crate) fn dispatch<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        record: OwnedMessage,
    ) {
        let mut slots = self.slots();
        let Some(slot) = slots
            .get_mut(record.topic())
            .and_then(|partitions| partitions.get_mut(&record.partition()))
        else {
            // Fetched before a revocation: not ours, and its next owner reads
            // it from the committed offset.
            tracing::debug!(
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                "dropping a record of a partition no longer owned"
            );
            return;
        };
        if !slot.overflow.is_empty() {
            slot.overflow.push_back(record);
            return;
        }
        match slot.queue.try_reserve() {
            Ok(permit) => permit.send(record),
            Err(mpsc::error::TrySendError::Full(())) => {
                let (topic, partition) = (record.topic().to_owned(), record.partition());
                slot.overflow.push_back(record);
                if !slot.paused {
                    slot.paused = pause(consumer, &topic, partition, true);
                    self.runtime.monitor.paused(&topic, partition, slot.paused);
                }
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                // The worker ended without being told to: a bug. Its records
                // stay uncommitted, for the next owner.
                tracing::error!(
                    topic = record.topic(),
                    partition = record.partition(),
                    "the partition's worker is gone"
                );
            }
        }
    }

    /// Moves waiting records into queues that have room, and resumes
    /// partitions whose queue is half empty again. Returns whether records
    /// still wait.
    pub(crate) fn feed<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> bool {
        let resume_below = self.runtime.options.queue_capacity / 2;
        let mut waiting = false;
        let mut slots = self.slots();
        for (topic, partitions) in slots.iter_mut() {
            for (partition, slot) in partitions.iter_mut() {
                if !slot.paused && slot.overflow.is_empty() {
                    continue;
                }
                while !slot.overflow.is_empty() {
                    let Ok(permit) = slot.queue.try_reserve() else {
                        break;
                    };
                    if let Some(record) = slot.overflow.pop_front() {
                        permit.send(record);
                    }
                }
                if slot.paused && slot.overflow.is_empty() && slot.progress.queued() <= resume_below
                {
                    slot.paused = !pause(consumer, topic, *partition, false);
                    self.runtime.monitor.paused(topic, *partition, slot.paused);
                }
                waiting |= slot.paused || !slot.overflow.is_empty();
            }
        }
        waiting
    }

    /// The offsets to commit: for each partition that moved since its last
    /// commit (every partition with `everything`), the offset below which
    /// every record is settled.
    pub(crate) fn to_commit(&self, everything: bool) -> TopicPartitionList {
        let mut offsets = TopicPartitionList::new();
        let mut slots = self.slots();
        for (topic, partitions) in slots.iter_mut() {
            for (partition, slot) in partitions.iter_mut() {
                let Some(offset) = slot.progress.committable() else {
                    continue;
                };
                if everything || slot.committed < Some(offset) {
                    add(&mut offsets, topic, *partition, offset);
                    slot.committed = Some(offset);
                }
            }
        }
        offsets
    }

    /// Starts a worker for each of `partitions`, which the group assigned.
    pub(crate) fn take_over<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        let mut slots = self.slots();
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (queue, receiver) = mpsc::channel(self.runtime.options.queue_capacity.max(1));
            let (stop, signal) = StopSignal::new();
            let progress = Arc::new(PartitionProgress::new(&queue));
            let worker = PartitionWorker::new(
                Arc::clone(&self.runtime),
                receiver,
                signal,
                Arc::clone(&progress),
            );
            let task = self.tokio.spawn(worker.run());
            self.runtime
                .monitor
                .assigned(topic, partition, Arc::clone(&progress));
            // A partition paused under an earlier assignment must not stay so.
            pause(consumer, topic, partition, false);
            slots.entry(topic.to_owned()).or_default().insert(
                partition,
                Slot {
                    queue,
                    overflow: VecDeque::new(),
                    paused: false,
                    progress,
                    stop,
                    task,
                    committed: None,
                },
            );
        }
    }

    /// Stops the workers of `partitions` (all when `None`) and returns once
    /// they are gone, with the offsets to commit: what they settled beyond
    /// their last commit, nothing when abandoning.
    pub(crate) fn release(
        &self,
        partitions: Option<&TopicPartitionList>,
        release: Release,
    ) -> TopicPartitionList {
        let released = self.remove(partitions);
        for (_, _, slot) in &released {
            let _ = slot.stop.send(true);
            if release == Release::Abandon {
                slot.task.abort();
            }
        }
        if release == Release::Graceful
            && !wait_finished(&released, self.runtime.options.drain_timeout)
        {
            tracing::warn!(
                consumer = self.runtime.name,
                "records in hand did not finish within the drain timeout; abandoning them uncommitted"
            );
            for (_, _, slot) in &released {
                slot.task.abort();
            }
        }
        if !wait_finished(&released, ABORT_WAIT) {
            tracing::error!(
                consumer = self.runtime.name,
                "aborted partition workers did not end"
            );
        }
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, slot) in &released {
            self.runtime.monitor.revoked(topic, *partition);
            if release == Release::Graceful
                && let Some(offset) = slot.progress.committable()
                && slot.committed < Some(offset)
            {
                add(&mut offsets, topic, *partition, offset);
            }
        }
        offsets
    }

    fn remove(&self, partitions: Option<&TopicPartitionList>) -> Vec<(String, i32, Slot)> {
        let mut slots = self.slots();
        let wanted: Vec<(String, i32)> = match partitions {
            Some(list) => list
                .elements()
                .iter()
                .map(|element| (element.topic().to_owned(), element.partition()))
                .collect(),
            None => slots
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .keys()
                        .map(|partition| (topic.clone(), *partition))
                })
                .collect(),
        };
        wanted
            .into_iter()
            .filter_map(|(topic, partition)| {
                let slot = slots.get_mut(&topic)?.remove(&partition)?;
                Some((topic, partition, slot))
            })
            .collect()
    }
}

/// Pauses or resumes one partition; returns whether it worked.
fn pause<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    paused: bool,
) -> bool {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let result = if paused {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    if let Err(error) = &result {
        tracing::warn!(topic, partition, paused, %error, "pausing or resuming a partition failed");
    }
    result.is_ok()
}

fn add(offsets: &mut TopicPartitionList, topic: &str, partition: i32, offset: i64) {
    if let Err(error) = offsets.add_partition_offset(topic, partition, Offset::Offset(offset)) {
        tracing::error!(topic, partition, offset, %error, "cannot list an offset to commit");
    }
}

/// Waits until every released worker's task has ended, at most `timeout`.
/// The polling thread must not block on the Tokio runtime (it may be a
/// current-thread one, driven by the thread that waits for this), so it
/// looks and sleeps.
fn wait_finished(released: &[(String, i32, Slot)], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if released.iter().all(|(_, _, slot)| slot.task.is_finished()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
