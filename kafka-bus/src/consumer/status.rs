//! What a running consumer reports: its state, each partition's progress and
//! lag, and counters of what became of the records.

use chrono::{DateTime, Utc};

/// Where a consumer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerState {
    /// Joining the group; no partitions yet.
    Joining,
    /// Handling the partitions assigned to it (possibly none, when the group
    /// has more members than partitions).
    Running,
    /// Finishing the records in hand and committing, after
    /// [`Consumer::stop`](crate::Consumer::stop).
    Stopping,
    /// Stopped.
    Stopped,
}

/// The progress of one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStatus {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset last committed to the group (the next record a new owner
    /// would read), as far as this consumer knows.
    pub committed: Option<i64>,
    /// The offset up to which every record is settled (handled,
    /// dead-lettered or skipped): what the next commit will carry.
    pub settled: Option<i64>,
    /// The partition's high watermark, as the broker reported it in fetch
    /// responses (refreshed every `statistics.interval.ms`).
    pub high_watermark: Option<i64>,
    /// Records between the committed offset and the high watermark.
    pub lag: Option<u64>,
    /// Records waiting in the partition's queue.
    pub queued: usize,
    /// Whether fetching is paused because the queue is full.
    pub paused: bool,
    /// Keys blocked by [`OnExhausted::BlockKey`](crate::OnExhausted::BlockKey).
    pub blocked_keys: usize,
    /// Records kept behind blocked keys.
    pub kept: usize,
    /// The record the partition waits on, when its worker cannot settle it
    /// for now: the inbox fails, or its dead letter cannot be written (the
    /// dead-letter topic or its broker unavailable). Nothing after it is
    /// committed until it settles; the worker retries with backoff.
    pub stuck: Option<StuckRecord>,
}

/// A record its partition waits on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StuckRecord {
    /// Its offset.
    pub offset: i64,
    /// When settling it first failed.
    pub since: DateTime<Utc>,
    /// The last failure, with its causes.
    pub cause: String,
}

/// A consumer's state and counters, since it started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStatus {
    /// The consumer's name (its group id and its key in the inbox).
    pub name: String,
    /// Where it is.
    pub state: ConsumerState,
    /// The partitions assigned to it, by topic and partition.
    pub partitions: Vec<PartitionStatus>,
    /// Records whose handler ran and committed.
    pub handled: u64,
    /// Records the inbox had seen before: redeliveries, skipped without
    /// effect.
    pub duplicates: u64,
    /// Failed handler attempts that were retried.
    pub retried: u64,
    /// Records sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Of those, the dead letters cut to fit their topic (see
    /// [`DeadLetterCut`](crate::DeadLetterCut)).
    pub dead_letters_cut: u64,
    /// Records committed past without handling ([`UnknownTypes::Skip`](crate::UnknownTypes::Skip)).
    pub skipped: u64,
    /// Failures of the inbox or the broker that were retried without
    /// counting against a record.
    pub transient_errors: u64,
    /// Inbox claims pruned.
    pub pruned: u64,
    /// Partition assignments and revocations received.
    pub rebalances: u64,
    /// The last error seen, handled or not.
    pub last_error: Option<String>,
}

impl ConsumerStatus {
    /// The lag of all its partitions, when every one is known.
    pub fn lag(&self) -> Option<u64> {
        self.partitions.iter().map(|partition| partition.lag).sum()
    }

    /// Records settled: handled, duplicates, dead-lettered and skipped.
    pub fn settled(&self) -> u64 {
        self.handled + self.duplicates + self.dead_lettered + self.skipped
    }

    /// The partitions waiting on a record they cannot settle for now (see
    /// [`PartitionStatus::stuck`]): what a health check should look at.
    pub fn stuck(&self) -> impl Iterator<Item = &PartitionStatus> {
        self.partitions
            .iter()
            .filter(|partition| partition.stuck.is_some())
    }
}
