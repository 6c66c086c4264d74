//! The store as the source of outbox relays: shards that partition the
//! outbox, checkpoints that only move forward and only while the lease
//! holds, leases that are exclusive and die with their session, pruning,
//! parking and the backlog.

use std::time::Duration;

use annals::testing::conformance::outbox::message;
use annals::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, InFlight, Metadata, NewEvent,
    OutboxReader, OutboxRecord, OutboxShard, OutboxSource, Payload, StreamId,
};
use annals_postgres::PgShardLease;

use crate::common::{TestStore, connect, database_url, eventually, fresh_store};

/// Keys spread over the shards, non-ASCII ones among them (the hash is of
/// the UTF-8 bytes).
fn keys() -> Vec<String> {
    (0..60)
        .map(|n| match n % 3 {
            0 => format!("order-{n}"),
            1 => format!("Bestellung-ü-{n}"),
            _ => format!("注文-{n}"),
        })
        .collect()
}

/// One append per key, each with an event and one outbox message.
async fn write(store: &TestStore, keys: &[String]) {
    for key in keys {
        let stream = StreamId::new(key).unwrap();
        let event = NewEvent::raw("E", 1, Payload::encode(&1).unwrap(), Metadata::default());
        store
            .append(
                AppendRequest::new(stream.clone(), ExpectedVersion::Any)
                    .event(event)
                    .outbox_message(message(&stream, 1, key)),
            )
            .await
            .unwrap();
    }
}

async fn everything(store: &TestStore) -> Vec<OutboxRecord> {
    store
        .read_outbox(GlobalPosition::START, 10_000)
        .await
        .unwrap()
}

