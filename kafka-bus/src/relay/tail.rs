//! Recovery's look at the topic: which pending outbox records an earlier
//! producer session already published, read from the tail of each
//! partition.
//!
//! Records of one relay shard land in a partition in outbox order (one
//! session at a time, each continuing after what the last one left there),
//! so the newest record of this relay and shard in a partition tells how far
//! publishing got there. The tail is read backwards in chunks until a record
//! at or before the session's starting point shows up, so that every
//! pending record found there is known.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use annals::{GlobalPosition, OutboxShard};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::HeaderName;

/// The first chunk read backwards, in records; each next one is twice as
/// long, up to [`MAX_CHUNK`].
const FIRST_CHUNK: i64 = 512;
const MAX_CHUNK: i64 = 32_768;

/// What to look for in the tails.
#[derive(Debug, Clone)]
pub(super) struct TailQuery {
    pub(super) relay: String,
    pub(super) shard: OutboxShard,
    /// Everything at or before it is done; the records after it are pending.
    pub(super) after: GlobalPosition,
    /// Records whose broker timestamp is older than this (milliseconds since
    /// the epoch) were written before any pending record existed: reading
    /// further back cannot find one.
    pub(super) cutoff_millis: i64,
    pub(super) deadline: Instant,
}

/// What one partition holds of this relay shard's pending records.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PublishedTail {
    /// The newest outbox position of this relay and shard in the partition.
    pub(super) last: Option<GlobalPosition>,
    /// The pending positions (after the query's `after`) found there.
    pub(super) present: HashSet<GlobalPosition>,
}

/// What to do with a pending record routed to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It is there already: do not send it again.
    Published,
    /// It is not there although a later record of the shard is: it was
    /// refused in an earlier session that ended before parking it.
    Missing,
    /// Not published yet.
    Pending,
}

impl PublishedTail {
    pub(super) fn verdict(&self, position: GlobalPosition) -> Verdict {
        if self.present.contains(&position) {
            Verdict::Published
        } else if self.last.is_some_and(|last| position < last) {
            Verdict::Missing
        } else {
            Verdict::Pending
        }
    }
}

/// The longest a fetch may wait on the broker, in milliseconds: short
/// first, so that partition EOF arrives quickly, longer when the broker does
/// not answer that fast. tansu 0.6.0 with S3 storage, after a restart,
/// answers every fetch with a 10 ms wait empty, forever (its reads from
/// storage take longer); 50 ms already gets data.
const FETCH_WAITS_MS: [u64; 4] = [10, 100, 500, 1_000];

/// From this fetch wait on, a broker that answers fetches of a partition
/// with a high watermark above the next offset and no records is believed:
/// the records it claims are not there.
const HOLE_FETCH_WAIT_MS: u64 = 500;

/// Keeps the high watermark of each partition as the broker's fetch
/// responses report it (librdkafka's statistics): unlike ListOffsets, it
/// is the true end on tansu too.
struct TailContext {
    topic: String,
    high_watermarks: Mutex<HashMap<i32, i64>>,
}

impl TailContext {
    fn high_watermark(&self, partition: i32) -> Option<i64> {
        let high = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        high.get(&partition).copied()
    }
}

impl ClientContext for TailContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut high = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (partition, stats) in &topic.partitions {
            if stats.hi_offset >= 0 {
                high.insert(*partition, stats.hi_offset);
            }
        }
    }
}

impl ConsumerContext for TailContext {}

type TailConsumer = BaseConsumer<TailContext>;

