//! Inbox claims older than the retention are pruned while the consumer runs.

use std::time::Duration;

use annals_kafka::Consumer;

use crate::common::{
    Backend, Faults, MemoryBackend, TestMessage, config, init_tracing, produce, topics, unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_past_the_retention_are_pruned() {
    init_tracing();
    let backend = MemoryBackend::new();
    let topic = topics("prune", 1).await;
    let messages: Vec<TestMessage> = (0..20).map(|n| TestMessage::new(n, "key")).collect();
    produce(&topic, &messages).await;
    let consumer = Consumer::builder(config(), backend.inbox())
        .name(unique_name("prune"))
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        .inbox_retention(Duration::from_millis(100), Duration::from_millis(50))
        .start()
        .expect("the consumer starts");
    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == 20 && status.pruned == 20
        })
        .await;
    assert_eq!((status.handled, status.pruned), (20, 20), "{status:#?}");
    assert_eq!(backend.claims(), 0);
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
}
