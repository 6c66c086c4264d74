//! When a relay waits before publishing: only after taking a shard from a
//! holder that may still have records in flight. A shard's first relay, and
//! one that follows a clean stop, publish at once with default settings; one
//! that takes over from a killed relay waits out the grace and publishes
//! nothing twice.

use std::time::{Duration, Instant};

use annals::OutboxSource;
use annals_kafka::{KafkaConfig, OutboxRelay, RelayHandle, ShardRole};
use annals_tests::kafka::{brokers, create_topic, unique_topic};

use crate::common::{
    MESSAGE_TIMEOUT, RelayStore, Writer, assert_exactly_once_in_order, for_each_store, relay,
    unique_name, wait_for_status,
};

/// A relay with every setting at its default.
fn default_relay<S: RelayStore>(store: &S, name: &str) -> RelayHandle {
    OutboxRelay::builder(
        store.outbox(),
        KafkaConfig::new(brokers()).expect("the test brokers are host:port"),
    )
    .name(name)
    .start()
    .expect("the relay starts")
}

/// How long from `start` until `relay` had its first record acknowledged.
async fn first_ack(relay: &RelayHandle, start: Instant) -> Duration {
    wait_for_status(
        relay,
        Duration::from_secs(60),
        "the relay publishes",
        |status| status.published() > 0,
    )
    .await;
    start.elapsed()
}

async fn only_a_takeover_from_a_killed_relay_waits<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-takeover");
    create_topic(brokers(), &topic, 3).await;
    let name = unique_name("takeover");
    let writer = Writer::new(store.clone(), &topic, 20);
    let mut written = writer.write(500, 2, None).await;

    // The shard's first relay: nothing can be in flight.
    let started = Instant::now();
    let first = default_relay(&store, &name);
    let took = first_ack(&first, started).await;
    assert!(
        took < Duration::from_secs(1),
        "a first relay's first ack {took:?} after start()"
    );
    first
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    first.stop().await;

    // After a clean stop: nothing in flight either.
    written.extend(writer.write(500, 2, None).await);
    let started = Instant::now();
    let second = default_relay(&store, &name);
    let took = first_ack(&second, started).await;
    assert!(
        took < Duration::from_secs(1),
        "after a clean stop, the first ack {took:?} after start()"
    );
    let status = second.status();
    assert_eq!(
        status.shards[0].skipped, 0,
        "nothing after the checkpoint was published: {status:#?}"
    );

    // Killed while publishing: what it had in flight may land later.
    let writing = writer.spawn(3_000, 2, Some(1_000.0));
    wait_for_status(
        &second,
        Duration::from_secs(30),
        "the relay publishes what is being written",
        |status| status.published() >= 700,
    )
    .await;
    second.abort().await;
    let grace = MESSAGE_TIMEOUT + store.outbox().lease_loss_bound();
    let started = Instant::now();
    let third = relay(store.outbox(), brokers(), &name).start().unwrap();
    wait_for_status(
        &third,
        Duration::from_secs(10),
        "the relay takes the shard",
        |status| status.shards[0].role == ShardRole::Starting,
    )
    .await;
    let took = first_ack(&third, started).await;
    assert!(
        took >= grace,
        "a relay taking over from a killed one waits the grace {grace:?} first: {took:?}"
    );
    written.extend(writing.await.unwrap());
    third
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    third.stop().await;
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
}
for_each_store!(only_a_takeover_from_a_killed_relay_waits);