/// Reads the tails of `partitions` of `topic` (blocking; run it off the
/// async threads).
pub(super) fn read_tails(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    query: &TailQuery,
) -> Result<HashMap<i32, PublishedTail>, KafkaError> {
    let mut waits = FETCH_WAITS_MS.iter().copied();
    let mut wait = waits.next().expect("a first fetch wait");
    let mut consumer = ClosedApart::new(tail_consumer(config, topic, wait)?);
    let timeout = remaining(query)?;
    // One round trip per partition, all at once: a relay starting on a
    // topic of many partitions would otherwise wait for them in turn.
    let watermarks: Vec<_> = std::thread::scope(|scope| {
        let queries: Vec<_> = partitions
            .iter()
            .map(|&partition| {
                let consumer = consumer.get();
                scope.spawn(move || consumer.fetch_watermarks(topic, partition, timeout))
            })
            .collect();
        queries
            .into_iter()
            .map(|query| {
                query
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut scans = Vec::with_capacity(partitions.len());
    for (&partition, watermarks) in partitions.iter().zip(watermarks) {
        // The high watermark is only a lower bound of the end on some
        // brokers (tansu reports the last batch's base offset + 1): the
        // first region starts there and runs to partition EOF.
        let (low, high) = watermarks?;
        tracing::debug!(topic, partition, low, high, "reading the partition's tail");
        scans.push(Scan::new(partition, low, high));
    }
    while scans.iter().any(|scan| !scan.done) {
        let stall = Duration::from_millis(wait * 20).max(Duration::from_secs(2));
        match read_round(consumer.get(), topic, &mut scans, query, stall)? {
            Round::Read => {
                for scan in scans.iter_mut().filter(|scan| !scan.done) {
                    scan.finish_region(query);
                }
            }
            Round::Stalled => {
                let mut unresolved = Vec::new();
                for scan in scans
                    .iter_mut()
                    .filter(|scan| !scan.done && !scan.region_complete)
                {
                    let high = consumer.get().context().high_watermark(scan.partition);
                    match high {
                        // tansu 0.6.0 restarted while a producer sends can
                        // keep a high watermark above what it stored: its
                        // fetches from there return nothing, for good, until
                        // records are appended after the hole. What it does
                        // not serve no consumer reads; the end of what it
                        // serves is the end for recovery.
                        Some(high)
                            if wait >= HOLE_FETCH_WAIT_MS
                                && scan.end.is_none()
                                && high > scan.next_offset =>
                        {
                            tracing::warn!(
                                topic,
                                partition = scan.partition,
                                high,
                                served_until = scan.next_offset,
                                "the broker claims records it does not serve; reading the partition up to \
                                 where it serves"
                            );
                            scan.region_complete = true;
                        }
                        _ => unresolved.push((scan.partition, scan.next_offset, high)),
                    }
                }
                if unresolved.is_empty() {
                    for scan in scans.iter_mut().filter(|scan| !scan.done) {
                        scan.finish_region(query);
                    }
                    continue;
                }
                wait = waits.next().unwrap_or(wait);
                tracing::debug!(
                    topic,
                    ?unresolved,
                    wait_ms = wait,
                    "partitions (next offset, high watermark) without progress; fetching with a longer wait"
                );
                consumer = ClosedApart::new(tail_consumer(config, topic, wait)?);
                for scan in scans
                    .iter_mut()
                    .filter(|scan| !scan.done && !scan.region_complete)
                {
                    scan.restart_region();
                }
            }
        }
    }
    Ok(scans
        .into_iter()
        .map(|scan| (scan.partition, scan.tail))
        .collect())
}

/// A tail consumer that is closed on a thread of its own when dropped:
/// closing an rdkafka client blocks (up to hundreds of milliseconds) while
/// librdkafka winds down, and nothing needs to wait for that.
struct ClosedApart(Option<TailConsumer>);

impl ClosedApart {
    fn new(consumer: TailConsumer) -> Self {
        ClosedApart(Some(consumer))
    }

    fn get(&self) -> &TailConsumer {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for ClosedApart {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        // Should the thread not start, the consumer is dropped here.
        let closing = std::thread::Builder::new()
            .name("annals-tail-close".into())
            .spawn(move || drop(consumer));
        if let Err(error) = closing {
            tracing::debug!(%error, "closed a tail consumer on this thread");
        }
    }
}

fn tail_consumer(
    config: &ClientConfig,
    topic: &str,
    fetch_wait_ms: u64,
) -> Result<TailConsumer, KafkaError> {
    let mut config = config.clone();
    config.set("fetch.wait.max.ms", fetch_wait_ms.to_string());
    config.set("statistics.interval.ms", "200");
    config.create_with_context(TailContext {
        topic: topic.to_owned(),
        high_watermarks: Mutex::default(),
    })
}

fn remaining(query: &TailQuery) -> Result<Duration, KafkaError> {
    query
        .deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or(KafkaError::MessageConsumption(
            RDKafkaErrorCode::OperationTimedOut,
        ))
}

/// How a round of reading ended.
enum Round {
    /// Every unfinished scan read its region.
    Read,
    /// Nothing arrived for `stall`: no record, no EOF.
    Stalled,
}

/// Reads the current region of every unfinished scan.
fn read_round(
    consumer: &TailConsumer,
    topic: &str,
    scans: &mut [Scan],
    query: &TailQuery,
    stall: Duration,
) -> Result<Round, KafkaError> {
    let mut assignment = TopicPartitionList::new();
    for scan in scans.iter().filter(|scan| !scan.done) {
        assignment.add_partition_offset(topic, scan.partition, Offset::Offset(scan.start))?;
    }
    consumer.assign(&assignment)?;
    let mut last_progress = Instant::now();
    while scans.iter().any(|scan| !scan.done && !scan.region_complete) {
        if last_progress.elapsed() >= stall {
            return Ok(Round::Stalled);
        }
        let wait = remaining(query)?.min(Duration::from_millis(100));
        match consumer.poll(wait) {
            None => {}
            Some(Ok(message)) => {
                last_progress = Instant::now();
                if let Some(scan) = scans
                    .iter_mut()
                    .find(|scan| scan.partition == message.partition())
                {
                    scan.take(&message, query);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_progress = Instant::now();
                if let Some(scan) = scans.iter_mut().find(|scan| scan.partition == partition) {
                    scan.region_complete = true;
                }
            }
            Some(Err(error)) => match error.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
                ) => {
                    return Err(error);
                }
                // librdkafka retries the rest itself; the deadline bounds it.
                _ => tracing::debug!(topic, %error, "reading a partition tail"),
            },
        }
    }
    Ok(Round::Read)
}

/// The backwards scan of one partition.
#[derive(Debug)]
struct Scan {
    partition: i32,
    low: i64,
    /// The first offset of the region being read.
    start: i64,
    /// The offset after the last record read of the region.
    next_offset: i64,
    /// The region's exclusive end; `None` for the first region, which runs
    /// to the end of the partition.
    end: Option<i64>,
    chunk: i64,
    region_complete: bool,
    /// This relay shard's positions in the region, in offset order.
    found: Vec<GlobalPosition>,
    /// The newest broker timestamp in the region.
    newest_timestamp: Option<i64>,
    tail: PublishedTail,
    done: bool,
}

impl Scan {
    fn new(partition: i32, low: i64, high: i64) -> Self {
        let start = (high - 1).max(low);
        Scan {
            partition,
            low,
            start,
            next_offset: start,
            end: None,
            chunk: FIRST_CHUNK,
            region_complete: false,
            found: Vec::new(),
            newest_timestamp: None,
            tail: PublishedTail::default(),
            // An empty partition holds nothing of anyone.
            done: high <= low,
        }
    }

    fn take(&mut self, message: &BorrowedMessage<'_>, query: &TailQuery) {
        if self.region_complete || self.done {
            return;
        }
        let offset = message.offset();
        if self.end.is_some_and(|end| offset >= end) {
            // Past the region (offsets are not contiguous around transaction
            // markers): the rest was read in an earlier round.
            self.region_complete = true;
            return;
        }
        self.next_offset = offset + 1;
        if let Some(timestamp) = message.timestamp().to_millis() {
            self.newest_timestamp = Some(
                self.newest_timestamp
                    .map_or(timestamp, |t| t.max(timestamp)),
            );
        }
        if let Some(position) = own_position(message, query) {
            self.found.push(position);
        }
        if self.end.is_some_and(|end| offset + 1 >= end) {
            self.region_complete = true;
        }
    }

    /// Forgets what was read of the current region, to read it again.
    fn restart_region(&mut self) {
        self.next_offset = self.start;
        self.found.clear();
        self.newest_timestamp = None;
        self.region_complete = false;
    }

    /// Takes in what the region held and decides whether to read further
    /// back.
    fn finish_region(&mut self, query: &TailQuery) {
        for &position in self.found.iter().rev() {
            self.tail.last = Some(self.tail.last.map_or(position, |last| last.max(position)));
            if position > query.after {
                self.tail.present.insert(position);
            } else {
                // Everything before it was done before the session began.
                self.done = true;
                break;
            }
        }
        let before_pending = self
            .newest_timestamp
            .is_some_and(|newest| newest < query.cutoff_millis);
        if self.start <= self.low || before_pending {
            self.done = true;
        }
        if !self.done {
            self.end = Some(self.start);
            self.start = (self.start - self.chunk).max(self.low);
            self.next_offset = self.start;
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        }
        self.found.clear();
        self.newest_timestamp = None;
        self.region_complete = false;
    }
}

/// The outbox position of `message` if this relay published it for this
/// shard.
fn own_position(message: &BorrowedMessage<'_>, query: &TailQuery) -> Option<GlobalPosition> {
    let key = std::str::from_utf8(message.key()?).ok()?;
    if !query.shard.contains(key) {
        return None;
    }
    let headers = message.headers()?;
    let mut relay = None;
    let mut position = None;
    for header in headers.iter() {
        match header.key {
            HeaderName::RELAY => relay = header.value,
            HeaderName::OUTBOX_POSITION => position = header.value,
            _ => {}
        }
    }
    if relay? != query.relay.as_bytes() {
        return None;
    }
    std::str::from_utf8(position?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_what_the_partition_holds() {
        let tail = PublishedTail {
            last: Some(GlobalPosition::new(5, 0)),
            present: [GlobalPosition::new(3, 0), GlobalPosition::new(5, 0)].into(),
        };
        assert_eq!(tail.verdict(GlobalPosition::new(3, 0)), Verdict::Published);
        assert_eq!(tail.verdict(GlobalPosition::new(4, 0)), Verdict::Missing);
        assert_eq!(tail.verdict(GlobalPosition::new(5, 0)), Verdict::Published);
        assert_eq!(tail.verdict(GlobalPosition::new(6, 0)), Verdict::Pending);
        assert_eq!(
            PublishedTail::default().verdict(GlobalPosition::new(1, 0)),
            Verdict::Pending
        );
    }
}
