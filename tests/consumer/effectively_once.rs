//! Effectively-once: 10,000 messages with duplicates injected, the consumer
//! killed at random points and restarted; every message has its effect
//! exactly once.

use std::collections::HashSet;
use std::time::Duration;

use annals_kafka::Consumer;
use uuid::Uuid;

use crate::common::{
    Backend, Faults, TestMessage, assert_exactly_once, config, init_tracing, produce_over_time,
    topics, unique_name, wait_for_effects,
};

const MESSAGES: u64 = 10_000;
const DUPLICATES: usize = 1_000;
const KILLS: usize = 4;

pub(crate) async fn survives_kills<B: Backend>(backend: B) {
    init_tracing();
    let topic = topics("once", 4).await;
    let name = unique_name("once");
    let originals: Vec<TestMessage> = (0..MESSAGES)
        .map(|n| TestMessage::new(n, format!("key-{}", n % 250)))
        .collect();
    let expected: HashSet<Uuid> = originals.iter().map(|message| message.id).collect();
    let mut messages = originals.clone();
    for duplicate in 0..DUPLICATES {
        let mut again = originals[fastrand::usize(..originals.len())].clone();
        if duplicate % 2 == 1 {
            // A producer that re-sends under another key puts the copy on
            // another partition, handled by another worker at the same time.
            again.key = format!("elsewhere-{duplicate}");
        }
        let at = fastrand::usize(..=messages.len());
        messages.insert(at, again);
    }
    // Produced while the consumers come and go.
    let producing = produce_over_time(&topic, messages, 1_000, Duration::from_millis(50));

    let mut handled = 0;
    let mut duplicates = 0;
    let mut left_uncommitted = false;
    for kill in 0..KILLS {
        // Every other run commits so rarely that it dies with everything it
        // handled uncommitted: the next run gets those records again.
        let commit_every = if kill % 2 == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(50)
        };
        let consumer = start(&backend, &topic, &name, commit_every);
        let kill_after = fastrand::u64(200..1_500);
        let status = consumer
            .wait_until(Duration::from_secs(60), |status| {
                status.handled >= kill_after
            })
            .await;
        assert!(
            status.handled >= kill_after,
            "kill {kill}: only {} handled: {status:#?}",
            status.handled
        );
        left_uncommitted |= status
            .partitions
            .iter()
            .any(|partition| partition.settled > partition.committed);
        let last = consumer.abort().await;
        handled += last.handled;
        duplicates += last.duplicates;
    }
    assert!(left_uncommitted, "a kill left handled records uncommitted");
    producing.await.expect("the producing task");

    let consumer = start(&backend, &topic, &name, Duration::from_millis(200));
    wait_for_effects(&backend, &expected, Duration::from_secs(120), || {
        vec![consumer.status()]
    })
    .await;
    let status = consumer
        .wait_until(Duration::from_secs(30), |status| {
            status.partitions.len() == 4 && status.lag() == Some(0)
        })
        .await;
    assert_eq!(
        status.lag(),
        Some(0),
        "everything handled is committed: {status:#?}"
    );
    let last = consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    handled += last.handled;
    duplicates += last.duplicates;

    // The proof: the effects themselves, each message id exactly once.
    assert_exactly_once(&backend.effects().await, &expected);
    // The counters agree as far as they can. An aborted consumer reports
    // what it had counted when it was cut off; a commit that reached the
    // server as the task was aborted has its effect but was never counted
    // (its redelivery then counts as a duplicate). So the counters may fall
    // short after kills against a real database, and never exceed.
    assert!(
        handled <= MESSAGES,
        "the consumers counted an effect twice: {handled} handled of {MESSAGES}"
    );
    assert!(
        handled + duplicates >= MESSAGES + DUPLICATES as u64,
        "every delivery was handled or recognised as a duplicate: {handled} + {duplicates}"
    );
    assert!(
        duplicates >= DUPLICATES as u64,
        "the injected duplicates and the redeliveries after kills were no-ops: {duplicates}"
    );
}

fn start<B: Backend>(backend: &B, topic: &str, name: &str, commit_every: Duration) -> Consumer {
    Consumer::builder(config(), backend.inbox())
        .name(name)
        .topic(topic)
        .commit_interval(commit_every)
        .handler(backend.effect(Faults::default()))
        .start()
        .expect("the consumer starts")
}
