//! What a partition's worker shares with the thread that polls the broker
//! and with the status: how far it got, how much waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use chrono::Utc;
use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;

use super::status::StuckRecord;

/// No offset yet.
const NONE: i64 = -1;

/// The progress of one partition's worker, read without locking.
#[derive(Debug)]
pub(crate) struct PartitionProgress {
    committable: AtomicI64,
    /// The worker's queue, looked at (not kept open) to tell how full it is.
    queue: mpsc::WeakSender<OwnedMessage>,
    kept: AtomicUsize,
    blocked_keys: AtomicUsize,
    stuck: Mutex<Option<StuckRecord>>,
}

impl PartitionProgress {
    /// The progress of the worker that `queue` feeds.
    pub(crate) fn new(queue: &mpsc::Sender<OwnedMessage>) -> Self {
        PartitionProgress {
            committable: AtomicI64::new(NONE),
            queue: queue.downgrade(),
            kept: AtomicUsize::new(0),
            blocked_keys: AtomicUsize::new(0),
            stuck: Mutex::new(None),
        }
    }
}

impl PartitionProgress {
    /// The offset that may be committed: every record below it is settled.
    pub(crate) fn committable(&self) -> Option<i64> {
        Some(self.committable.load(Ordering::Acquire)).filter(|offset| *offset != NONE)
    }

    pub(crate) fn set_committable(&self, offset: Option<i64>) {
        self.committable
            .store(offset.unwrap_or(NONE), Ordering::Release);
    }

    /// Records handed to the worker and not yet taken: read off the queue
    /// itself, so it never shows more than the queue can hold.
    pub(crate) fn queued(&self) -> usize {
        self.queue
            .upgrade()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// Records kept for blocked keys, and how many keys are blocked.
    pub(crate) fn blocked(&self) -> (usize, usize) {
        (
            self.kept.load(Ordering::Relaxed),
            self.blocked_keys.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn set_blocked(&self, kept: usize, keys: usize) {
        self.kept.store(kept, Ordering::Relaxed);
        self.blocked_keys.store(keys, Ordering::Relaxed);
    }

    /// The record the worker cannot settle for now, if any.
    pub(crate) fn stuck(&self) -> Option<StuckRecord> {
        self.stuck_slot().clone()
    }

    /// Marks the record at `offset` stuck with `cause` (keeping when it
    /// first was), or, with `None`, the partition moving again.
    pub(crate) fn set_stuck(&self, stuck: Option<(i64, &str)>) {
        let mut slot = self.stuck_slot();
        *slot = stuck.map(|(offset, cause)| StuckRecord {
            offset,
            since: slot
                .as_ref()
                .filter(|earlier| earlier.offset == offset)
                .map_or_else(Utc::now, |earlier| earlier.since),
            cause: cause.to_owned(),
        });
    }

    fn stuck_slot(&self) -> std::sync::MutexGuard<'_, Option<StuckRecord>> {
        // Every change under the lock is a single assignment.
        self.stuck
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
