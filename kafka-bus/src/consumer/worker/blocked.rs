//! Keys blocked by `OnExhausted::BlockKey`: the record that failed and every
//! later record with its key, kept in order, the first retried until it
//! succeeds.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::consumer::routes::Item;

/// A key (`None` for records without one).
pub(crate) type Key = Option<Vec<u8>>;

/// The first kept record of a key, with its failures so far.
pub(crate) struct Head<Tx> {
    pub(crate) item: Item<Tx>,
    pub(crate) attempts: u32,
    pub(crate) first_failure: Option<DateTime<Utc>>,
}

struct BlockedKey<Tx> {
    waiting: VecDeque<Item<Tx>>,
    attempts: u32,
    first_failure: Option<DateTime<Utc>>,
    retry_at: Instant,
}

/// The blocked keys of one partition.
pub(crate) struct BlockedKeys<Tx> {
    keys: HashMap<Key, BlockedKey<Tx>>,
    kept: usize,
}

impl<Tx> Default for BlockedKeys<Tx> {
    fn default() -> Self {
        BlockedKeys {
            keys: HashMap::new(),
            kept: 0,
        }
    }
}

impl<Tx> BlockedKeys<Tx> {
    pub(crate) fn is_blocked(&self, key: &Key) -> bool {
        self.keys.contains_key(key)
    }

    /// Records kept, heads included.
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }

    /// Keys blocked.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Blocks the key of `head`, which failed `attempts` times, retrying it
    /// at `retry_at`.
    pub(crate) fn block(&mut self, head: Head<Tx>, retry_at: Instant) {
        self.kept += 1;
        self.keys.insert(
            head.item.key.clone(),
            BlockedKey {
                waiting: VecDeque::from([head.item]),
                attempts: head.attempts,
                first_failure: head.first_failure,
                retry_at,
            },
        );
    }

    /// Keeps `item` behind the records of its blocked key.
    pub(crate) fn keep(&mut self, item: Item<Tx>) {
        let blocked = self
            .keys
            .get_mut(&item.key)
            .expect("records are kept only behind a blocked key");
        self.kept += 1;
        blocked.waiting.push_back(item);
    }

    /// When the next retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.keys.values().map(|blocked| blocked.retry_at).min()
    }

    /// Takes the first record of a key whose retry is due at `now`; the key
    /// stays blocked until [`BlockedKeys::succeeded`].
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Head<Tx>> {
        let blocked = self
            .keys
            .values_mut()
            .filter(|blocked| blocked.retry_at <= now)
            .min_by_key(|blocked| blocked.retry_at)?;
        let item = blocked
            .waiting
            .pop_front()
            .expect("a blocked key keeps at least its head");
        self.kept -= 1;
        Some(Head {
            item,
            attempts: blocked.attempts,
            first_failure: blocked.first_failure,
        })
    }

    /// Puts back a head that failed again, to retry at `retry_at`.
    pub(crate) fn failed_again(&mut self, head: Head<Tx>, retry_at: Instant) {
        let blocked = self
            .keys
            .get_mut(&head.item.key)
            .expect("a taken head's key stays blocked");
        blocked.attempts = head.attempts;
        blocked.first_failure = head.first_failure;
        blocked.retry_at = retry_at;
        blocked.waiting.push_front(head.item);
        self.kept += 1;
    }

    /// The head of `key` is settled: the next record becomes the head, due
    /// at once, or the key is unblocked when none is left.
    pub(crate) fn succeeded(&mut self, key: &Key, now: Instant) {
        let Some(blocked) = self.keys.get_mut(key) else {
            return;
        };
        if blocked.waiting.is_empty() {
            self.keys.remove(key);
        } else {
            blocked.attempts = 0;
            blocked.first_failure = None;
            blocked.retry_at = now;
        }
    }
}
