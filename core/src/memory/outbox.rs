//! The in-memory store as an outbox source for relays.

use std::collections::{HashMap, HashSet};

use crate::{
    AppendSignal, Error, EventStore, GlobalPosition, MemoryEventStore, OutboxBacklog, OutboxRecord,
    OutboxShard, OutboxSource,
};

/// Checkpoints, leases and parked records of the relays of one store.
#[derive(Debug, Default)]
pub(super) struct RelayState {
    checkpoints: HashMap<(String, OutboxShard), GlobalPosition>,
    leases: HashSet<(String, OutboxShard)>,
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
                .read_outbox(*shard, GlobalPosition::START, 100)
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
            .read_outbox(first, GlobalPosition::START, 100)
            .await
            .unwrap()
            .last()
            .unwrap()
            .position;
        let pruned = store.prune(first, through, 1000).await.unwrap();
        assert!(pruned > 0);
        assert!(
            store
                .read_outbox(first, GlobalPosition::START, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .read_outbox(OutboxShard::ALL, GlobalPosition::START, 100)
                .await
                .unwrap()
                .len() as u64,
            40 - pruned
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
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiting relay takes over")
            .unwrap()
            .unwrap();
        drop(other);
    }
}
