//! The `relay` suite: how fast the outbox relay drains a full outbox, and
//! how long a message takes from its append's commit to a consumer, beside
//! the raw limits of the same work measured in the same run.
//!
//! * Drain: 200,000 outbox messages (1,000 keys, JSON payloads, a
//!   correlation id) are appended to a fresh PostgreSQL store, 1,000 to an
//!   append, before the clock starts. A relay is then started on a fresh
//!   topic of 6 partitions and timed until its status counts every message
//!   published (acknowledged by the broker), and until the outbox is empty
//!   (pruned as well); with the default configuration (1 shard, batches of
//!   10,000) and a few others, the better of two rounds each. The limit is
//!   the lower of two raw rates (also the better of two rounds): an rdkafka
//!   producer with the relay's producer settings sending the same messages
//!   (same keys, payloads, headers and partitions) to a fresh topic of 6
//!   partitions until all are acknowledged, and tokio-postgres reading the
//!   same rows from an identically filled outbox in pages ordered by
//!   (tx_id, position) while a second connection deletes them in batches.
//! * Latency: writers append at a steady 5,000 messages/s while the relay
//!   runs with its defaults (woken by LISTEN/NOTIFY) and a plain rdkafka
//!   consumer assigned every partition of a fresh topic takes the messages
//!   (fetch wait 10 ms): the time from the moment `append` returned to the
//!   moment the consumer had the message, p50 and p99 (the lower of two
//!   rounds). Its limit is the same
//!   measurement with an rdkafka producer (relay settings) in place of
//!   append + relay: send to receipt.
//!
//! Needs `ANNALS_TEST_KAFKA_BROKERS` as well.

mod kafka;
mod latency;
mod outbox;

use std::time::{Duration, Instant};

use annals_kafka::{KafkaConfig, OutboxRelay};
use annals_postgres::{PgEventStore, PgOutbox};

use crate::database::Database;
use crate::report::{Better, Measurement};

/// The suite's name in the results.
const SUITE: &str = "relay";

/// The messages of a drain.
const MESSAGES: u64 = 200_000;
/// Outbox messages written by one append when filling.
const APPEND_BATCH: u64 = 1_000;
/// Distinct message keys.
const KEYS: u64 = 1_000;
/// Partitions of every topic.
const PARTITIONS: i32 = 6;
/// The relay's default read page (`OutboxRelayBuilder::batch_size`).
const READ_PAGE: usize = 10_000;
/// The relay's default prune batch (`OutboxRelayBuilder::prune_batch`).
const DELETE_BATCH: usize = 5_000;
/// The relay configurations the drain is measured with: shards and read
/// batch (the relay's default is 1 shard, batches of 10,000).
const CONFIGS: &[(u32, usize)] = &[(1, READ_PAGE), (1, 2_000), (2, READ_PAGE), (4, READ_PAGE)];

/// Rounds of the drain and its limits; the better of each is kept.
const ROUNDS: usize = 2;

/// The longest a drain or a raw run may take.
const DEADLINE: Duration = Duration::from_secs(120);

pub(crate) async fn run(database: &Database) -> Result<Vec<Measurement>, String> {
    let brokers = std::env::var("ANNALS_TEST_KAFKA_BROKERS").map_err(|_| {
        "set ANNALS_TEST_KAFKA_BROKERS to the broker's host:port (scripts/kafka-broker.sh start)"
            .to_owned()
    })?;

    // Warm-up: the broker, the client and the database, unmeasured.
    kafka::raw_produce(&brokers, 20_000).await?;

    // The better of two rounds of every rate, alternating the limits and
    // the relay, as the machine may be shared.
    let (mut raw_store, mut raw_kafka) = (0.0_f64, 0.0_f64);
    let mut drains = vec![(0.0_f64, 0.0_f64, f64::INFINITY); CONFIGS.len()];
    for _ in 0..ROUNDS {
        raw_store = raw_store.max(outbox::raw_read_delete(database).await?);
        raw_kafka = raw_kafka.max(kafka::raw_produce(&brokers, MESSAGES).await?);
        for (best, &(shards, batch)) in drains.iter_mut().zip(CONFIGS) {
            let drain = drain(database, &brokers, shards, batch).await?;
            *best = (
                best.0.max(drain.published),
                best.1.max(drain.emptied),
                best.2.min(drain.first_ack),
            );
        }
    }
    let limit = raw_store.min(raw_kafka);
    let mut measurements = vec![
        Measurement::new(
            SUITE,
            format!(
                "raw Postgres: read {MESSAGES} outbox rows in pages of {READ_PAGE} \
                 by (tx_id, position), delete in batches of {DELETE_BATCH}"
            ),
            raw_store,
            "msg/s",
        ),
        Measurement::new(
            SUITE,
            format!(
                "raw rdkafka producer: {MESSAGES} messages, relay settings, \
                 {PARTITIONS} partitions, until acked"
            ),
            raw_kafka,
            "msg/s",
        ),
    ];
    for (&(published, emptied, first_ack), &(shards, batch)) in drains.iter().zip(CONFIGS) {
        let setup = format!(
            "{shards} shard{}, batch {batch}, {PARTITIONS} partitions",
            if shards == 1 { "" } else { "s" }
        );
        measurements.push(
            Measurement::new(
                SUITE,
                format!("relay drain of {MESSAGES} messages, {setup}: until all acked"),
                published,
                "msg/s",
            )
            .with_limit(limit, Better::Higher),
        );
        measurements.push(
            Measurement::new(
                SUITE,
                format!("relay drain of {MESSAGES} messages, {setup}: until outbox empty"),
                emptied,
                "msg/s",
            )
            .with_limit(limit, Better::Higher),
        );
        measurements.push(Measurement::new(
            SUITE,
            format!("relay drain, {setup}: start() to first ack (part of its drain time)"),
            first_ack,
            "ms",
        ));
    }

    let (mut raw_latency, mut relay_latency) = (None, None);
    for _ in 0..ROUNDS {
        let raw = latency::raw(&brokers).await?;
        raw_latency = Some(raw.better(raw_latency));
        let relayed = latency::relay(database, &brokers).await?;
        relay_latency = Some(relayed.better(relay_latency));
    }
    let (raw_latency, relay_latency) = (
        raw_latency.expect("rounds ran"),
        relay_latency.expect("rounds ran"),
    );
    let latency = |percentile: &str| {
        format!(
            "append commit to consumer receipt at {} msg/s, 1 shard, {percentile} \
             (consumer fetch.wait.max.ms={})",
            latency::RATE,
            kafka::FETCH_WAIT_MS
        )
    };
    measurements.extend([
        Measurement::new(SUITE, latency("p50"), relay_latency.p50, "ms")
            .with_limit(raw_latency.p50, Better::Lower),
        Measurement::new(SUITE, latency("p99"), relay_latency.p99, "ms")
            .with_limit(raw_latency.p99, Better::Lower),
        Measurement::new(
            SUITE,
            "append commit to consumer receipt: rate the writers reached",
            relay_latency.offered,
            "msg/s",
        ),
    ]);
    Ok(measurements)
}

