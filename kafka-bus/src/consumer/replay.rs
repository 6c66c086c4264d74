//! Sending dead letters back to the topics they came from, once the cause
//! is fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::dead_letter::DeadLetter;
use crate::{Error, KafkaConfig};

/// How long a replay may go without reading anything before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many replayed records may await their acknowledgement before the
/// replay waits for them and commits its progress.
const COMMIT_EVERY: usize = 500;

/// The replay producer's settings, before [`KafkaConfig`]'s own.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
];

type Filter = Box<dyn Fn(&DeadLetter) -> bool + Send + Sync>;

/// Replays a dead-letter topic: every dead letter written since the last
/// replay of the same name is produced again to its original topic, with
/// its original key, payload and headers (the dead-letter headers removed),
/// and the replay's progress is committed under its own consumer group, so
/// running it again replays only newer dead letters.
///
/// Replayed records go to the end of their topic, after records that came
/// after them; where order per key matters, use
/// [`OnExhausted::BlockKey`](crate::OnExhausted::BlockKey) instead. A
/// replay that crashes between producing and committing produces some
/// records twice; consumers with an inbox handle them once. A filter skips
/// dead letters for this replay name; a replay with another name starts
/// from the beginning again. Dead letters cut to fit their topic
/// ([`DeadLetter::cut`]) are passed over and counted
/// ([`ReplayReport::cut`]): their originals are to be read from where they
/// were consumed.
///
/// ```no_run
/// use annals_kafka::{DeadLetterReason, DeadLetterReplay, KafkaConfig};
///
/// # async fn run() -> Result<(), annals_kafka::Error> {
/// let report = DeadLetterReplay::new(KafkaConfig::new("127.0.0.1:9092")?, "orders.dlq")
///     .name("fix-1234")
///     .filter(|letter| letter.reason == DeadLetterReason::HandlerFailed)
///     .run()
///     .await?;
/// println!("{} replayed, {} left alone", report.replayed, report.filtered_out);
/// # Ok(())
/// # }
/// ```
pub struct DeadLetterReplay {
    config: KafkaConfig,
    topic: String,
    name: String,
    filter: Option<Filter>,
}

impl fmt::Debug for DeadLetterReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterReplay")
            .field("config", &self.config)
            .field("topic", &self.topic)
            .field("name", &self.name)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Dead letters produced again to their original topics.
    pub replayed: u64,
    /// Dead letters the filter left alone.
    pub filtered_out: u64,
    /// Records of the dead-letter topic without readable dead-letter
    /// headers, which cannot be sent anywhere; passed over.
    pub unreadable: u64,
    /// Dead letters cut to fit their topic
    /// ([`DeadLetter::cut`](crate::DeadLetter::cut)): sent again they would
    /// be a truncated record, so they are passed over (with a warning that
    /// names where the original is, to be read from there).
    pub cut: u64,
}

impl DeadLetterReplay {
    /// A replay of `dead_letter_topic` named `default`.
    pub fn new(config: KafkaConfig, dead_letter_topic: impl Into<String>) -> Self {
        DeadLetterReplay {
            config,
            topic: dead_letter_topic.into(),
            name: "default".to_owned(),
            filter: None,
        }
    }

