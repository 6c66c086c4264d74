//! Records the broker refuses for good are parked with the reason, and the
//! others published around them, in order.

use std::time::Duration;

use annals::{OutboxSource, Payload};
use annals_tests::kafka::{brokers, create_topic, unique_topic};

use crate::common::{
    RelayStore, Writer, assert_exactly_once_in_order, for_each_store, kafka_config, relay,
    relay_with, unique_name,
};

/// A record over the producer's `message.max.bytes` (1,000,000 by default;
/// the store accepts up to 1 MiB) is parked; the records around it, of its
/// own key too, are published.
async fn oversized_record_is_parked<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-oversized");
    create_topic(brokers(), &topic, 2).await;
    let name = unique_name("oversized");
    let writer = Writer::new(store.clone(), &topic, 10);
    let mut written = writer.write(50, 1, None).await;
    let huge = Payload::encode(&"x".repeat(1_020_000)).unwrap();
    let refused = writer.append_next(3, Some(huge)).await;
    written.extend(writer.write(50, 1, None).await);
    let relay = relay(store.outbox(), brokers(), &name).start().unwrap();
    relay
        .wait_until_drained(Duration::from_secs(30))
        .await
        .expect("the relay drains the outbox");
    let status = relay.stop().await;
    let parked = store.outbox().parked(&name).await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (record, reason) = &parked[0];
    assert_eq!(record.message.message_id, refused.message_id);
    assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
    assert_eq!((status.parked(), status.published()), (1, 100));
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
}
for_each_store!(oversized_record_is_parked);

/// With automatic topic creation off, records for a topic that does not
/// exist are parked after the bounded wait; the records for a topic that
/// does are published.
async fn unknown_topic_is_parked_when_auto_creation_is_off<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-known");
    let missing = unique_topic("relay-missing");
    create_topic(brokers(), &topic, 2).await;
    let name = unique_name("unknown-topic");
    let writer = Writer::new(store.clone(), &topic, 10);
    let mut written = writer.write(20, 1, None).await;
    let mut refused = Vec::new();
    for aggregate in [1, 4, 7] {
        refused.push(writer.append_to(aggregate, &missing, None).await);
    }
    written.extend(writer.write(20, 1, None).await);
    let kafka = kafka_config(brokers()).with("allow.auto.create.topics", "false");
    let relay = relay_with(store.outbox(), kafka, &name)
        .unknown_topic_timeout(Duration::from_secs(1))
        .start()
        .unwrap();
    relay
        .wait_until_drained(Duration::from_secs(30))
        .await
        .expect("the relay drains the outbox");
    let status = relay.stop().await;
    let parked = store.outbox().parked(&name).await.unwrap();
    let parked_ids: Vec<_> = parked
        .iter()
        .map(|(record, _)| record.message.message_id)
        .collect();
    let refused_ids: Vec<_> = refused.iter().map(|message| message.message_id).collect();
    assert_eq!(parked_ids, refused_ids);
    for (_, reason) in &parked {
        assert!(reason.contains("does not exist"), "{reason}");
    }
    assert_eq!((status.parked(), status.published()), (3, 40));
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
}
for_each_store!(unknown_topic_is_parked_when_auto_creation_is_off);
