//! `OnExhausted::BlockKey`: a failing record holds back the later records
//! of its key, in order, while other keys go on; offsets stay at the first
//! held record, so a restart starts there again.

use std::time::Duration;

use annals_kafka::{Consumer, FailurePolicy, OnExhausted};

use crate::common::{
    Backend, Faults, MemoryBackend, TestMessage, config, init_tracing, produce, topics, unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_record_holds_back_its_key_in_order_and_others_go_on() {
    init_tracing();
    let backend = MemoryBackend::new();
    // One partition: the blocked key and the free ones share it.
    let topic = topics("block", 1).await;
    let name = unique_name("block");
    let mut messages = Vec::new();
    let mut blocked = Vec::new();
    for n in 0..40 {
        if n % 10 == 5 && blocked.len() < 3 {
            let message = TestMessage::new(1_000 + n, "blocked");
            blocked.push(message.clone());
            messages.push(message);
        }
        messages.push(TestMessage::new(n, format!("free-{}", n % 4)));
    }
    let first_blocked_offset = messages
        .iter()
        .position(|message| message.id == blocked[0].id)
        .unwrap() as i64;
    let faults = Faults::new([blocked[0].id]);
    let policy = FailurePolicy::default()
        .with_max_attempts(2)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .with_on_exhausted(OnExhausted::BlockKey);
    let start = |faults: Faults| {
        Consumer::builder(config(), backend.inbox())
            .name(&name)
            .topic(&topic)
            .handler(backend.effect(faults))
            .failure_policy(policy)
            .start()
            .expect("the consumer starts")
    };
    produce(&topic, &messages).await;

    let consumer = start(faults.clone());
    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == 40
                && status.partitions.first().is_some_and(|partition| {
                    partition.kept == 3 && partition.committed == Some(first_blocked_offset)
                })
        })
        .await;
    assert_eq!(status.handled, 40, "the other keys went on: {status:#?}");
    let partition = &status.partitions[0];
    assert_eq!(
        (partition.blocked_keys, partition.kept),
        (1, 3),
        "{status:#?}"
    );
    assert_eq!(
        partition.committed,
        Some(first_blocked_offset),
        "nothing is committed past the first held record: {status:#?}"
    );
    assert_eq!(status.dead_lettered, 0);
    assert!(
        backend
            .effects()
            .await
            .iter()
            .all(|effect| effect.key.as_deref() != Some("blocked")),
        "the blocked key had no effect"
    );

    // Stopped while blocked, a new consumer starts at the first held record:
    // the records after it that were handled are redelivered, and the inbox
    // turns them into no-ops.
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    let consumer = start(faults.clone());
    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status
                .partitions
                .first()
                .is_some_and(|partition| partition.kept == 3)
                && status.duplicates == 40 - first_blocked_offset as u64
        })
        .await;
    assert_eq!(
        status.duplicates,
        40 - first_blocked_offset as u64,
        "every record after the first held one came again: {status:#?}"
    );
    assert_eq!(status.handled, 0, "{status:#?}");

    faults.clear();
    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == 3 && status.lag() == Some(0)
        })
        .await;
    assert_eq!(
        status.handled, 3,
        "the held records after the fix: {status:#?}"
    );
    assert_eq!(status.lag(), Some(0), "{status:#?}");
    assert_eq!(status.partitions[0].blocked_keys, 0, "{status:#?}");
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");

    let order: Vec<uuid::Uuid> = backend
        .effects()
        .await
        .into_iter()
        .filter(|effect| effect.key.as_deref() == Some("blocked"))
        .map(|effect| effect.message_id)
        .collect();
    let sent: Vec<uuid::Uuid> = blocked.iter().map(|message| message.id).collect();
    assert_eq!(
        order, sent,
        "the blocked key's records took effect in order"
    );
}
