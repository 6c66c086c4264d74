//! Where a running consumer's threads and tasks write its status, and the
//! same numbers sent to the `metrics` facade:
//! `annals_consumer_records_total{consumer, outcome}` (handled, duplicate,
//! retried, dead_lettered, dead_letter_cut, skipped, transient_error,
//! pruned),
//! `annals_consumer_handler_seconds{consumer}` and
//! `annals_consumer_lag{consumer, topic, partition}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::progress::PartitionProgress;
use super::status::{ConsumerState, ConsumerStatus, PartitionStatus};

/// A counter kept here for the status and sent to the metrics recorder.
struct Count {
    value: AtomicU64,
    metric: Counter,
}

impl Count {
    fn new(consumer: &str, outcome: &'static str) -> Self {
        Count {
            value: AtomicU64::new(0),
            metric: metrics::counter!(
                "annals_consumer_records_total",
                "consumer" => consumer.to_owned(),
                "outcome" => outcome,
            ),
        }
    }

    fn add(&self, count: u64) {
        self.value.fetch_add(count, Ordering::Relaxed);
        self.metric.increment(count);
    }

    fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// What the broker reports about a partition, and what was committed.
#[derive(Debug)]
struct PartitionEntry {
    progress: Arc<PartitionProgress>,
    committed: Option<i64>,
    high_watermark: Option<i64>,
    log_start: Option<i64>,
    paused: bool,
}

#[derive(Debug)]
struct Table {
    state: ConsumerState,
    partitions: BTreeMap<(String, i32), PartitionEntry>,
    rebalances: u64,
    last_error: Option<String>,
}

/// The status of a running consumer, written by its threads and tasks.
pub(crate) struct Monitor {
    name: String,
    handled: Count,
    duplicates: Count,
    retried: Count,
    dead_lettered: Count,
    dead_letters_cut: Count,
    skipped: Count,
    transient_errors: Count,
    pruned: Count,
    handler_seconds: Histogram,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    pub(crate) fn new(name: &str) -> Self {
        Monitor {
            name: name.to_owned(),
            handled: Count::new(name, "handled"),
            duplicates: Count::new(name, "duplicate"),
            retried: Count::new(name, "retried"),
            dead_lettered: Count::new(name, "dead_lettered"),
            dead_letters_cut: Count::new(name, "dead_letter_cut"),
            skipped: Count::new(name, "skipped"),
            transient_errors: Count::new(name, "transient_error"),
            pruned: Count::new(name, "pruned"),
            handler_seconds: metrics::histogram!(
                "annals_consumer_handler_seconds",
                "consumer" => name.to_owned(),
            ),
            table: Mutex::new(Table {
                state: ConsumerState::Joining,
                partitions: BTreeMap::new(),
                rebalances: 0,
                last_error: None,
            }),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every change under the lock is a single assignment.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn handled(&self, count: u64) {
        self.handled.add(count);
    }

    pub(crate) fn duplicates(&self, count: u64) {
        self.duplicates.add(count);
    }

    pub(crate) fn retried(&self) {
        self.retried.add(1);
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_lettered.add(1);
    }

    pub(crate) fn dead_letter_cut(&self) {
        self.dead_letters_cut.add(1);
    }

    pub(crate) fn skipped(&self) {
        self.skipped.add(1);
    }

    pub(crate) fn pruned(&self, count: u64) {
        self.pruned.add(count);
    }

    pub(crate) fn handler_took(&self, took: Duration) {
        self.handler_seconds.record(took.as_secs_f64());
    }

    /// Counts a failure retried without counting against a record.
    pub(crate) fn transient_error(&self, error: &str) {
        self.transient_errors.add(1);
        self.error(error);
    }

    pub(crate) fn error(&self, error: &str) {
        self.lock().last_error = Some(error.to_owned());
    }

    pub(crate) fn set_state(&self, state: ConsumerState) {
        self.lock().state = state;
    }

    pub(crate) fn state(&self) -> ConsumerState {
        self.lock().state
    }

    pub(crate) fn assigned(&self, topic: &str, partition: i32, progress: Arc<PartitionProgress>) {
        let mut table = self.lock();
        table.rebalances += 1;
        if table.state == ConsumerState::Joining {
            table.state = ConsumerState::Running;
        }
        table.partitions.insert(
            (topic.to_owned(), partition),
            PartitionEntry {
                progress,
                committed: None,
                high_watermark: None,
                log_start: None,
                paused: false,
            },
        );
    }

    pub(crate) fn revoked(&self, topic: &str, partition: i32) {
        let mut table = self.lock();
        table.rebalances += 1;
        table.partitions.remove(&(topic.to_owned(), partition));
    }

    pub(crate) fn committed(&self, topic: &str, partition: i32, offset: i64) {
        if let Some(entry) = self
            .lock()
            .partitions
            .get_mut(&(topic.to_owned(), partition))
        {
            entry.committed = Some(entry.committed.map_or(offset, |known| known.max(offset)));
        }
    }

    pub(crate) fn paused(&self, topic: &str, partition: i32, paused: bool) {
        if let Some(entry) = self
            .lock()
            .partitions
            .get_mut(&(topic.to_owned(), partition))
        {
            entry.paused = paused;
        }
    }

    /// Takes what the client's statistics say of a partition; negative
    /// values are librdkafka's "unknown".
    pub(crate) fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        high: i64,
        log_start: i64,
        committed: i64,
    ) {
        let lag = {
            let mut table = self.lock();
            let Some(entry) = table.partitions.get_mut(&(topic.to_owned(), partition)) else {
                return;
            };
            entry.high_watermark = Some(high).filter(|offset| *offset >= 0);
            entry.log_start = Some(log_start).filter(|offset| *offset >= 0);
            if committed >= 0 {
                entry.committed = Some(
                    entry
                        .committed
                        .map_or(committed, |known| known.max(committed)),
                );
            }
            lag_of(entry)
        };
        if let Some(lag) = lag {
            metrics::gauge!(
                "annals_consumer_lag",
                "consumer" => self.name.clone(),
                "topic" => topic.to_owned(),
                "partition" => partition.to_string(),
            )
            .set(lag as f64);
        }
    }

    pub(crate) fn status(&self) -> ConsumerStatus {
        let table = self.lock();
        let partitions = table
            .partitions
            .iter()
            .map(|((topic, partition), entry)| {
                let (kept, blocked_keys) = entry.progress.blocked();
                PartitionStatus {
                    topic: topic.clone(),
                    partition: *partition,
                    committed: entry.committed,
                    settled: entry.progress.committable(),
                    high_watermark: entry.high_watermark,
                    lag: lag_of(entry),
                    queued: entry.progress.queued(),
                    paused: entry.paused,
                    blocked_keys,
                    kept,
                    stuck: entry.progress.stuck(),
                }
            })
            .collect();
        ConsumerStatus {
            name: self.name.clone(),
            state: table.state,
            partitions,
            handled: self.handled.get(),
            duplicates: self.duplicates.get(),
            retried: self.retried.get(),
            dead_lettered: self.dead_lettered.get(),
            dead_letters_cut: self.dead_letters_cut.get(),
            skipped: self.skipped.get(),
            transient_errors: self.transient_errors.get(),
            pruned: self.pruned.get(),
            rebalances: table.rebalances,
            last_error: table.last_error.clone(),
        }
    }
}

/// Records between the committed offset (or, before any commit, the start
/// of the log) and the high watermark.
fn lag_of(entry: &PartitionEntry) -> Option<u64> {
    let high = entry.high_watermark?;
    let from = entry.committed.or(entry.log_start)?;
    Some(u64::try_from(high - from).unwrap_or(0))
}
