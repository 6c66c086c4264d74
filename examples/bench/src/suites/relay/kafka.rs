//! Topics, the raw producer limit and the plain consumer of the suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annals_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use annals_kafka::rdkafka::client::{ClientContext, DefaultClientContext};
use annals_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use annals_kafka::rdkafka::error::KafkaError;
use annals_kafka::rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use annals_kafka::rdkafka::types::RDKafkaErrorCode;
use annals_kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use annals_kafka::{partition_for_key, relayed_headers};

use super::{DEADLINE, PARTITIONS, outbox};

/// The relay's producer defaults (`OutboxRelayBuilder` docs): the raw
/// producers use the same.
const RELAY_PRODUCER: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("max.in.flight.requests.per.connection", "5"),
    ("compression.type", "lz4"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1000000"),
    ("queue.buffering.max.messages", "200000"),
    ("message.timeout.ms", "30000"),
    ("enable.sparse.connections", "false"),
];

/// How long the latency consumer's fetches may wait at the broker. On
/// tansu a longer wait was seen to add to receipt times, in the figure and
/// its limit alike; a short one keeps the consumer from hiding the relay's
/// share. (The annals consumer runtime uses 100 ms.)
pub(super) const FETCH_WAIT_MS: u64 = 10;

/// A producer configuration with the relay's settings.
pub(super) fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in RELAY_PRODUCER {
        config.set(*key, *value);
    }
    config
}

/// Deletes `topic` once a measurement is done with it. tansu's `memory://`
/// storage keeps every message it was sent and gets slower as it fills (a
/// raw producer took 571 ms for 200,000 messages on a fresh broker and 991
/// ms in the same run after 1.2 million more): without this, each
/// measurement would run against a fuller broker than the one before it, and
/// the limits, measured first in each round, against an emptier one than
/// the relay.
pub(super) async fn delete_topic(brokers: &str, topic: &str) -> Result<(), String> {
    let results = admin(brokers)?
        .delete_topics(&[topic], &admin_options())
        .await
        .map_err(|error| error.to_string())?;
    topic_results(results, "deleting")
}

/// A new topic of [`PARTITIONS`] partitions.
pub(super) async fn fresh_topic(brokers: &str, purpose: &str) -> Result<String, String> {
    let topic = format!("annals-bench-relay-{purpose}-{:08x}", fastrand::u32(..));
    let new = NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1));
    let results = admin(brokers)?
        .create_topics(&[new], &admin_options())
        .await
        .map_err(|error| error.to_string())?;
    topic_results(results, "creating")?;
    Ok(topic)
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|error| error.to_string())
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// The first failure among the per-topic results of an admin request.
fn topic_results(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    doing: &str,
) -> Result<(), String> {
    for result in results {
        result.map_err(|(topic, code)| format!("{doing} {topic}: {code}"))?;
    }
    Ok(())
}

/// Counts the acknowledgements of a producer.
#[derive(Debug, Default)]
pub(super) struct Acks {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Sends `record` with the relay's headers to the partition the relay
/// chooses, waiting while the producer's queue is full.
pub(super) fn send(
    producer: &ThreadedProducer<Acks>,
    record: &annals::OutboxRecord,
) -> Result<(), String> {
    let message = &record.message;
    let partition = partition_for_key(&message.key, PARTITIONS as u32) as i32;
    let headers = relayed_headers(record, "annals-bench-raw");
    let mut base = BaseRecord::to(&message.topic)
        .partition(partition)
        .key(message.key.as_bytes())
        .payload(message.payload.get().as_bytes())
        .headers(headers);
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                base = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(format!("producing: {error}")),
        }
    }
}

/// Messages per second an rdkafka producer with the relay's settings sends
/// to a fresh topic and has acknowledged: `count` messages built as the
/// outbox holds them, sent with the relay's headers.
pub(super) async fn raw_produce(brokers: &str, count: u64) -> Result<f64, String> {
    let topic = fresh_topic(brokers, "raw").await?;
    let records = (0..count)
        .map(|n| outbox::record(&topic, n))
        .collect::<Result<Vec<_>, _>>()?;
    let config = producer_config(brokers);
    let elapsed = tokio::task::spawn_blocking(move || {
        let producer: ThreadedProducer<Acks> = config
            .create_with_context(Acks::default())
            .map_err(|error| error.to_string())?;
        producer
            .client()
            .fetch_metadata(Some(&records[0].message.topic), Duration::from_secs(10))
            .map_err(|error| error.to_string())?;
        let started = Instant::now();
        for record in &records {
            send(&producer, record)?;
        }
        producer
            .flush(DEADLINE)
            .map_err(|error| format!("flushing: {error}"))?;
        let context = producer.context();
        while context.acked.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed) < count
        {
            if started.elapsed() > DEADLINE {
                return Err("the raw producer's acknowledgements did not come".to_owned());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = started.elapsed();
        let failed = context.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(format!("the raw producer failed to send {failed} messages"));
        }
        Ok(elapsed)
    })
    .await
    .map_err(|error| error.to_string())??;
    delete_topic(brokers, &topic).await?;
    eprintln!("raw producer: {count} messages acked in {elapsed:?}");
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// A plain consumer assigned every partition of `topic` from the start:
/// notes when each message arrives, by the number its payload carries,
/// until `stop` is set.
pub(super) fn receive(
    brokers: &str,
    topic: &str,
    received: &AtomicU64,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<(u64, Instant)>, String> {
    #[derive(serde::Deserialize)]
    struct Numbered {
        n: u64,
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("annals-bench-latency-{:08x}", fastrand::u32(..)),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
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
    let mut arrivals = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let at = Instant::now();
                let numbered: Numbered =
                    serde_json::from_slice(message.payload().unwrap_or(b""))
                        .map_err(|error| format!("a payload without a number: {error}"))?;
                arrivals.push((numbered.n, at));
                received.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(error)) => return Err(format!("consumer: {error}")),
            None => {}
        }
    }
    Ok(arrivals)
}
