//! Commit-to-receipt latency at a steady rate, through the relay and, as
//! the limit, straight from a producer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annals::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};
use annals_kafka::rdkafka::producer::{Producer as _, ThreadedProducer};
use annals_kafka::{KafkaConfig, OutboxRelay, ShardRole};
use annals_postgres::{PgEventStore, PgOutbox};

use super::{kafka, outbox};
use crate::database::Database;

/// Messages per second written.
pub(super) const RATE: u64 = 5_000;
/// Concurrent writers.
const WRITERS: u64 = 4;
/// Messages per append (and per paced send of the raw producer).
const PER_APPEND: u64 = 5;
/// Written before latencies are counted.
const WARM_UP: Duration = Duration::from_secs(2);
/// Written while latencies are counted.
const MEASURED: Duration = Duration::from_secs(10);
/// How long the consumer may take to receive the last message.
const SETTLE: Duration = Duration::from_secs(15);

/// What a latency run measured.
pub(super) struct Latency {
    pub(super) p50: f64,
    pub(super) p99: f64,
    /// Messages per second written during the counted window.
    pub(super) offered: f64,
}

impl Latency {
    /// The lower percentiles of this round and `other`, and the lower rate
    /// reached.
    pub(super) fn better(self, other: Option<Latency>) -> Latency {
        match other {
            None => self,
            Some(other) => Latency {
                p50: self.p50.min(other.p50),
                p99: self.p99.min(other.p99),
                offered: self.offered.min(other.offered),
            },
        }
    }
}

/// When each message was sent (or committed), and when it was received.
type Times = Vec<(u64, Instant)>;

/// Append commit to receipt through the relay: [`WRITERS`] writers append
/// [`PER_APPEND`] messages at a time, paced to [`RATE`] in all; the relay
/// runs with its defaults (1 shard, woken by the store's append signal).
pub(super) async fn relay(database: &Database, brokers: &str) -> Result<Latency, String> {
    let schema = database.new_schema("relay_latency");
    let store = PgEventStore::connect(
        database
            .config(&schema)
            .map_err(|error| error.to_string())?,
    )
    .await
    .map_err(|error| error.to_string())?;
    let topic = kafka::fresh_topic(brokers, "latency").await?;
    let relay = OutboxRelay::builder(
        PgOutbox::new(&store),
        KafkaConfig::new(brokers).map_err(|error| error.to_string())?,
    )
    .name("bench-latency")
    .start()
    .map_err(|error| error.to_string())?;
    let waited = Instant::now();
    while !relay
        .status()
        .shards
        .iter()
        .all(|shard| shard.role == ShardRole::Publishing)
    {
        if waited.elapsed() > Duration::from_secs(30) {
            return Err(format!("the relay did not start: {:?}", relay.status()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (consumer, received, stop) = consume(brokers, &topic);

    let from = Instant::now() + WARM_UP;
    let until = from + MEASURED;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| tokio::spawn(write(store.clone(), topic.clone(), writer, until)))
        .collect();
    let mut committed = Vec::new();
    for writer in writers {
        committed.extend(writer.await.map_err(|error| error.to_string())??);
    }
    let arrivals = settle(consumer, &received, &stop, committed.len() as u64).await?;
    let status = relay.stop().await;
    if status.parked() > 0 {
        return Err(format!("the relay parked messages: {status:?}"));
    }
    kafka::delete_topic(brokers, &topic).await?;
    percentiles("relay", &committed, &arrivals, from, until)
}

/// One writer: appends [`PER_APPEND`] messages at a time to a stream of
/// its own until `until`; notes when each append returned.
async fn write(
    store: PgEventStore,
    topic: String,
    writer: u64,
    until: Instant,
) -> Result<Times, String> {
    let period = Duration::from_secs_f64((WRITERS * PER_APPEND) as f64 / RATE as f64);
    let stream = StreamId::new(format!("relay-latency-{:08x}-{writer}", fastrand::u32(..)))
        .map_err(|error| error.to_string())?;
    let mut ticks = tokio::time::interval(period);
    let mut n = writer * 1_000_000_000;
    let mut committed = Vec::new();
    while Instant::now() < until {
        ticks.tick().await;
        let event = NewEvent::raw(
            "BenchWritten",
            1,
            Payload::encode(&n).map_err(|error| error.to_string())?,
            Metadata::default(),
        );
        let mut request = AppendRequest::new(stream.clone(), ExpectedVersion::Any).event(event);
        for k in n..n + PER_APPEND {
            request = request.outbox_message(outbox::message(&topic, k)?);
        }
        store
            .append(request)
            .await
            .map_err(|error| error.to_string())?;
        let at = Instant::now();
        committed.extend((n..n + PER_APPEND).map(|k| (k, at)));
        n += PER_APPEND;
    }
    Ok(committed)
}

/// Send to receipt straight through an rdkafka producer with the relay's
/// settings, paced to [`RATE`] as the writers are: the limit of the
/// latency through the relay.
pub(super) async fn raw(brokers: &str) -> Result<Latency, String> {
    let topic = kafka::fresh_topic(brokers, "latency-raw").await?;
    let config = kafka::producer_config(brokers);
    let producer: ThreadedProducer<kafka::Acks> = config
        .create_with_context(kafka::Acks::default())
        .map_err(|error| error.to_string())?;
    let (consumer, received, stop) = consume(brokers, &topic);
    let from = Instant::now() + WARM_UP;
    let until = from + MEASURED;
    let sending = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let period = Duration::from_secs_f64(PER_APPEND as f64 / RATE as f64);
            let mut next = Instant::now();
            let mut sent = Vec::new();
            let mut n = 0;
            while Instant::now() < until {
                let records = (n..n + PER_APPEND)
                    .map(|k| outbox::record(&topic, k))
                    .collect::<Result<Vec<_>, _>>()?;
                for record in &records {
                    kafka::send(&producer, record)?;
                }
                let at = Instant::now();
                sent.extend((n..n + PER_APPEND).map(|k| (k, at)));
                n += PER_APPEND;
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            // Dropping a producer purges what it has not sent yet.
            producer
                .flush(SETTLE)
                .map_err(|error| format!("flushing: {error}"))?;
            Ok::<_, String>(sent)
        })
    };
    let sent = sending.await.map_err(|error| error.to_string())??;
    let arrivals = settle(consumer, &received, &stop, sent.len() as u64).await?;
    kafka::delete_topic(brokers, &topic).await?;
    percentiles("raw", &sent, &arrivals, from, until)
}

/// A consumer of `topic` on a thread of its own, how many it received and
/// what stops it.
fn consume(
    brokers: &str,
    topic: &str,
) -> (
    tokio::task::JoinHandle<Result<Times, String>>,
    Arc<AtomicU64>,
    Arc<AtomicBool>,
) {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || kafka::receive(&brokers, &topic, &received, &stop))
    };
    (consumer, received, stop)
}

