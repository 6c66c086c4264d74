//! The `consumer` suite: how fast the annals consumer runtime handles a
//! topic, beside a raw rdkafka consumer reading the same topic in the same
//! run (the limit: fetching and nothing else).
//!
//! One topic of 4 partitions is filled once with 100,000 records as the
//! outbox relay writes them (annals headers, JSON payloads, 1,000 keys);
//! every consumer then reads all of it from the start, in a group of its
//! own: the raw consumer, the annals consumer without an inbox, and the
//! annals consumer with the PostgreSQL inbox (a claim per record, a
//! transaction per batch). Rates are taken from the first record to the
//! last, so group joins do not count. Needs `ANNALS_TEST_KAFKA_BROKERS` as
//! well.

use std::future::Future;
use std::time::{Duration, Instant};

use annals::chrono::Utc;
use annals::{
    DomainEvent, GlobalPosition, Inbox, Metadata, OutboxMessage, OutboxRecord, Payload, StreamId,
};
use annals_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use annals_kafka::rdkafka::client::DefaultClientContext;
use annals_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use annals_kafka::rdkafka::error::KafkaError;
use annals_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use annals_kafka::rdkafka::types::RDKafkaErrorCode;
use annals_kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use annals_kafka::{Consumer, KafkaConfig, NoInbox, outbox_headers};
use annals_postgres::PgInbox;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::database::Database;
use crate::report::{Better, Measurement};

/// The suite's name in the results.
const SUITE: &str = "consumer";

const RECORDS: u64 = 100_000;
const PARTITIONS: i32 = 4;
const KEYS: u64 = 1_000;

/// The longest one consumer may take to read the topic.
const DEADLINE: Duration = Duration::from_secs(600);

/// The event in the topic.
#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "BenchTick")]
struct BenchTick {
    n: u64,
    account: String,
}

pub(crate) async fn run(database: &Database) -> Result<Vec<Measurement>, String> {
    let brokers = std::env::var("ANNALS_TEST_KAFKA_BROKERS").map_err(|_| {
        "set ANNALS_TEST_KAFKA_BROKERS to the broker's host:port (scripts/kafka-broker.sh start)"
            .to_owned()
    })?;
    let topic = format!("annals-bench-consumer-{:08x}", fastrand::u32(..));
    create_topic(&brokers, &topic).await?;
    fill(&brokers, &topic).await?;

    let raw = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        tokio::task::spawn_blocking(move || raw_rate(&brokers, &topic))
            .await
            .map_err(|error| error.to_string())??
    };
    let config = KafkaConfig::new(&brokers).map_err(|error| error.to_string())?;
    let without_inbox = runtime_rate(&config, &topic, NoInbox, 100).await?;
    let store = database
        .store("consumer", |config| config)
        .await
        .map_err(|error| error.to_string())?;
    let with_inbox = runtime_rate(&config, &topic, PgInbox::new(&store), 100).await?;
    Ok(vec![
        Measurement::new(
            SUITE,
            "raw rdkafka consumer, 4 partitions (poll only)",
            raw,
            "msg/s",
        ),
        Measurement::new(
            SUITE,
            "annals consumer, no inbox (at-least-once), no-op handler",
            without_inbox,
            "msg/s",
        )
        .with_limit(raw, Better::Higher),
        Measurement::new(
            SUITE,
            "annals consumer, PostgreSQL inbox (effectively-once), no-op handler",
            with_inbox,
            "msg/s",
        )
        .with_limit(raw, Better::Higher),
    ])
}

async fn create_topic(brokers: &str, topic: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|error| error.to_string())?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|error| error.to_string())?;
    for result in results {
        result.map_err(|(topic, code)| format!("creating {topic}: {code}"))?;
    }
    Ok(())
}

