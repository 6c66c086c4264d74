//! Garbage from a foreign producer: payloads that are not JSON, missing or
//! broken headers, types nobody handles. Each ends in the dead-letter topic
//! with its reason, and the consumer goes on.

use std::collections::BTreeMap;
use std::time::Duration;

use annals_kafka::{
    Consumer, ConsumerState, DeadLetter, DeadLetterReason, HeaderName, UnknownTypes,
};
use rdkafka::message::{Header, OwnedHeaders};

use crate::common::{
    Backend, Faults, MemoryBackend, TestMessage, config, headers_of, init_tracing, produce,
    produce_raw, topics, unique_name,
};

/// Headers annals reads, as given.
fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dead_lettered_with_its_reason_and_the_consumer_goes_on() {
    init_tracing();
    let backend = MemoryBackend::new();
    // One partition, so that the dead letters' offsets say which is which.
    let topic = topics("garbage", 1).await;
    let id = || uuid::Uuid::now_v7().to_string();
    let before: Vec<TestMessage> = (0..5).map(|n| TestMessage::new(n, "good")).collect();
    let after: Vec<TestMessage> = (5..10).map(|n| TestMessage::new(n, "good")).collect();
    produce(&topic, &before).await;
    // Offsets 5 to 12, in this order.
    let garbage: Vec<(DeadLetterReason, &str)> = vec![
        (DeadLetterReason::InvalidPayload, "not JSON"),
        (DeadLetterReason::MissingHeader, HeaderName::MESSAGE_ID),
        (DeadLetterReason::MissingHeader, HeaderName::TYPE),
        (DeadLetterReason::InvalidHeader, HeaderName::MESSAGE_ID),
        (DeadLetterReason::UnknownType, "Pong"),
        (DeadLetterReason::Undecodable, "Ping"),
        (DeadLetterReason::UnknownType, "version 9"),
        (DeadLetterReason::InvalidPayload, "not JSON"),
    ];
    let valid = TestMessage::new(99, "foreign");
    produce_raw(
        &topic,
        "foreign",
        Some(b"{not json"),
        Some(headers_of(&topic, &valid)),
    )
    .await;
    produce_raw(&topic, "foreign", Some(b"{}"), None).await;
    produce_raw(
        &topic,
        "foreign",
        Some(b"{}"),
        Some(headers(&[
            (HeaderName::MESSAGE_ID, &id()),
            (HeaderName::TYPE_VERSION, "1"),
        ])),
    )
    .await;
    produce_raw(
        &topic,
        "foreign",
        Some(b"{\"n\":1}"),
        Some(headers(&[
            (HeaderName::MESSAGE_ID, "not-a-uuid"),
            (HeaderName::TYPE, "Ping"),
            (HeaderName::TYPE_VERSION, "1"),
        ])),
    )
    .await;
    produce_raw(
        &topic,
        "foreign",
        Some(b"{\"n\":1}"),
        Some(headers(&[
            (HeaderName::MESSAGE_ID, &id()),
            (HeaderName::TYPE, "Pong"),
            (HeaderName::TYPE_VERSION, "1"),
        ])),
    )
    .await;
    produce_raw(
        &topic,
        "foreign",
        Some(b"{\"n\":\"seven\"}"),
        Some(headers(&[
            (HeaderName::MESSAGE_ID, &id()),
            (HeaderName::TYPE, "Ping"),
            (HeaderName::TYPE_VERSION, "1"),
        ])),
    )
    .await;
    produce_raw(
        &topic,
        "foreign",
        Some(b"{\"n\":1}"),
        Some(headers(&[
            (HeaderName::MESSAGE_ID, &id()),
            (HeaderName::TYPE, "Ping"),
            (HeaderName::TYPE_VERSION, "9"),
        ])),
    )
    .await;
    // Not UTF-8, which JSON text must be: a payload problem, whatever the
    // content-type header says.
    produce_raw(
        &topic,
        "foreign",
        Some(&[0xff, 0xfe, b'{', b'}']),
        Some(headers_of(&topic, &valid)),
    )
    .await;
    produce(&topic, &after).await;

    let name = unique_name("garbage");
    let consumer = Consumer::builder(config(), backend.inbox())
        .name(&name)
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        .start()
        .expect("the consumer starts");
    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == 10 && status.dead_lettered == garbage.len() as u64
        })
        .await;
    assert_eq!(
        status.handled, 10,
        "the good messages around the garbage: {status:#?}"
    );
    assert_eq!(status.dead_lettered, garbage.len() as u64, "{status:#?}");
    assert_eq!(status.state, ConsumerState::Running, "{status:#?}");
    assert_eq!(status.retried, 0, "garbage is not retried: {status:#?}");

    let letters: BTreeMap<i64, DeadLetter> =
        annals_tests::kafka::read_topic(annals_tests::kafka::brokers(), &format!("{topic}.dlq"))
            .into_values()
            .flatten()
            .map(|record| DeadLetter::from_record(&record).expect("a dead letter reads back"))
            .filter(|letter| letter.consumer == name)
            .map(|letter| (letter.original.offset, letter))
            .collect();
    assert_eq!(
        letters.keys().copied().collect::<Vec<_>>(),
        (5..5 + garbage.len() as i64).collect::<Vec<_>>()
    );
    for ((reason, mentioned), letter) in garbage.iter().zip(letters.values()) {
        assert_eq!(letter.reason, *reason, "{letter:?}");
        assert!(
            letter.error.contains(mentioned),
            "the error of {reason} mentions {mentioned:?}: {}",
            letter.error
        );
        assert_eq!(letter.attempts, 0);
        assert_eq!(letter.key.as_deref(), Some(&b"foreign"[..]));
    }
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");

    // A consumer of a topic with many types may skip the ones it does not
    // know instead: only the type no handler is registered for is skipped;
    // a known type at an unknown version is still a dead letter.
    let skipping = Consumer::builder(config(), backend.inbox())
        .name(unique_name("skipping"))
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        .unknown_types(UnknownTypes::Skip)
        .start()
        .expect("the consumer starts");
    let status = skipping
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == 10 && status.settled() == 18
        })
        .await;
    assert_eq!(
        (status.handled, status.skipped, status.dead_lettered),
        (10, 1, 7),
        "{status:#?}"
    );
    skipping
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
}
