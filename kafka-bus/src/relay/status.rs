//! What a running relay reports about each of its shards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{GlobalPosition, OutboxShard};

/// What the relay is doing with a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardRole {
    /// Waiting for the shard's lease, which another relay holds (or which
    /// cannot be taken because the store is unreachable).
    Standby,
    /// Holds the lease and waits out the takeover grace, or connects to the
    /// brokers, before publishing.
    Starting,
    /// Publishing.
    Publishing,
    /// The broker failed or could not be trusted; waiting to start a new
    /// producer session.
    BackingOff,
    /// Stopped.
    Stopped,
}

/// The state of one shard as its relay task sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShardStatus {
    /// The shard.
    pub shard: OutboxShard,
    /// What the relay is doing with it.
    pub role: ShardRole,
    /// Every record of the shard up to this position was published (or
    /// parked) by this relay; `None` before it led the shard.
    pub last_published: Option<GlobalPosition>,
    /// The last checkpoint saved.
    pub checkpoint: Option<GlobalPosition>,
    /// Records waiting after `last_published` at the last look (refreshed
    /// every status interval while leading, less often while counting
    /// takes long; see [`OutboxRelayBuilder::status_interval`]).
    ///
    /// [`OutboxRelayBuilder::status_interval`]: crate::OutboxRelayBuilder::status_interval
    pub backlog: u64,
    /// How long the oldest waiting record has waited; zero when nothing
    /// waits.
    pub lag: Duration,
    /// Records handed to the producer since this relay started, counted
    /// one by one as they are sent (a record sent again by a later session
    /// counts again).
    pub sent: u64,
    /// Records published since this relay started: acknowledged by the
    /// broker (in transactional mode: their transaction committed), each
    /// counted as its acknowledgement is taken in. The broker acknowledges
    /// a produce request at once, up to `batch.num.messages` records, so
    /// this moves in such steps where [`sent`](Self::sent) moves per record.
    pub published: u64,
    /// Records parked since this relay started.
    pub parked: u64,
    /// Records found already published during recovery, and not sent again.
    pub skipped: u64,
    /// Producer sessions started (each begins with recovery).
    pub sessions: u64,
    /// The last error, if the shard is held up by one now.
    pub last_error: Option<String>,
}

/// The state of a relay: one entry per shard it runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// The relay's name.
    pub relay: String,
    /// Its shards, in index order.
    pub shards: Vec<ShardStatus>,
}

impl RelayStatus {
    /// Records waiting in the shards this relay leads.
    pub fn backlog(&self) -> u64 {
        self.leading().map(|shard| shard.backlog).sum()
    }

    /// The longest wait of a record in the shards this relay leads.
    pub fn lag(&self) -> Duration {
        self.leading()
            .map(|shard| shard.lag)
            .max()
            .unwrap_or_default()
    }

    /// Records handed to the producer since the relay started.
    pub fn sent(&self) -> u64 {
        self.shards.iter().map(|shard| shard.sent).sum()
    }

    /// Records published (acknowledged) since the relay started.
    pub fn published(&self) -> u64 {
        self.shards.iter().map(|shard| shard.published).sum()
    }

    /// Records parked since the relay started.
    pub fn parked(&self) -> u64 {
        self.shards.iter().map(|shard| shard.parked).sum()
    }

    /// Whether this relay leads (publishes) at least one shard.
    pub fn is_leading(&self) -> bool {
        self.leading().next().is_some()
    }

    fn leading(&self) -> impl Iterator<Item = &ShardStatus> {
        self.shards
            .iter()
            .filter(|shard| !matches!(shard.role, ShardRole::Standby | ShardRole::Stopped))
    }
}

/// A shard's status, shared between its task and the handle.
#[derive(Debug, Clone)]
pub(super) struct StatusCell(Arc<Mutex<ShardStatus>>);

impl StatusCell {
    pub(super) fn new(shard: OutboxShard) -> Self {
        StatusCell(Arc::new(Mutex::new(ShardStatus {
            shard,
            role: ShardRole::Standby,
            last_published: None,
            checkpoint: None,
            backlog: 0,
            lag: Duration::ZERO,
            sent: 0,
            published: 0,
            parked: 0,
            skipped: 0,
            sessions: 0,
            last_error: None,
        })))
    }

    pub(super) fn get(&self) -> ShardStatus {
        self.lock().clone()
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut ShardStatus)) {
        change(&mut self.lock());
    }

    pub(super) fn set_role(&self, role: ShardRole) {
        self.update(|status| status.role = role);
    }

    pub(super) fn set_error(&self, error: Option<String>) {
        self.update(|status| status.last_error = error);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShardStatus> {
        // A panic while holding this lock cannot leave the status half
        // written in a way that matters: it is a report, not state.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
