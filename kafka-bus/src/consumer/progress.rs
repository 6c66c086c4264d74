//! What a partition's worker shares with the thread that polls the broker
//! and with the status: how far it got, how much waits.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;

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
}

impl PartitionProgress {
    /// The progress of the worker that `queue` feeds.
    pub(crate) fn new(queue: &mpsc::Sender<OwnedMessage>) -> Self {
        PartitionProgress {
            committable: AtomicI64::new(NONE),
            queue: queue.downgrade(),
            kept: AtomicUsize::new(0),
            blocked_keys: AtomicUsize::new(0),
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
}
