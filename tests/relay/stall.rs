//! A broker that stays connected but answers later than the producer's
//! `message.timeout.ms`: the relay ends the producer session itself before
//! librdkafka can time a record out, so no later record overtakes one that
//! timed out, and nothing is lost or duplicated. (A broker that goes away
//! ends the session at once: the connection failure says so.)
//!
//! The broker is librdkafka's mock cluster, the only one whose answers a
//! test can delay at a chosen moment.

use std::time::Duration;

use annals_tests::kafka::unique_topic;
use rdkafka::mocking::MockCluster;

use crate::common::{
    MESSAGE_TIMEOUT, RelayStore, Writer, assert_exactly_once_in_order, for_each_store, relay,
    unique_name, wait_for_status,
};

/// 2,000 messages written over about 7 s; for a while the broker answers
/// one and a half message timeouts late.
async fn a_silent_broker_ends_the_session_before_records_time_out<S: RelayStore>(store: S) {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    let brokers = cluster.bootstrap_servers();
    let topic = unique_topic("relay-stall");
    cluster.create_topic(&topic, 3, 1).expect("the topic");
    let name = unique_name("stall");
    let relay = relay(store.outbox(), &brokers, &name).start().unwrap();
    let writing = Writer::new(store.clone(), &topic, 50).spawn(2_000, 2, Some(300.0));
    wait_for_status(
        &relay,
        Duration::from_secs(30),
        "the relay publishes",
        |status| status.published() >= 300,
    )
    .await;

    cluster
        .broker_round_trip_time(-1, MESSAGE_TIMEOUT * 3 / 2)
        .expect("slow answers");
    // The oldest record sent from now on waits for its ack until the relay
    // gives up on the session, before librdkafka would time it out.
    wait_for_status(
        &relay,
        MESSAGE_TIMEOUT * 2,
        "the relay ends the session over a record waiting for its ack",
        |status| {
            status.shards[0]
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains("for its ack"))
        },
    )
    .await;
    cluster
        .broker_round_trip_time(-1, Duration::ZERO)
        .expect("prompt answers");

    let written = writing.await.unwrap();
    relay
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    let status = relay.stop().await;
    assert_exactly_once_in_order(&brokers, &topic, &name, 1, &written).await;
    // What the abandoned session had in flight landed, late: recovery found
    // it there and skipped it (acks that came in beyond the acked prefix
    // count as published too; the topic check above is the proof).
    let shard = &status.shards[0];
    assert!(shard.published + shard.skipped >= 2_000, "{status:#?}");
    assert_eq!(shard.parked, 0, "nothing was refused: {status:#?}");
    assert!(shard.sessions >= 2, "{status:#?}");
}
for_each_store!(a_silent_broker_ends_the_session_before_records_time_out);
