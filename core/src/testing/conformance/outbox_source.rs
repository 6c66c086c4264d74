//! The contract of [`OutboxSource`]: shards that partition the outbox,
//! leases that are exclusive per relay and shard, checkpoints that only move
//! forward, what a shard's last holder may have left in flight, pruning,
//! parking and the backlog.
//!
//! Each case takes the store it writes with and the source under test over
//! that store's outbox: `(store, source)`.

use std::time::Duration;

use super::outbox::message;
use crate::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, InFlight, Metadata, NewEvent,
    OutboxReader, OutboxRecord, OutboxShard, OutboxSource, Payload, StreamId,
};

/// Keys spread over the shards, non-ASCII ones among them (the hash is of
/// the UTF-8 bytes).
pub fn keys() -> Vec<String> {
    (0..60)
        .map(|n| match n % 3 {
            0 => format!("order-{n}"),
            1 => format!("Bestellung-ü-{n}"),
            _ => format!("注文-{n}"),
        })
        .collect()
}

/// One append per key, each with an event and one outbox message keyed by
/// it.
pub async fn write<S: EventStore>(store: &S, keys: &[String]) {
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

/// Every record of `shard`, in order.
pub async fn shard_records<O: OutboxReader>(source: &O, shard: OutboxShard) -> Vec<OutboxRecord> {
    source
        .read_outbox(shard, GlobalPosition::START, 10_000)
        .await
        .unwrap()
}

/// Every shard holds only its own keys, in position order, and pages on
/// where it stopped; together the shards hold every record once.
pub async fn shards_partition_the_outbox<S: EventStore, O: OutboxSource>((store, source): (S, O)) {
    let keys = keys();
    write(&store, &keys).await;
    let all = shard_records(&source, OutboxShard::ALL).await;
    assert_eq!(all.len(), keys.len());

    let mut relayed = Vec::new();
    for shard in OutboxShard::split(3).unwrap() {
        let records = shard_records(&source, shard).await;
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
        let rest = source
            .read_outbox(shard, records[0].position, 10_000)
            .await
            .unwrap();
        assert_eq!(rest, records[1..]);
        let first_two = source
            .read_outbox(shard, GlobalPosition::START, 2)
            .await
            .unwrap();
        assert_eq!(first_two, records[..2], "a page holds at most its limit");
        relayed.extend(records);
    }
    relayed.sort_by_key(|record| record.position);
    assert_eq!(relayed, all, "every record in exactly one shard");
}

/// A checkpoint comes back as saved, a late save does not move it back, and
/// checkpoints are per relay and per shard (of a given count).
pub async fn checkpoints_round_trip_and_never_go_back<S: EventStore, O: OutboxSource>(
    (store, source): (S, O),
) {
    write(&store, &keys()[..3]).await;
    let all = shard_records(&source, OutboxShard::ALL).await;
    let shard = OutboxShard::new(1, 2).unwrap();
    let lease = source.acquire("relay", shard).await.unwrap();
    assert_eq!(source.checkpoint("relay", shard).await.unwrap(), None);

    let save = |position| source.save_checkpoint(&lease, "relay", shard, position);
    save(all[1].position).await.unwrap();
    assert_eq!(
        source.checkpoint("relay", shard).await.unwrap(),
        Some(all[1].position)
    );
    save(all[0].position).await.unwrap();
    assert_eq!(
        source.checkpoint("relay", shard).await.unwrap(),
        Some(all[1].position),
        "a late save does not move the checkpoint back"
    );
    save(all[2].position).await.unwrap();
    assert_eq!(
        source.checkpoint("relay", shard).await.unwrap(),
        Some(all[2].position)
    );

    assert_eq!(source.checkpoint("other", shard).await.unwrap(), None);
    assert_eq!(
        source
            .checkpoint("relay", OutboxShard::new(1, 3).unwrap())
            .await
            .unwrap(),
        None
    );
}

/// A second relay of the same name waits for the shard's lease until the
/// first drops it; other relays and other shards are leased at once.
pub async fn one_lease_per_shard_and_relay<S: EventStore, O: OutboxSource>(
    (_store, source): (S, O),
) {
    let lease = source.acquire("relay", OutboxShard::ALL).await.unwrap();
    let mut waiting = {
        let source = source.clone();
        tokio::spawn(async move { source.acquire("relay", OutboxShard::ALL).await })
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut waiting)
            .await
            .is_err(),
        "the second relay waits"
    );
    let other_relay = source
        .acquire("other-relay", OutboxShard::ALL)
        .await
        .unwrap();
    let other_shard = source
        .acquire("relay", OutboxShard::new(0, 2).unwrap())
        .await
        .unwrap();
    assert!(source.is_held(&lease));
    drop(lease);
    let taken_over = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting relay takes over once the lease is dropped")
        .unwrap()
        .unwrap();
    assert!(source.is_held(&taken_over));
    assert!(source.is_held(&other_relay));
    assert!(source.is_held(&other_shard));
}