/// Produces the records, each with the headers the relay writes.
async fn fill(brokers: &str, topic: &str) -> Result<(), String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .create()
        .map_err(|error| error.to_string())?;
    let mut deliveries = Vec::with_capacity(RECORDS as usize);
    for n in 0..RECORDS {
        let account = format!("account-{}", n % KEYS);
        let record = OutboxRecord {
            position: GlobalPosition::new(n + 1, 0),
            recorded_at: Utc::now(),
            message: OutboxMessage {
                message_id: Uuid::now_v7(),
                topic: topic.to_owned(),
                key: account.clone(),
                event_type: "BenchTick".into(),
                event_version: 1,
                payload: Payload::encode(&BenchTick {
                    n,
                    account: account.clone(),
                })
                .map_err(|error| error.to_string())?,
                stream: StreamId::new(&account).map_err(|error| error.to_string())?,
                stream_version: n / KEYS + 1,
                metadata: Metadata {
                    correlation_id: Some(Uuid::now_v7()),
                    ..Metadata::default()
                },
            },
        };
        let mut produced = FutureRecord::to(topic)
            .key(account.as_bytes())
            .payload(record.message.payload.get().as_bytes())
            .headers(outbox_headers(&record));
        let delivery = loop {
            match producer.send_result(produced) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    produced = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(format!("producing: {error}")),
            }
        };
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        delivery
            .await
            .map_err(|_| "the producer went away".to_owned())?
            .map_err(|(error, _)| format!("producing: {error}"))?;
    }
    Ok(())
}

/// Records per second a plain consumer, assigned every partition, polls.
fn raw_rate(brokers: &str, topic: &str) -> Result<f64, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("annals-bench-raw-{:08x}", fastrand::u32(..)),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|error| error.to_string())?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|error| error.to_string())?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| error.to_string())?;
    let (mut read, mut bytes, mut first) = (0_u64, 0_usize, None);
    let deadline = Instant::now() + DEADLINE;
    while read < RECORDS {
        if Instant::now() > deadline {
            return Err(format!(
                "the raw consumer read {read} records in {DEADLINE:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => {
                first.get_or_insert_with(Instant::now);
                // Touch the payload, as any consumer does.
                bytes += record.payload().map_or(0, <[u8]>::len);
                read += 1;
            }
            Some(Err(error)) => return Err(format!("raw consumer: {error}")),
            None => {}
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |first| first.elapsed());
    std::hint::black_box(bytes);
    Ok((RECORDS - 1) as f64 / elapsed.as_secs_f64())
}

/// Records per second the annals consumer settles with `inbox`, handling
/// up to `batch` waiting records per transaction, with a handler that does
/// nothing: the cost of the runtime and the inbox.
fn runtime_rate<I: Inbox>(
    config: &KafkaConfig,
    topic: &str,
    inbox: I,
    batch: usize,
) -> impl Future<Output = Result<f64, String>> + Send {
    let name = format!("annals-bench-{:08x}", fastrand::u32(..));
    let consumer = Consumer::builder(config.clone(), inbox)
        .name(&name)
        .topic(topic)
        .max_batch(batch)
        .queue_capacity(
            std::env::var("BENCH_QUEUE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000),
        )
        .without_pruning()
        .on::<BenchTick, _>(|_tx, _received| Box::pin(async { Ok(()) }))
        .start();
    async move {
        let consumer = consumer.map_err(|error| error.to_string())?;
        let deadline = Instant::now() + DEADLINE;
        let mut first = None;
        loop {
            let status = consumer.status();
            let settled = status.settled();
            if settled > 0 && first.is_none() {
                first = Some((Instant::now(), settled));
            }
            if settled >= RECORDS {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} settled {settled} records in {DEADLINE:?}: {status:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (started, already) = first.expect("records were settled");
        let rate = (RECORDS - already) as f64 / started.elapsed().as_secs_f64();
        consumer
            .stop(Duration::from_secs(30))
            .await
            .map_err(|error| error.to_string())?;
        Ok(rate)
    }
}