async fn shard_records(store: &TestStore, shard: OutboxShard) -> Vec<OutboxRecord> {
    store
        .read_shard(shard, GlobalPosition::START, 10_000)
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_shards_partition_the_outbox() {
    let store = fresh_store().await;
    let keys = keys();
    write(&store, &keys).await;
    let all = everything(&store).await;
    assert_eq!(all.len(), keys.len());
    assert_eq!(shard_records(&store, OutboxShard::ALL).await, all);

    let mut relayed = Vec::new();
    for shard in OutboxShard::split(3).unwrap() {
        let records = shard_records(&store, shard).await;
        assert!(!records.is_empty(), "60 keys leave no shard of 3 empty");
        assert!(
            records
                .iter()
                .all(|record| shard.contains(&record.message.key)),
            "shard {shard} holds only its own keys"
        );
        assert!(
            records
                .windows(2)
                .all(|pair| pair[0].position < pair[1].position),
            "shard {shard} reads in position order"
        );
        // Paging after a record of the shard goes on where it stopped.
        let rest = store
            .read_shard(shard, records[0].position, 10_000)
            .await
            .unwrap();
        assert_eq!(rest, records[1..]);
        relayed.extend(records);
    }
    relayed.sort_by_key(|record| record.position);
    assert_eq!(relayed, all, "every record in exactly one shard");

    // The SQL twin of the hash, which filled rows written before the column
    // existed, agrees with the client's.
    let client = connect(database_url()).await.unwrap();
    let sql = format!("SELECT \"{}\".outbox_key_hash($1)", store.schema().name());
    for key in &keys {
        let stored: i32 = client.query_one(&sql, &[key]).await.unwrap().get(0);
        assert_eq!(
            u32::from_ne_bytes(stored.to_ne_bytes()),
            annals::key_hash(key),
            "{key}"
        );
    }
}

#[tokio::test]
async fn postgres_checkpoints_round_trip_and_never_go_back() {
    let store = fresh_store().await;
    write(&store, &keys()[..3]).await;
    let all = everything(&store).await;
    let shard = OutboxShard::new(1, 2).unwrap();
    let lease = store.acquire("relay", shard).await.unwrap();
    assert_eq!(store.checkpoint("relay", shard).await.unwrap(), None);

    store
        .save_checkpoint(&lease, "relay", shard, all[1].position)
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint("relay", shard).await.unwrap(),
        Some(all[1].position)
    );
    store
        .save_checkpoint(&lease, "relay", shard, all[0].position)
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint("relay", shard).await.unwrap(),
        Some(all[1].position),
        "a late save does not move the checkpoint back"
    );
    store
        .save_checkpoint(&lease, "relay", shard, all[2].position)
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint("relay", shard).await.unwrap(),
        Some(all[2].position)
    );

    // Checkpoints are per relay and per shard (of a given count).
    assert_eq!(store.checkpoint("other", shard).await.unwrap(), None);
    assert_eq!(
        store
            .checkpoint("relay", OutboxShard::new(1, 3).unwrap())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn postgres_one_lease_per_shard_and_relay() {
    let store = fresh_store().await;
    let lease = store.acquire("relay", OutboxShard::ALL).await.unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.acquire("relay", OutboxShard::ALL).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the second relay waits");
    let other_relay = store
        .acquire("other-relay", OutboxShard::ALL)
        .await
        .unwrap();
    let other_shard = store
        .acquire("relay", OutboxShard::new(0, 2).unwrap())
        .await
        .unwrap();
    assert!(store.is_held(&lease));
    drop(lease);
    let taken_over = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting relay takes over once the lease is dropped")
        .unwrap()
        .unwrap();
    assert!(store.is_held(&taken_over));
    assert!(store.is_held(&other_relay));
    assert!(store.is_held(&other_shard));
}

#[tokio::test]
async fn postgres_a_lease_whose_session_dies_is_lost_and_fenced() {
    let store = fresh_store().await;
    write(&store, &keys()[..2]).await;
    let all = everything(&store).await;
    let shard = OutboxShard::ALL;
    let lease = store.acquire("relay", shard).await.unwrap();
    store
        .save_checkpoint(&lease, "relay", shard, all[0].position)
        .await
        .unwrap();

    let client = connect(database_url()).await.unwrap();
    let holders = client
        .query(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
            &[&store.schema().application_name()],
        )
        .await
        .unwrap();
    assert_eq!(holders.len(), 1, "one session holds the lease");
    let pid: i32 = holders[0].get(0);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();

    eventually(Duration::from_secs(5), "the lease is lost", || async {
        !store.is_held(&lease)
    })
    .await;
    let error = store
        .save_checkpoint(&lease, "relay", shard, all[1].position)
        .await
        .unwrap_err();
    assert!(error.is_lease_lost(), "{error:?}");
    assert!(!error.is_retriable());
    assert_eq!(
        store.checkpoint("relay", shard).await.unwrap(),
        Some(all[0].position),
        "nothing written with the lost lease"
    );
    // The lock died with the session: a standby gets the shard at once.
    let standby = tokio::time::timeout(Duration::from_secs(5), store.acquire("relay", shard))
        .await
        .expect("the shard is free")
        .unwrap();
    assert!(store.is_held(&standby));
}

/// What may be in flight is recorded on the lease: a shard never led, one
/// whose holder may be sending, one left cleanly; a relay of an earlier
/// release (a checkpoint, nothing recorded) counts as possibly in flight,
/// and a holder whose session died can clear nothing.
#[tokio::test]
async fn postgres_what_may_be_in_flight_is_recorded_with_the_lease() {
    let store = fresh_store().await;
    write(&store, &keys()[..1]).await;
    let position = everything(&store).await[0].position;
    let shard = OutboxShard::new(1, 2).unwrap();
    assert_eq!(
        store.in_flight("relay", shard).await.unwrap(),
        InFlight::NeverLed
    );
    let lease = store.acquire("relay", shard).await.unwrap();
    store
        .set_in_flight(&lease, "relay", shard, true)
        .await
        .unwrap();
    assert_eq!(
        store.in_flight("relay", shard).await.unwrap(),
        InFlight::Possible
    );
    store
        .set_in_flight(&lease, "relay", shard, false)
        .await
        .unwrap();
    assert_eq!(
        store.in_flight("relay", shard).await.unwrap(),
        InFlight::Nothing
    );
    let refused = store
        .set_in_flight(&lease, "other", shard, true)
        .await
        .unwrap_err();
    assert!(matches!(refused, annals::Error::Config(_)), "{refused:?}");
    assert_eq!(
        store.in_flight("relay", OutboxShard::ALL).await.unwrap(),
        InFlight::NeverLed,
        "each shard count of a relay is a shard of its own"
    );

    let earlier = store.acquire("earlier", OutboxShard::ALL).await.unwrap();
    store
        .save_checkpoint(&earlier, "earlier", OutboxShard::ALL, position)
        .await
        .unwrap();
    assert_eq!(
        store.in_flight("earlier", OutboxShard::ALL).await.unwrap(),
        InFlight::Possible
    );

    store
        .set_in_flight(&lease, "relay", shard, true)
        .await
        .unwrap();
    let client = connect(database_url()).await.unwrap();
    client
        .execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
               JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
            &[&store.schema().application_name()],
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the lease is lost", || async {
        !store.is_held(&lease)
    })
    .await;
    let error = store
        .set_in_flight(&lease, "relay", shard, false)
        .await
        .unwrap_err();
    assert!(error.is_lease_lost(), "{error:?}");
    assert_eq!(
        store.in_flight("relay", shard).await.unwrap(),
        InFlight::Possible,
        "the next holder still waits"
    );
    assert_eq!(store.lease_loss_bound(), PgShardLease::LOSS_BOUND);
}

