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

impl MemoryEventStore {
    fn shard_records(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
    ) -> impl Iterator<Item = OutboxRecord> {
        let state = self.lock();
        let start = state
            .outbox
            .partition_point(|record| record.position <= after);
        state.outbox[start..]
            .iter()
            .filter(|record| shard.contains(&record.message.key))
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
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

    async fn read_shard(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, Error> {
        Ok(self.shard_records(shard, after).take(limit).collect())
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
        self.lock()
            .relays
            .checkpoints
            .insert((relay.to_owned(), shard), position);
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
        for record in self.shard_records(shard, after) {
            backlog.messages += 1;
            backlog.oldest.get_or_insert(record.recorded_at);
        }
        Ok(backlog)
    }

    fn outbox_signal(&self) -> AppendSignal {
        self.append_signal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutboxReader;
    use crate::{
        AppendRequest, ExpectedVersion, Metadata, NewEvent, OutboxMessage, Payload, StreamId,
    };

    fn message(key: &str) -> OutboxMessage {
        OutboxMessage {
            message_id: uuid::Uuid::now_v7(),
            topic: "t".into(),
            key: key.into(),
            event_type: "E".into(),
            event_version: 1,
            payload: Payload::encode(&1).unwrap(),
            stream: StreamId::new(key).unwrap(),
            stream_version: 1,
            metadata: Metadata::default(),
        }
    }

    async fn write(store: &MemoryEventStore, keys: &[&str]) {
        for key in keys {
            let event = NewEvent::raw("E", 1, Payload::encode(&1).unwrap(), Metadata::default());
            store
                .append(
                    AppendRequest::new(StreamId::new(*key).unwrap(), ExpectedVersion::Any)
                        .event(event)
                        .outbox_message(message(key)),
                )
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn shards_partition_the_outbox_and_prune_only_their_own() {
        let store = MemoryEventStore::new();
        let keys: Vec<String> = (0..40).map(|n| format!("k-{n}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        write(&store, &keys).await;
        let shards = OutboxShard::split(3).unwrap();
        let mut total = 0;
        for shard in &shards {
            let records = store
                .read_shard(*shard, GlobalPosition::START, 100)
                .await
                .unwrap();
            assert!(
                records
                    .iter()
                    .all(|record| shard.contains(&record.message.key))
            );
            assert_eq!(
                store
                    .backlog(*shard, GlobalPosition::START)
                    .await
                    .unwrap()
                    .messages,
                records.len() as u64
            );
            total += records.len();
        }
        assert_eq!(total, 40);
        let first = shards[0];
        let through = store
            .read_shard(first, GlobalPosition::START, 100)
            .await
            .unwrap()
            .last()
            .unwrap()
            .position;
        let pruned = store.prune(first, through, 1000).await.unwrap();
        assert!(pruned > 0);
        assert!(
            store
                .read_shard(first, GlobalPosition::START, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .read_outbox(GlobalPosition::START, 100)
                .await
                .unwrap()
                .len() as u64,
            40 - pruned
        );
    }

    #[tokio::test]
    async fn what_may_be_in_flight_is_what_the_last_holder_recorded() {
        let store = MemoryEventStore::new();
        let shard = OutboxShard::ALL;
        assert_eq!(
            store.in_flight("r", shard).await.unwrap(),
            InFlight::NeverLed
        );
        let lease = store.acquire("r", shard).await.unwrap();
        store.set_in_flight(&lease, "r", shard, true).await.unwrap();
        assert_eq!(
            store.in_flight("r", shard).await.unwrap(),
            InFlight::Possible
        );
        store
            .set_in_flight(&lease, "r", shard, false)
            .await
            .unwrap();
        assert_eq!(
            store.in_flight("r", shard).await.unwrap(),
            InFlight::Nothing
        );
        assert_eq!(
            store.in_flight("other", shard).await.unwrap(),
            InFlight::NeverLed
        );
        // A checkpoint without a record: a relay that did not keep one.
        let other = store.acquire("other", shard).await.unwrap();
        store
            .save_checkpoint(&other, "other", shard, GlobalPosition::new(1, 1))
            .await
            .unwrap();
        assert_eq!(
            store.in_flight("other", shard).await.unwrap(),
            InFlight::Possible
        );
    }

    #[tokio::test]
    async fn one_lease_per_shard_and_relay() {
        let store = MemoryEventStore::new();
        let lease = store.acquire("relay", OutboxShard::ALL).await.unwrap();
        let waiting = {
            let store = store.clone();
            tokio::spawn(async move { store.acquire("relay", OutboxShard::ALL).await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let other = store
            .acquire("other-relay", OutboxShard::ALL)
            .await
            .unwrap();
        drop(lease);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting relay takes over")
            .unwrap()
            .unwrap();
        drop(other);
    }
}