/// What one drain measured.
struct Drain {
    /// Messages per second until the relay counted all published.
    published: f64,
    /// Messages per second until the outbox was empty.
    emptied: f64,
    /// Milliseconds from `start()` to the first message acked.
    first_ack: f64,
}

/// Fills a fresh outbox, then times a relay of `shards` shards reading
/// `batch` records at a time draining it.
async fn drain(
    database: &Database,
    brokers: &str,
    shards: u32,
    batch: usize,
) -> Result<Drain, String> {
    let schema = database.new_schema("relay");
    let store = PgEventStore::connect(
        database
            .config(&schema)
            .map_err(|error| error.to_string())?,
    )
    .await
    .map_err(|error| error.to_string())?;
    let topic = kafka::fresh_topic(brokers, "drain").await?;
    outbox::fill(&store, &topic, MESSAGES).await?;
    let client = database
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let count = render(include_str!("../../../sql/outbox_count.sql"), &schema);
    // As a deployment with that many shards would have them (a step before
    // the relay starts, so not timed).
    let outbox = PgOutbox::new(&store);
    outbox
        .create_shard_indexes(shards)
        .await
        .map_err(|error| error.to_string())?;
    let config = KafkaConfig::new(brokers).map_err(|error| error.to_string())?;

    let started = Instant::now();
    let relay = OutboxRelay::builder(outbox, config)
        .name(format!("bench-drain-{shards}"))
        .shards(shards)
        .batch_size(batch)
        .start()
        .map_err(|error| error.to_string())?;
    let mut first = None;
    let published = loop {
        let status = relay.status();
        if first.is_none() && status.published() > 0 {
            first = Some(started.elapsed());
        }
        if status.published() >= MESSAGES {
            break started.elapsed();
        }
        if started.elapsed() > DEADLINE || status.parked() > 0 {
            return Err(format!(
                "the relay published {} of {MESSAGES} in {:?}: {status:?}",
                status.published(),
                started.elapsed()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let emptied = loop {
        let left: i64 = client
            .query_one(&count, &[])
            .await
            .map_err(|error| error.to_string())?
            .get(0);
        if left == 0 {
            break started.elapsed();
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("{left} outbox rows were left after {DEADLINE:?}"));
        }
        // Counting reads the whole table: not too often, or it slows the
        // pruning it waits for.
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let status = relay.stop().await;
    if status.published() != MESSAGES || status.parked() != 0 {
        return Err(format!("the drain ended with {status:?}"));
    }
    kafka::delete_topic(brokers, &topic).await?;
    eprintln!(
        "relay drain, {shards} shard(s), batch {batch}: first ack after {:?}, \
         all acked after {published:?}, outbox empty after {emptied:?}",
        first.unwrap_or_default()
    );
    Ok(Drain {
        published: MESSAGES as f64 / published.as_secs_f64(),
        emptied: MESSAGES as f64 / emptied.as_secs_f64(),
        first_ack: first.unwrap_or_default().as_secs_f64() * 1_000.0,
    })
}

/// `template` with `{schema}` replaced by the quoted schema name.
fn render(template: &str, schema: &str) -> String {
    template.replace("{schema}", &format!("\"{schema}\""))
}