#[tokio::test]
async fn postgres_prune_deletes_the_shard_up_to_the_limit() {
    let store = fresh_store().await;
    write(&store, &keys()).await;
    let shards = OutboxShard::split(2).unwrap();
    let pruned_shard = shard_records(&store, shards[0]).await;
    let kept_shard = shard_records(&store, shards[1]).await;
    let through = pruned_shard[pruned_shard.len() - 2].position;

    assert_eq!(store.prune(shards[0], through, 0).await.unwrap(), 0);
    assert_eq!(store.prune(shards[0], through, 3).await.unwrap(), 3);
    assert_eq!(
        shard_records(&store, shards[0]).await,
        pruned_shard[3..],
        "the oldest go first"
    );
    let rest = (pruned_shard.len() - 1 - 3) as u64;
    assert_eq!(store.prune(shards[0], through, 1_000).await.unwrap(), rest);
    assert_eq!(
        shard_records(&store, shards[0]).await,
        pruned_shard[pruned_shard.len() - 1..],
        "nothing after `through` goes"
    );
    assert_eq!(shard_records(&store, shards[1]).await, kept_shard);
    assert_eq!(store.prune(shards[0], through, 1_000).await.unwrap(), 0);
}

#[tokio::test]
async fn postgres_parked_records_come_back_oldest_first() {
    let store = fresh_store().await;
    write(&store, &keys()[..3]).await;
    let all = everything(&store).await;
    assert!(store.parked("relay").await.unwrap().is_empty());
    store
        .park("relay", &all[2], "message too large")
        .await
        .unwrap();
    store.park("other", &all[1], "unknown topic").await.unwrap();
    store.park("relay", &all[0], "unknown topic").await.unwrap();
    assert_eq!(
        store.parked("relay").await.unwrap(),
        vec![
            (all[2].clone(), "message too large".to_owned()),
            (all[0].clone(), "unknown topic".to_owned()),
        ]
    );
    assert_eq!(
        store.parked("other").await.unwrap(),
        vec![(all[1].clone(), "unknown topic".to_owned())]
    );
}

#[tokio::test]
async fn postgres_backlog_counts_the_shard_after_the_checkpoint() {
    let store = fresh_store().await;
    let shard = OutboxShard::new(0, 2).unwrap();
    let empty = store.backlog(shard, GlobalPosition::START).await.unwrap();
    assert_eq!(empty.messages, 0);
    assert_eq!(empty.oldest, None);

    write(&store, &keys()).await;
    let records = shard_records(&store, shard).await;
    let backlog = store.backlog(shard, GlobalPosition::START).await.unwrap();
    assert_eq!(backlog.messages, records.len() as u64);
    assert_eq!(backlog.oldest, Some(records[0].recorded_at));
    let after_first = store.backlog(shard, records[0].position).await.unwrap();
    assert_eq!(after_first.messages, records.len() as u64 - 1);
    assert_eq!(after_first.oldest, Some(records[1].recorded_at));
    let drained = store
        .backlog(shard, records[records.len() - 1].position)
        .await
        .unwrap();
    assert_eq!(drained.messages, 0);
}

#[tokio::test]
async fn postgres_shard_indexes_are_built_once_and_serve_the_shard_filter() {
    let store = fresh_store().await;
    let keys = keys();
    write(&store, &keys).await;
    let before: Vec<Vec<OutboxRecord>> = {
        let mut shards = Vec::new();
        for shard in OutboxShard::split(3).unwrap() {
            shards.push(shard_records(&store, shard).await);
        }
        shards
    };

    assert!(store.create_shard_indexes(0).await.is_err(), "no shards");
    store.create_shard_indexes(1).await.unwrap();
    store.create_shard_indexes(3).await.unwrap();
    // Again: nothing to do.
    store.create_shard_indexes(3).await.unwrap();

    let schema = store.schema().name().to_owned();
    let client = connect(database_url()).await.unwrap();
    let indexes: Vec<(String, bool)> = client
        .query(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i \
               JOIN pg_class c ON c.oid = i.indexrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relname::text LIKE 'outbox_shard_%' \
              ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        indexes,
        (0..3)
            .map(|index| (format!("outbox_shard_3_{index}_idx"), true))
            .collect::<Vec<_>>()
    );

    // The filter as the store writes it for a shard is one the index can
    // serve (on 60 rows the planner would rather scan, hence the settings;
    // on a large outbox it picks the index by itself).
    client
        .batch_execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off",
        )
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            &format!(
                "EXPLAIN SELECT position FROM \"{schema}\".outbox \
                  WHERE (tx_id, position) > ('0'::xid8, 0) \
                    AND (key_hash::bigint & 4294967295) % 3 = 1 \
                  ORDER BY tx_id, position LIMIT 10"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|line| line.contains("outbox_shard_3_1_idx")),
        "{plan:#?}"
    );

    // Reads, the backlog and pruning keep to the shard as before.
    for (shard, records) in OutboxShard::split(3).unwrap().into_iter().zip(&before) {
        assert_eq!(&shard_records(&store, shard).await, records);
        let backlog = store.backlog(shard, GlobalPosition::START).await.unwrap();
        assert_eq!(backlog.messages, records.len() as u64);
    }
    let shard = OutboxShard::new(1, 3).unwrap();
    let through = before[1][1].position;
    assert_eq!(store.prune(shard, through, 1_000).await.unwrap(), 2);
    assert_eq!(shard_records(&store, shard).await, before[1][2..]);
    assert_eq!(
        shard_records(&store, OutboxShard::new(0, 3).unwrap()).await,
        before[0]
    );
}
