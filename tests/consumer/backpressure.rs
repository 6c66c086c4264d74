//! Backpressure and order: a slow handler behind a small queue pauses its
//! partition instead of buffering without bound, and every partition's
//! records are still handled in order, each one. Without an inbox the
//! consumer is at-least-once: a message sent twice is handled twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_kafka::{Consumer, NoInbox};

use crate::common::{Ping, TestMessage, config, init_tracing, produce, topics, unique_name};

const MESSAGES: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_pause_partitions_and_order_holds() {
    init_tracing();
    let topic = topics("backpressure", 2).await;
    let mut messages: Vec<TestMessage> = (0..MESSAGES)
        .map(|n| TestMessage::new(n, format!("key-{}", n % 10)))
        .collect();
    let twice = messages[7].clone();
    messages.push(twice.clone());
    produce(&topic, &messages).await;

    let handled: Arc<Mutex<Vec<(i32, i64, uuid::Uuid)>>> = Arc::default();
    let seen = Arc::clone(&handled);
    let consumer = Consumer::builder(config(), NoInbox)
        .name(unique_name("backpressure"))
        .topic(&topic)
        .queue_capacity(4)
        .max_batch(1)
        .on::<Ping, _>(move |_, received| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let origin = &received.message.origin;
                seen.lock().unwrap().push((
                    origin.partition,
                    origin.offset,
                    received.message.message_id,
                ));
                Ok(())
            })
        })
        .start()
        .expect("the consumer starts");

    let mut paused = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = consumer.status();
        paused |= status.partitions.iter().any(|partition| partition.paused);
        for partition in &status.partitions {
            assert!(
                partition.queued <= 4,
                "a queue holds at most its capacity: {status:#?}"
            );
        }
        if status.handled == MESSAGES + 1 || tokio::time::Instant::now() >= deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status.handled, MESSAGES + 1, "{status:#?}");
    assert!(paused, "a full queue paused its partition");
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");

    let handled = handled.lock().unwrap().clone();
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset, _) in &handled {
        by_partition.entry(*partition).or_default().push(*offset);
    }
    let stored = annals_tests::kafka::read_topic(annals_tests::kafka::brokers(), &topic);
    for (partition, records) in stored {
        let offsets: Vec<i64> = records.iter().map(rdkafka::Message::offset).collect();
        assert_eq!(
            by_partition.remove(&partition).unwrap_or_default(),
            offsets,
            "partition {partition}: every record once, in order"
        );
    }
    assert_eq!(
        handled.iter().filter(|(_, _, id)| *id == twice.id).count(),
        2,
        "without an inbox a message sent twice is handled twice"
    );
}
