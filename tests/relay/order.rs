//! Many aggregates written concurrently reach the topic each in stream
//! version order, all of them, each once, on the partition of their key.

use std::time::Duration;

use annals_kafka::partition_for_key;
use annals_tests::kafka::{brokers, create_topic, unique_topic};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::{
    RelayStore, Writer, assert_accounted_for, assert_exactly_once_in_order, for_each_store, relay,
    unique_name,
};

/// 4,000 messages of 200 aggregates from 8 concurrent writers, relayed by 3
/// shards into 6 partitions while they are written.
async fn concurrent_aggregates_arrive_in_order<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-order");
    create_topic(brokers(), &topic, 6).await;
    let name = unique_name("order");
    let relay = relay(store.outbox(), brokers(), &name)
        .shards(3)
        .start()
        .unwrap();
    let written = Writer::new(store.clone(), &topic, 200)
        .write(4_000, 8, None)
        .await;
    relay
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    let status = relay.status();
    relay.stop().await;
    let published = assert_exactly_once_in_order(brokers(), &topic, &name, 3, &written).await;
    assert_eq!(published.records, 4_000);
    assert_eq!(published.per_partition.len(), 6);
    assert!(
        published.per_partition.values().all(|count| *count > 0),
        "keys spread over every partition: {published:?}"
    );
    assert_accounted_for(&[&status], 4_000);
    assert_eq!(status.parked(), 0);
}
for_each_store!(concurrent_aggregates_arrive_in_order);

/// The relay's partitioner is the Java client's default: librdkafka's
/// `murmur2_random` puts every key where `partition_for_key` says.
#[tokio::test]
async fn partitions_match_the_java_default_partitioner() {
    let topic = unique_topic("relay-partitioner");
    create_topic(brokers(), &topic, 7).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    for n in 0..200 {
        let key = format!("order-{n}-{:x}", fastrand::u32(..));
        let delivery = producer
            .send(
                FutureRecord::<str, str>::to(&topic).key(&key).payload("{}"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            delivery.partition,
            partition_for_key(&key, 7) as i32,
            "{key}"
        );
    }
}
