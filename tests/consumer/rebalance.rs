//! Rebalance: a second member joins mid-run and the first then leaves; the
//! partitions move over with nothing lost and nothing handled twice.

use std::collections::HashSet;
use std::time::Duration;

use annals_kafka::Consumer;
use uuid::Uuid;

use crate::common::{
    Backend, Faults, TestMessage, assert_exactly_once, config, init_tracing, produce_over_time,
    topics, unique_name, wait_for_effects,
};

const MESSAGES: u64 = 6_000;
const PARTITIONS: usize = 4;

pub(crate) async fn second_member_joins_then_first_leaves<B: Backend>(backend: B) {
    init_tracing();
    let topic = topics("rebalance", PARTITIONS as i32).await;
    let name = unique_name("rebalance");
    let messages: Vec<TestMessage> = (0..MESSAGES)
        .map(|n| TestMessage::new(n, format!("key-{}", n % 100)))
        .collect();
    let expected: HashSet<Uuid> = messages.iter().map(|message| message.id).collect();
    // Produced in chunks throughout, so that records keep arriving while
    // the group changes.
    let producing = produce_over_time(&topic, messages, 200, Duration::from_millis(100));

    let first = start(&backend, &topic, &name);
    let status = first
        .wait_until(Duration::from_secs(60), |status| status.handled >= 500)
        .await;
    assert!(
        status.handled >= 500,
        "the first member handles: {status:#?}"
    );

    let second = start(&backend, &topic, &name);
    let joined = second
        .wait_until(Duration::from_secs(60), |status| {
            !status.partitions.is_empty() && status.handled > 0
        })
        .await;
    assert!(
        !joined.partitions.is_empty() && joined.handled > 0,
        "the second member gets partitions and handles: {joined:#?}"
    );
    let shared = first
        .wait_until(Duration::from_secs(30), |status| {
            status.partitions.len() < PARTITIONS
        })
        .await;
    assert!(
        shared.partitions.len() < PARTITIONS,
        "the first member gave partitions up: {shared:#?}"
    );
    assert!(
        !producing.is_finished(),
        "the group changed while records kept coming"
    );

    let first_status = first
        .stop(Duration::from_secs(30))
        .await
        .expect("the first member stops");
    let alone = second
        .wait_until(Duration::from_secs(60), |status| {
            status.partitions.len() == PARTITIONS
        })
        .await;
    assert_eq!(
        alone.partitions.len(),
        PARTITIONS,
        "the second member took everything over: {alone:#?}"
    );

    producing.await.expect("the producing task");
    wait_for_effects(&backend, &expected, Duration::from_secs(120), || {
        vec![second.status()]
    })
    .await;
    let end = second
        .wait_until(Duration::from_secs(30), |status| status.lag() == Some(0))
        .await;
    assert_eq!(end.lag(), Some(0), "{end:#?}");
    let second_status = second
        .stop(Duration::from_secs(30))
        .await
        .expect("the second member stops");

    assert_exactly_once(&backend.effects().await, &expected);
    assert!(
        first_status.handled > 0 && second_status.handled > 0,
        "both members had effects: {first_status:#?} {second_status:#?}"
    );
    assert_eq!(
        first_status.handled + second_status.handled,
        MESSAGES,
        "the members counted each effect once between them"
    );
}

fn start<B: Backend>(backend: &B, topic: &str, name: &str) -> Consumer {
    Consumer::builder(config(), backend.inbox())
        .name(name)
        .topic(topic)
        .handler(backend.effect(Faults::default()))
        .start()
        .expect("the consumer starts")
}
