//! The store unreachable while the relay publishes: it backs off, keeps its
//! place, and resumes in order when the store answers again.

use std::time::Duration;

use annals_tests::kafka::{brokers, create_topic, unique_topic};

use crate::common::{
    FlakySource, RelayStore, Writer, assert_accounted_for, assert_exactly_once_in_order,
    for_each_store, relay, unique_name, wait_for_status,
};

/// Two outages of the outbox source (every call fails with a retriable
/// error) while 3,000 messages are written and relayed.
async fn store_outages_are_ridden_out<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-outage");
    create_topic(brokers(), &topic, 3).await;
    let name = unique_name("outage");
    let flaky = FlakySource::new(store.outbox());
    let relay = relay(flaky.clone(), brokers(), &name)
        .shards(2)
        .start()
        .unwrap();
    let writing = Writer::new(store.clone(), &topic, 60).spawn(3_000, 3, Some(500.0));
    for outage in 1..=2 {
        wait_for_status(
            &relay,
            Duration::from_secs(30),
            "the relay publishes",
            |status| status.published() >= outage * 600,
        )
        .await;
        flaky.set_down(true);
        wait_for_status(
            &relay,
            Duration::from_secs(10),
            "the relay notices",
            |status| status.shards.iter().any(|shard| shard.last_error.is_some()),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        flaky.set_down(false);
    }
    let written = writing.await.unwrap();
    relay
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    let status = relay.stop().await;
    assert_exactly_once_in_order(brokers(), &topic, &name, 2, &written).await;
    assert_accounted_for(&[&status], 3_000);
}
for_each_store!(store_outages_are_ridden_out);