/// What may be in flight is what the shard's last holder recorded: nothing
/// for a shard never led, then what the holder said last; per relay and per
/// shard (of a given count). A shard with a checkpoint and nothing recorded
/// (a relay that did not record it) may have records in flight.
pub async fn in_flight_is_what_the_last_holder_recorded<S: EventStore, O: OutboxSource>(
    (store, source): (S, O),
) {
    write(&store, &keys()[..1]).await;
    let position = shard_records(&source, OutboxShard::ALL).await[0].position;
    let shard = OutboxShard::new(1, 2).unwrap();
    assert_eq!(
        source.in_flight("relay", shard).await.unwrap(),
        InFlight::NeverLed
    );
    let lease = source.acquire("relay", shard).await.unwrap();
    source
        .set_in_flight(&lease, "relay", shard, true)
        .await
        .unwrap();
    assert_eq!(
        source.in_flight("relay", shard).await.unwrap(),
        InFlight::Possible
    );
    source
        .set_in_flight(&lease, "relay", shard, false)
        .await
        .unwrap();
    assert_eq!(
        source.in_flight("relay", shard).await.unwrap(),
        InFlight::Nothing
    );
    assert_eq!(
        source.in_flight("other", shard).await.unwrap(),
        InFlight::NeverLed
    );
    assert_eq!(
        source.in_flight("relay", OutboxShard::ALL).await.unwrap(),
        InFlight::NeverLed,
        "each shard count of a relay is a shard of its own"
    );

    let earlier = source.acquire("earlier", OutboxShard::ALL).await.unwrap();
    source
        .save_checkpoint(&earlier, "earlier", OutboxShard::ALL, position)
        .await
        .unwrap();
    assert_eq!(
        source.in_flight("earlier", OutboxShard::ALL).await.unwrap(),
        InFlight::Possible
    );
}

/// Pruning deletes a shard's records at or before a position, oldest first,
/// up to the limit, and nothing of the other shards.
pub async fn prune_deletes_the_shard_up_to_the_limit<S: EventStore, O: OutboxSource>(
    (store, source): (S, O),
) {
    write(&store, &keys()).await;
    let shards = OutboxShard::split(2).unwrap();
    let pruned_shard = shard_records(&source, shards[0]).await;
    let kept_shard = shard_records(&source, shards[1]).await;
    let through = pruned_shard[pruned_shard.len() - 2].position;

    assert_eq!(source.prune(shards[0], through, 0).await.unwrap(), 0);
    assert_eq!(source.prune(shards[0], through, 3).await.unwrap(), 3);
    assert_eq!(
        shard_records(&source, shards[0]).await,
        pruned_shard[3..],
        "the oldest go first"
    );
    let rest = (pruned_shard.len() - 1 - 3) as u64;
    assert_eq!(source.prune(shards[0], through, 1_000).await.unwrap(), rest);
    assert_eq!(
        shard_records(&source, shards[0]).await,
        pruned_shard[pruned_shard.len() - 1..],
        "nothing after `through` goes"
    );
    assert_eq!(shard_records(&source, shards[1]).await, kept_shard);
    assert_eq!(source.prune(shards[0], through, 1_000).await.unwrap(), 0);
    assert_eq!(
        shard_records(&source, OutboxShard::ALL).await.len(),
        kept_shard.len() + 1,
        "the whole outbox reads what is left"
    );
}

/// Parked records come back per relay, oldest first, with their reasons.
pub async fn parked_records_come_back_oldest_first<S: EventStore, O: OutboxSource>(
    (store, source): (S, O),
) {
    write(&store, &keys()[..3]).await;
    let all = shard_records(&source, OutboxShard::ALL).await;
    assert!(source.parked("relay").await.unwrap().is_empty());
    source
        .park("relay", &all[2], "message too large")
        .await
        .unwrap();
    source
        .park("other", &all[1], "unknown topic")
        .await
        .unwrap();
    source
        .park("relay", &all[0], "unknown topic")
        .await
        .unwrap();
    assert_eq!(
        source.parked("relay").await.unwrap(),
        vec![
            (all[2].clone(), "message too large".to_owned()),
            (all[0].clone(), "unknown topic".to_owned()),
        ]
    );
    assert_eq!(
        source.parked("other").await.unwrap(),
        vec![(all[1].clone(), "unknown topic".to_owned())]
    );
}

/// The backlog counts a shard's records after a position and tells when the
/// oldest of them was written.
pub async fn backlog_counts_the_shard_after_the_checkpoint<S: EventStore, O: OutboxSource>(
    (store, source): (S, O),
) {
    let shard = OutboxShard::new(0, 2).unwrap();
    let empty = source.backlog(shard, GlobalPosition::START).await.unwrap();
    assert_eq!(empty.messages, 0);
    assert_eq!(empty.oldest, None);

    write(&store, &keys()).await;
    let records = shard_records(&source, shard).await;
    let backlog = source.backlog(shard, GlobalPosition::START).await.unwrap();
    assert_eq!(backlog.messages, records.len() as u64);
    assert_eq!(backlog.oldest, Some(records[0].recorded_at));
    let after_first = source.backlog(shard, records[0].position).await.unwrap();
    assert_eq!(after_first.messages, records.len() as u64 - 1);
    assert_eq!(after_first.oldest, Some(records[1].recorded_at));
    let drained = source
        .backlog(shard, records[records.len() - 1].position)
        .await
        .unwrap();
    assert_eq!(drained.messages, 0);
    let whole = source
        .backlog(OutboxShard::ALL, GlobalPosition::START)
        .await
        .unwrap();
    assert_eq!(whole.messages, 60);
}

/// A relay waiting on the outbox signal wakes when a message is appended,
/// and then reads it.
pub async fn the_outbox_signal_wakes_a_waiting_relay<S: EventStore, O: OutboxSource>(
    (store, source): (S, O),
) {
    let mut signal = source.outbox_signal();
    write(&store, &keys()[..1]).await;
    let started = tokio::time::Instant::now();
    let mut woken = false;
    while !woken && started.elapsed() < Duration::from_secs(10) {
        woken = signal.wait(Duration::from_secs(10)).await;
    }
    assert!(woken, "the signal woke within 10 s of the append");
    assert_eq!(shard_records(&source, OutboxShard::ALL).await.len(), 1);
}
