//! Transactional mode publishes every batch in a Kafka transaction.
//!
//! tansu 0.6.0 accepts the transactional calls but does not hide aborted
//! records (docs/broker-notes.md), so this only shows that the mode
//! publishes exactly once in order when nothing fails; that a new producer
//! fences a zombie is not verified here.

use std::time::Duration;

use annals_tests::kafka::{brokers, create_topic, unique_topic};

use crate::common::{
    RelayStore, Writer, assert_exactly_once_in_order, for_each_store, relay, unique_name,
    wait_until_drained,
};

async fn transactional_mode_publishes_in_order<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-transactional");
    create_topic(brokers(), &topic, 3).await;
    let name = unique_name("transactional");
    let relay = relay(store.clone(), brokers(), &name)
        .shards(2)
        .transactional(true)
        .start()
        .unwrap();
    let written = Writer::new(store.clone(), &topic, 100)
        .write(3_000, 4, None)
        .await;
    wait_until_drained(&store, &name, 2, Duration::from_secs(60)).await;
    let status = relay.stop().await;
    assert_eq!(status.published(), 3_000, "{status:#?}");
    assert_exactly_once_in_order(brokers(), &topic, &name, 2, &written).await;
}
for_each_store!(transactional_mode_publishes_in_order);
