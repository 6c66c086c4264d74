//! Recently used aggregate states, kept at their version so that a command
//! on a warm aggregate needs no read before its append.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::StreamId;

/// A state at a known version.
#[derive(Debug)]
pub(crate) struct CachedState<A> {
    pub(crate) state: A,
    pub(crate) version: u64,
    /// The version of the newest snapshot known for the stream, 0 when none.
    pub(crate) last_snapshot: u64,
}

/// Bounded, least recently used first out. A stale entry is harmless: the
/// append that uses it fails with a conflict, the entry is dropped and the
/// aggregate reloaded.
#[derive(Debug)]
pub(crate) struct StateCache<A> {
    entries: Mutex<LruCache<StreamId, CachedState<A>>>,
}

impl<A> StateCache<A> {
    pub(crate) fn new(capacity: NonZeroUsize) -> Self {
        StateCache {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Takes the entry out: whoever holds it owns it until it is put back.
    pub(crate) fn take(&self, stream: &StreamId) -> Option<CachedState<A>> {
        self.lock().pop(stream)
    }

    /// Puts an entry back unless a newer one is there already.
    pub(crate) fn put(&self, stream: StreamId, entry: CachedState<A>) {
        let mut entries = self.lock();
        if entries
            .peek(&stream)
            .is_none_or(|current| current.version <= entry.version)
        {
            entries.put(stream, entry);
        }
    }

    pub(crate) fn forget(&self, stream: &StreamId) {
        self.lock().pop(stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<StreamId, CachedState<A>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single call), so a poisoned lock is usable.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
