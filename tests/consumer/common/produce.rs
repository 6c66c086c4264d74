//! Records for the tests: as the outbox relay writes them, or broken.

use std::time::Duration;

use annals::{GlobalPosition, Metadata, OutboxMessage, OutboxRecord, Payload, StreamId};
use annals_kafka::outbox_headers;
use chrono::Utc;
use rdkafka::ClientConfig;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::Ping;

/// A `Ping` message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestMessage {
    pub(crate) id: Uuid,
    pub(crate) key: String,
    pub(crate) n: u64,
}

impl TestMessage {
    /// Message `n` with a new id and key `key`.
    pub(crate) fn new(n: u64, key: impl Into<String>) -> Self {
        TestMessage {
            id: Uuid::now_v7(),
            key: key.into(),
            n,
        }
    }

    /// The outbox record the relay would have read it from.
    fn outbox_record(&self, topic: &str) -> OutboxRecord {
        OutboxRecord {
            position: GlobalPosition::new(self.n + 1, 0),
            recorded_at: Utc::now(),
            message: OutboxMessage {
                message_id: self.id,
                topic: topic.to_owned(),
                key: self.key.clone(),
                event_type: "Ping".into(),
                event_version: 1,
                payload: Payload::encode(&Ping { n: self.n }).expect("a Ping encodes"),
                stream: StreamId::new(format!("ping-{}", self.key)).expect("a valid stream id"),
                stream_version: self.n + 1,
                metadata: Metadata {
                    correlation_id: Some(Uuid::now_v7()),
                    traceparent: Some(
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                    ),
                    ..Metadata::default()
                },
            },
        }
    }
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", annals_tests::kafka::brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // As an outside producer may: records larger than librdkafka's
        // default limit, which the test broker takes.
        .set("message.max.bytes", "20000000")
        .create()
        .expect("a test producer")
}

/// Produces `messages` to `topic`, in order, with the headers the relay
/// writes, and waits until the broker has them all.
pub(crate) async fn produce(topic: &str, messages: &[TestMessage]) {
    let producer = producer();
    let mut deliveries = Vec::with_capacity(messages.len());
    for message in messages {
        let record = message.outbox_record(topic);
        let headers = outbox_headers(&record);
        deliveries.push(send(
            &producer,
            FutureRecord::to(topic)
                .key(message.key.as_bytes())
                .payload(record.message.payload.get().as_bytes())
                .headers(headers),
        ));
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("the producer is alive")
            .expect("the broker took the record");
    }
}

/// Produces `messages` to `topic` in the background, `chunk` at a time with
/// `pause` between chunks, so that records keep arriving while a test
/// changes things under the consumers.
pub(crate) fn produce_over_time(
    topic: &str,
    messages: Vec<TestMessage>,
    chunk: usize,
    pause: Duration,
) -> JoinHandle<()> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        for chunk in messages.chunks(chunk) {
            produce(&topic, chunk).await;
            tokio::time::sleep(pause).await;
        }
    })
}

/// Produces one record as given, for records no annals relay would write.
pub(crate) async fn produce_raw(
    topic: &str,
    key: &str,
    payload: Option<&[u8]>,
    headers: Option<OwnedHeaders>,
) {
    let producer = producer();
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key.as_bytes());
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    send(&producer, record)
        .await
        .expect("the producer is alive")
        .expect("the broker took the record");
}

fn send(producer: &FutureProducer, mut record: FutureRecord<'_, [u8], [u8]>) -> DeliveryFuture {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((error, returned)) => {
                assert!(
                    matches!(
                        error,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "producing a test record: {error}"
                );
                record = returned;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The headers of `message` as the relay writes them, for tests that break
/// one of them.
pub(crate) fn headers_of(topic: &str, message: &TestMessage) -> OwnedHeaders {
    outbox_headers(&message.outbox_record(topic))
}