    /// Names the replay: its progress is the consumer group
    /// `annals-replay.<name>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replays only the dead letters `filter` accepts.
    pub fn filter(mut self, filter: impl Fn(&DeadLetter) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// The consumer group that keeps the replay's progress.
    pub fn group_id(&self) -> String {
        format!("annals-replay.{}", self.name)
    }

    /// Replays every dead letter written up to now.
    pub async fn run(self) -> Result<ReplayReport, Error> {
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .map_err(|error| Error::Config(format!("the replay thread failed: {error}")))?
    }

    fn run_blocking(self) -> Result<ReplayReport, Error> {
        let group = self.group_id();
        let consumer: BaseConsumer = self
            .config
            .client_config([
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "50"),
            ])
            .create()
            .map_err(|error| Error::kafka("creating the replay consumer", error))?;
        let producer: FutureProducer = self
            .config
            .client_config(PRODUCER_DEFAULTS.iter().copied())
            .create()
            .map_err(|error| Error::kafka("creating the replay producer", error))?;
        let partitions = self.assign_from_progress(&consumer)?;
        let mut report = ReplayReport::default();
        let mut at_end = BTreeSet::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut pending: Vec<DeliveryFuture> = Vec::new();
        let mut last_read = Instant::now();
        while at_end.len() < partitions.len() {
            if last_read.elapsed() > STALL_TIMEOUT {
                return Err(Error::Config(format!(
                    "replaying {}: nothing read for {STALL_TIMEOUT:?}",
                    self.topic
                )));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(error)) => {
                    return Err(Error::kafka(format!("reading {}", self.topic), error));
                }
                Some(Ok(record)) => {
                    last_read = Instant::now();
                    at_end.remove(&record.partition());
                    next.insert(record.partition(), record.offset() + 1);
                    match DeadLetter::from_record(&record) {
                        Err(error) => {
                            tracing::warn!(%error, "passing over an unreadable dead letter");
                            report.unreadable += 1;
                        }
                        Ok(letter)
                            if !self.filter.as_ref().is_none_or(|filter| filter(&letter)) =>
                        {
                            report.filtered_out += 1;
                        }
                        Ok(letter) if letter.cut.is_some() => {
                            tracing::warn!(dead_letter = %letter.origin, original = %letter.original,
                                cut = ?letter.cut,
                                "passing over a dead letter cut to fit its topic: replay the original");
                            report.cut += 1;
                        }
                        Ok(letter) => {
                            pending.push(send(&producer, &letter)?);
                            report.replayed += 1;
                        }
                    }
                }
            }
            if pending.len() >= COMMIT_EVERY {
                self.checkpoint(&consumer, &mut pending, &next)?;
            }
        }
        self.checkpoint(&consumer, &mut pending, &next)?;
        Ok(report)
    }

    /// Assigns every partition of the topic at the replay's committed
    /// offset (the beginning when there is none); returns the partitions.
    fn assign_from_progress(&self, consumer: &BaseConsumer) -> Result<Vec<i32>, Error> {
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))
            .map_err(|error| {
                Error::kafka(format!("reading the metadata of {}", self.topic), error)
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|topic| topic.name() == self.topic)
            .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::Config(format!(
                "topic {} has no partitions",
                self.topic
            )));
        }
        let mut wanted = TopicPartitionList::new();
        for partition in &partitions {
            wanted.add_partition(&self.topic, *partition);
        }
        let committed = consumer
            .committed_offsets(wanted, Duration::from_secs(10))
            .map_err(|error| Error::kafka("reading the replay's progress", error))?;
        let mut assignment = TopicPartitionList::new();
        for element in committed.elements() {
            let from = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => Offset::Beginning,
            };
            assignment
                .add_partition_offset(&self.topic, element.partition(), from)
                .map_err(|error| Error::kafka("assigning the dead-letter topic", error))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|error| Error::kafka("assigning the dead-letter topic", error))?;
        Ok(partitions)
    }

    /// Waits until every replayed record is acknowledged, then commits the
    /// replay's progress: never past a record that is not safe in its topic.
    fn checkpoint(
        &self,
        consumer: &BaseConsumer,
        pending: &mut Vec<DeliveryFuture>,
        next: &BTreeMap<i32, i64>,
    ) -> Result<(), Error> {
        for delivery in pending.drain(..) {
            match futures::executor::block_on(delivery) {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(Error::kafka("replaying a dead letter", error)),
                Err(_) => {
                    return Err(Error::Config(
                        "the replay producer went away before acknowledging".into(),
                    ));
                }
            }
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets
                .add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .map_err(|error| Error::kafka("listing the replay's progress", error))?;
        }
        consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(|error| Error::kafka("committing the replay's progress", error))
    }
}

/// Produces `letter` to its original topic and partition key.
fn send(producer: &FutureProducer, letter: &DeadLetter) -> Result<DeliveryFuture, Error> {
    let headers = letter.original_headers();
    loop {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&letter.original.topic).headers(headers.clone());
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload);
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => {
                // The local queue drains as the broker acknowledges.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((error, _)) => {
                return Err(Error::kafka(
                    format!("replaying {} to {}", letter.origin, letter.original.topic),
                    error,
                ));
            }
        }
    }
}
