//! What a partition's worker shares with the thread that polls the broker
//! and with the status: how far it got, how much waits.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// No offset yet.
const NONE: i64 = -1;

/// The progress of one partition's worker, read without locking.
#[derive(Debug)]
pub(crate) struct PartitionProgress {
    committable: AtomicI64,
    queued: AtomicUsize,
    kept: AtomicUsize,
    blocked_keys: AtomicUsize,
}

impl Default for PartitionProgress {
    fn default() -> Self {
        PartitionProgress {
            committable: AtomicI64::new(NONE),
            queued: AtomicUsize::new(0),
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

    /// Records handed to the worker and not yet taken.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn enqueued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
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
