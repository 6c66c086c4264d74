//! Nothing one record carries stops its partition: a record too large to
//! dead-letter whole (payload, key or a header) is dead-lettered cut, with
//! headers saying what was cut, how large it was and where the original
//! is; a dead-letter broker that is down shows the partition as stuck with
//! the cause until it is back; a dead-letter topic that cannot exist is
//! refused at start.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use annals_kafka::{
    Consumer, ConsumerState, DeadLetter, DeadLetterReason, HeaderName, KafkaConfig,
};
use annals_tests::kafka::{OwnBroker, brokers, create_topic, read_topic};
use rdkafka::message::{Header, OwnedHeaders};
use uuid::Uuid;

use crate::common::{
    Backend, Faults, MemoryBackend, TestMessage, assert_exactly_once, config, headers_of,
    init_tracing, produce, produce_raw, topics, unique_name,
};

/// Larger than the dead-letter producer's `message.max.bytes` (librdkafka's
/// 1,000,000 by default); the broker (tansu) takes any size.
const TOO_LARGE: usize = 2 * 1024 * 1024;

/// `headers` with one more header.
fn with_header(headers: OwnedHeaders, key: &str, value: &[u8]) -> OwnedHeaders {
    headers.insert(Header {
        key,
        value: Some(value),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_too_large_to_dead_letter_whole_are_cut_and_the_partition_goes_on() {
    init_tracing();
    let backend = MemoryBackend::new();
    // One partition: every record waits behind the ones before it.
    let topic = topics("too-large", 1).await;
    let batches: Vec<Vec<TestMessage>> = (0..4)
        .map(|batch| {
            (0..100)
                .map(|n| TestMessage::new(batch * 100 + n, format!("key-{}", n % 7)))
                .collect()
        })
        .collect();
    let foreign = TestMessage::new(999, "foreign");
    let garbage_payload: Vec<u8> = (0..TOO_LARGE).map(|n| b"{[\"x"[n % 4]).collect();
    let huge_key = "k".repeat(TOO_LARGE);
    let huge_header = vec![b'h'; TOO_LARGE];
    // Offsets 100, 201 and 302: a payload, a key and a header over the
    // limit, each on a record that goes to the dead-letter topic.
    produce(&topic, &batches[0]).await;
    produce_raw(
        &topic,
        "foreign",
        Some(&garbage_payload),
        Some(headers_of(&topic, &foreign)),
    )
    .await;
    produce(&topic, &batches[1]).await;
    produce_raw(
        &topic,
        &huge_key,
        Some(b"not json"),
        Some(headers_of(&topic, &foreign)),
    )
    .await;
    produce(&topic, &batches[2]).await;
    produce_raw(
        &topic,
        "foreign",
        Some(b"not json"),
        Some(with_header(
            headers_of(&topic, &foreign),
            "foreign-blob",
            &huge_header,
        )),
    )
    .await;
    produce(&topic, &batches[3]).await;

    let name = unique_name("too-large");
    let consumer = Consumer::builder(config(), backend.inbox())
        .name(&name)
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        .start()
        .expect("the consumer starts");
    let status = consumer
        .wait_until(Duration::from_secs(90), |status| {
            status.handled == 400 && status.dead_lettered == 3 && status.lag() == Some(0)
        })
        .await;
    assert_eq!(
        (
            status.handled,
            status.dead_lettered,
            status.dead_letters_cut
        ),
        (400, 3, 3),
        "every record behind the large ones is handled: {status:#?}"
    );
    assert_eq!(status.state, ConsumerState::Running);
    assert_eq!(status.stuck().count(), 0, "{status:#?}");
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    let expected: HashSet<Uuid> = batches.iter().flatten().map(|message| message.id).collect();
    assert_exactly_once(&backend.effects().await, &expected);

    let dead_letter_topic = format!("{topic}.dlq");
    let letters: BTreeMap<i64, DeadLetter> = tokio::task::spawn_blocking(move || {
        read_topic(brokers(), &dead_letter_topic)
            .into_values()
            .flatten()
            .map(|record| DeadLetter::from_record(&record).expect("a dead letter reads back"))
            .map(|letter| (letter.original.offset, letter))
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(letters.keys().copied().collect::<Vec<_>>(), [100, 201, 302]);
    for (offset, letter) in &letters {
        assert_eq!(letter.reason, DeadLetterReason::InvalidPayload, "{offset}");
        assert_eq!(letter.consumer, name);
        assert_eq!(letter.original.topic, topic);
        assert_eq!(letter.original.partition, 0);
        assert_eq!(
            letter.message_id(),
            Some(foreign.id),
            "the original headers that fit are kept"
        );
        assert_eq!(letter.header(HeaderName::TYPE), Some("Ping"));
        let size =
            letter.payload.as_ref().map_or(0, Vec::len) + letter.key.as_ref().map_or(0, Vec::len);
        assert!(size < 1_000_000, "{offset}: {size} bytes");
    }
    let payload_cut = letters[&100].cut.expect("cut");
    assert!(payload_cut.payload && !payload_cut.key && !payload_cut.headers);
    assert_eq!(payload_cut.original_payload_bytes, TOO_LARGE as u64);
    let kept = letters[&100].payload.as_deref().unwrap();
    assert!(!kept.is_empty() && garbage_payload.starts_with(kept));
    let key_cut = letters[&201].cut.expect("cut");
    assert!(key_cut.key && !key_cut.payload, "{key_cut:?}");
    assert_eq!(key_cut.original_key_bytes, TOO_LARGE as u64);
    assert!(
        huge_key
            .as_bytes()
            .starts_with(letters[&201].key.as_deref().unwrap())
    );
    assert_eq!(letters[&201].payload.as_deref(), Some(&b"not json"[..]));
    let header_cut = letters[&302].cut.expect("cut");
    assert!(header_cut.headers && !header_cut.payload && !header_cut.key);
    assert!(header_cut.original_headers_bytes > TOO_LARGE as u64);
    assert_eq!(letters[&302].header("foreign-blob"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_broker_that_is_down_shows_the_partition_stuck_until_it_is_back() {
    init_tracing();
    let backend = MemoryBackend::new();
    let topic = topics("dlq-down", 1).await;
    let dead_letters = Arc::new(tokio::task::spawn_blocking(OwnBroker::start).await.unwrap());
    let dead_letter_topic = format!("{topic}.dlq");
    create_topic(dead_letters.brokers(), &dead_letter_topic, 1).await;
    let name = unique_name("dlq-down");
    let consumer = Consumer::builder(config(), backend.inbox())
        .name(&name)
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        // Dead letters on a cluster of their own; failures reported after
        // 2 s rather than librdkafka's 30.
        .dead_letter_config(
            KafkaConfig::new(dead_letters.brokers())
                .unwrap()
                .with("message.timeout.ms", "2000"),
        )
        .start()
        .expect("the consumer starts");
    let stopping = Arc::clone(&dead_letters);
    tokio::task::spawn_blocking(move || stopping.stop(true))
        .await
        .unwrap();

    let before: Vec<TestMessage> = (0..50).map(|n| TestMessage::new(n, "a")).collect();
    let after: Vec<TestMessage> = (50..100).map(|n| TestMessage::new(n, "a")).collect();
    produce(&topic, &before).await;
    produce_raw(
        &topic,
        "a",
        Some(b"not json"),
        Some(headers_of(&topic, &before[0])),
    )
    .await;
    produce(&topic, &after).await;

    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.stuck().next().is_some() && status.handled == 50
        })
        .await;
    let stuck = status
        .stuck()
        .next()
        .and_then(|partition| partition.stuck.clone())
        .unwrap_or_else(|| panic!("the partition shows as stuck: {status:#?}"));
    assert_eq!(stuck.offset, 50, "{status:#?}");
    assert!(
        stuck.cause.contains(&dead_letter_topic),
        "the cause names the dead-letter topic: {}",
        stuck.cause
    );
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains(&dead_letter_topic)),
        "{status:#?}"
    );
    // Nothing behind it is settled: the partition waits on it, in order.
    assert_eq!(status.handled, 50, "{status:#?}");
    assert_eq!(status.partitions[0].settled, Some(50), "{status:#?}");

    let starting = Arc::clone(&dead_letters);
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    let status = consumer
        .wait_until(Duration::from_secs(90), |status| {
            status.handled == 100 && status.dead_lettered == 1 && status.lag() == Some(0)
        })
        .await;
    assert_eq!(
        (status.handled, status.dead_lettered),
        (100, 1),
        "{status:#?}"
    );
    assert_eq!(status.stuck().count(), 0, "{status:#?}");
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    let expected: HashSet<Uuid> = before
        .iter()
        .chain(&after)
        .map(|message| message.id)
        .collect();
    assert_exactly_once(&backend.effects().await, &expected);
    let reading = Arc::clone(&dead_letters);
    let letters: Vec<DeadLetter> = tokio::task::spawn_blocking(move || {
        read_topic(reading.brokers(), &dead_letter_topic)
            .into_values()
            .flatten()
            .map(|record| DeadLetter::from_record(&record).expect("a dead letter reads back"))
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].original.offset, 50);
    tokio::task::spawn_blocking(move || drop(dead_letters))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_letter_topic_that_cannot_exist_is_refused_at_start() {
    let too_long = "t".repeat(246);
    for (topic, suffix, problem) in [
        (too_long.as_str(), ".dlq", "more than 249"),
        ("orders", ".dead letters", "not allowed"),
    ] {
        let error = Consumer::builder(config(), MemoryBackend::new().inbox())
            .name("refused")
            .topic(topic)
            .dead_letter_suffix(suffix)
            .handler(MemoryBackend::new().effect(Faults::default()))
            .start()
            .expect_err("a dead-letter topic Kafka refuses to create");
        let text = error.to_string();
        assert!(
            text.contains(&format!("{topic}{suffix}")) && text.contains(problem),
            "{text}"
        );
    }
}
