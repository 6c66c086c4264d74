//! The in-memory store as an outbox source for relays.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::{
    AppendSignal, Error, EventStore, GlobalPosition, InFlight, MemoryEventStore, OutboxBacklog,
    OutboxRecord, OutboxShard, OutboxSource,
};

/// Checkpoints, leases, what may be in flight and parked records of the
/// relays of one store.
#[derive(Debug, Default)]
pub(super) struct RelayState {
    checkpoints: HashMap<(String, OutboxShard), GlobalPosition>,
    leases: HashSet<(String, OutboxShard)>,
    in_flight: HashMap<(String, OutboxShard), bool>,
    parked: Vec<(String, OutboxRecord, String)>,
}

/// The lease of one outbox shard for one relay; released when dropped.
#[derive(Debug)]
pub struct MemoryShardLease {
    store: MemoryEventStore,
    key: (String, OutboxShard),
}

impl Drop for MemoryShardLease {
    fn drop(&mut self) {
        self.store.lock().relays.leases.remove(&self.key);
        self.store.inner.lease_released.notify_waiters();
    }
}

impl OutboxSource for MemoryEventStore {
    type Lease = MemoryShardLease;

    async fn acquire(&self, relay: &str, shard: OutboxShard) -> Result<MemoryShardLease, Error> {
        let key = (relay.to_owned(), shard);
        loop {
            let released = self.inner.lease_released.notified();
            if self.lock().relays.leases.insert(key.clone()) {
                return Ok(MemoryShardLease {
                    store: self.clone(),
                    key,
                });
            }
            released.await;
        }
    }

    fn is_held(&self, _lease: &MemoryShardLease) -> bool {
        true
    }

    /// A lease here is released only by its holder dropping it.
    fn lease_loss_bound(&self) -> Duration {
        Duration::ZERO
    }

    async fn in_flight(&self, relay: &str, shard: OutboxShard) -> Result<InFlight, Error> {
        let state = self.lock();
        let key = (relay.to_owned(), shard);
        Ok(match state.relays.in_flight.get(&key) {
            Some(true) => InFlight::Possible,
            Some(false) => InFlight::Nothing,
            None if state.relays.checkpoints.contains_key(&key) => InFlight::Possible,
            None => InFlight::NeverLed,
        })
    }

    async fn set_in_flight(
        &self,
        _lease: &MemoryShardLease,
        relay: &str,
        shard: OutboxShard,
        possible: bool,
    ) -> Result<(), Error> {
        self.lock()
            .relays
            .in_flight
            .insert((relay.to_owned(), shard), possible);
        Ok(())
    }

    async fn checkpoint(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> Result<Option<GlobalPosition>, Error> {
        Ok(self
            .lock()
            .relays
            .checkpoints
            .get(&(relay.to_owned(), shard))
            .copied())
    }

    async fn save_checkpoint(
        &self,
        _lease: &MemoryShardLease,
        relay: &str,
        shard: OutboxShard,
        position: GlobalPosition,
    ) -> Result<(), Error> {
        // Only forward: a relay that saves late (its save crossed a
        // takeover's) must not undo the progress of the one after it.
        let mut state = self.lock();
        let saved = state
            .relays
            .checkpoints
            .entry((relay.to_owned(), shard))
            .or_insert(position);
        *saved = (*saved).max(position);
        Ok(())
    }

    async fn prune(
        &self,
        shard: OutboxShard,
        through: GlobalPosition,
        limit: usize,
    ) -> Result<u64, Error> {
        let mut state = self.lock();
        let mut pruned = 0;
        state.outbox.retain(|record| {
            let prune =
                pruned < limit && record.position <= through && shard.contains(&record.message.key);
            pruned += usize::from(prune);
            !prune
        });
        Ok(pruned as u64)
    }

    async fn park(&self, relay: &str, record: &OutboxRecord, reason: &str) -> Result<(), Error> {
        self.lock()
            .relays
            .parked
            .push((relay.to_owned(), record.clone(), reason.to_owned()));
        Ok(())
    }

    async fn parked(&self, relay: &str) -> Result<Vec<(OutboxRecord, String)>, Error> {
        Ok(self
            .lock()
            .relays
            .parked
            .iter()
            .filter(|(name, _, _)| name == relay)
            .map(|(_, record, reason)| (record.clone(), reason.clone()))
            .collect())
    }

    async fn backlog(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
    ) -> Result<OutboxBacklog, Error> {
        let mut backlog = OutboxBacklog::default();
        for record in self.shard_records(shard, after, usize::MAX) {
            backlog.messages += 1;
            backlog.oldest.get_or_insert(record.recorded_at);
        }
        Ok(backlog)
    }

    fn outbox_signal(&self) -> AppendSignal {
        self.append_signal()
    }
}
