//! Poison: a handler that keeps failing for some messages sends exactly
//! those to the dead-letter topic, with headers that say why and where from;
//! the others are handled; after the fix a replay handles them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use annals_kafka::{
    Consumer, DeadLetter, DeadLetterReason, DeadLetterReplay, FailurePolicy, HeaderName,
    IncomingMessage,
};
use chrono::Utc;
use uuid::Uuid;

use crate::common::{
    Backend, Faults, TestMessage, assert_exactly_once, config, init_tracing, produce, topics,
    unique_name, wait_for_effects,
};

const MESSAGES: u64 = 300;
const POISONED: usize = 7;
const ATTEMPTS: u32 = 3;

pub(crate) async fn dead_letters_then_replay<B: Backend>(backend: B) {
    init_tracing();
    let started_at = Utc::now();
    let topic = topics("poison", 2).await;
    let name = unique_name("poison");
    let messages: Vec<TestMessage> = (0..MESSAGES)
        .map(|n| TestMessage::new(n, format!("key-{}", n % 30)))
        .collect();
    let expected: HashSet<Uuid> = messages.iter().map(|message| message.id).collect();
    let mut poisoned: HashSet<Uuid> = HashSet::new();
    while poisoned.len() < POISONED {
        poisoned.insert(messages[fastrand::usize(..messages.len())].id);
    }
    let faults = Faults::new(poisoned.iter().copied());

    let consumer = Consumer::builder(config(), backend.inbox())
        .name(&name)
        .topic(&topic)
        .handler(backend.effect(faults.clone()))
        .failure_policy(
            FailurePolicy::default()
                .with_max_attempts(ATTEMPTS)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(40)),
        )
        .start()
        .expect("the consumer starts");
    produce(&topic, &messages).await;

    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.dead_lettered == POISONED as u64 && status.handled == MESSAGES - POISONED as u64
        })
        .await;
    assert_eq!(status.dead_lettered, POISONED as u64, "{status:#?}");
    assert_eq!(status.handled, MESSAGES - POISONED as u64, "{status:#?}");
    assert_eq!(
        status.retried,
        POISONED as u64 * u64::from(ATTEMPTS - 1),
        "each poisoned message was retried until its attempts ran out: {status:#?}"
    );

    let brokers = annals_tests::kafka::brokers();
    let originals: HashMap<Uuid, IncomingMessage> =
        annals_tests::kafka::read_topic(brokers, &topic)
            .into_values()
            .flatten()
            .map(|record| {
                let message = IncomingMessage::from_record(&record).expect("our records read back");
                (message.message_id, message)
            })
            .collect();
    let letters: Vec<DeadLetter> =
        annals_tests::kafka::read_topic(brokers, &format!("{topic}.dlq"))
            .into_values()
            .flatten()
            .map(|record| DeadLetter::from_record(&record).expect("a dead letter reads back"))
            .collect();
    let dead: HashSet<Uuid> = letters
        .iter()
        .map(|letter| {
            letter
                .message_id()
                .expect("the original message id is kept")
        })
        .collect();
    assert_eq!(
        letters.len(),
        POISONED,
        "one dead letter per poisoned message"
    );
    assert_eq!(
        dead, poisoned,
        "exactly the poisoned messages are dead letters"
    );
    for letter in &letters {
        let original = &originals[&letter.message_id().unwrap()];
        assert_eq!(letter.reason, DeadLetterReason::HandlerFailed);
        assert!(letter.error.contains("is poisoned"), "{}", letter.error);
        assert_eq!(letter.attempts, ATTEMPTS);
        assert_eq!(
            letter.original, original.origin,
            "the origin is the consumed record"
        );
        assert_eq!(letter.consumer, name);
        assert!(
            letter.first_failure >= started_at - chrono::Duration::seconds(1)
                && letter.first_failure <= Utc::now(),
            "first failure {} during the test",
            letter.first_failure
        );
        assert_eq!(
            letter.key.as_deref(),
            original.key.as_deref().map(str::as_bytes)
        );
        assert_eq!(letter.header(HeaderName::TYPE), Some("Ping"));
        assert_eq!(
            letter.header(HeaderName::TRACEPARENT),
            original.metadata.traceparent.as_deref(),
            "the original headers are kept"
        );
    }

    faults.clear();
    let replay_name = unique_name("replay");
    let report = DeadLetterReplay::new(config(), format!("{topic}.dlq"))
        .name(&replay_name)
        .run()
        .await
        .expect("the replay runs");
    assert_eq!(report.replayed, POISONED as u64, "{report:?}");
    wait_for_effects(&backend, &expected, Duration::from_secs(60), || {
        vec![consumer.status()]
    })
    .await;
    let again = DeadLetterReplay::new(config(), format!("{topic}.dlq"))
        .name(&replay_name)
        .run()
        .await
        .expect("the replay runs again");
    assert_eq!(again.replayed, 0, "a replay is not repeated: {again:?}");

    let end = consumer
        .wait_until(Duration::from_secs(30), |status| status.lag() == Some(0))
        .await;
    assert_eq!(end.lag(), Some(0), "{end:#?}");
    assert_eq!(
        end.dead_lettered, POISONED as u64,
        "the replayed messages were handled: {end:#?}"
    );
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    assert_exactly_once(&backend.effects().await, &expected);
}