/// Waits until the consumer received `expected` messages (or [`SETTLE`]
/// passed), then stops it and returns what it received.
async fn settle(
    consumer: tokio::task::JoinHandle<Result<Times, String>>,
    received: &AtomicU64,
    stop: &AtomicBool,
    expected: u64,
) -> Result<Times, String> {
    let waited = Instant::now();
    while received.load(Ordering::Relaxed) < expected && waited.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    consumer.await.map_err(|error| error.to_string())?
}

/// p50 and p99 of receipt minus send over the messages sent in
/// [`from`, `until`); every one of them must have arrived.
fn percentiles(
    what: &str,
    sent: &[(u64, Instant)],
    arrivals: &[(u64, Instant)],
    from: Instant,
    until: Instant,
) -> Result<Latency, String> {
    let mut first: HashMap<u64, Instant> = HashMap::with_capacity(arrivals.len());
    for &(n, at) in arrivals {
        first.entry(n).or_insert(at);
    }
    let (mut latencies, mut missing, mut early) = (Vec::new(), 0_u64, 0_u64);
    for &(n, at) in sent {
        if at < from || at >= until {
            continue;
        }
        match first.get(&n) {
            Some(&received) => {
                if received < at {
                    early += 1;
                }
                latencies.push(received.saturating_duration_since(at).as_secs_f64() * 1_000.0);
            }
            None => missing += 1,
        }
    }
    if missing > 0 || latencies.is_empty() {
        return Err(format!(
            "{what} latency: {missing} of {} messages sent in the window were not received",
            latencies.len() as u64 + missing
        ));
    }
    latencies.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let latency = Latency {
        p50: rank(0.50),
        p99: rank(0.99),
        offered: latencies.len() as f64 / MEASURED.as_secs_f64(),
    };
    eprintln!(
        "{what} latency: {} messages, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
        latencies.len(),
        latency.p50,
        latency.p99,
        latencies[latencies.len() - 1],
        if early > 0 {
            format!(", {early} received before their send/append returned (counted as 0)")
        } else {
            String::new()
        }
    );
    Ok(latency)
}
