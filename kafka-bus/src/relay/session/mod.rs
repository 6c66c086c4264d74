//! One producer session of a shard's leader: read the outbox after what is
//! done, send each record to its partition, track the acks, save the
//! checkpoint over the contiguous acked prefix.
//!
//! A session ends at the first sign that its producer cannot be trusted
//! (transport failure, a failed delivery, an ack that contradicts an earlier
//! one): it stops sending, drops the producer with whatever is unacked, and
//! the next session starts with recovery. It never lets the producer carry
//! on past such a failure, because the idempotent producer only guarantees
//! that what lands in a partition is a prefix of what was sent as long as
//! the session does not continue after messages failed.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use annals::{GlobalPosition, OutboxRecord, OutboxSource};
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::watch;
use tracing::Instrument;

use super::backoff::Backoff;
use super::partitioner::partition_for_key;
use super::producer::{ProducerEvent, ProducerSession, ends_session};
use super::reader::{OutboxReadAhead, Page, Read, ReadAheadSettings};
use super::rejection::permanent_rejection;
use super::shard::{Progress, ShardContext, StopSignal};
use super::tail::{PublishedTail, Verdict};
use super::topics::{TopicState, Topics};
use super::window::AckWindow;

mod recovery;

/// Records a session hands to the producer between two yields to the
/// runtime.
const YIELD_EVERY: usize = 1_000;

/// Why a session ended.
#[derive(Debug)]
pub(super) enum SessionEnd {
    /// The relay is stopping; what was in flight was awaited and the
    /// checkpoint saved.
    Stopped,
    /// The shard's lease no longer holds: another relay may lead it now.
    LeaseLost,
    /// The producer failed or cannot be trusted; it was abandoned.
    Broken(String),
}

/// Where a record goes.
enum Route {
    Partition(i32),
    Refused(String),
}

/// A batch whose end the checkpoint has not passed yet, for the latency
/// histogram.
struct BatchMark {
    last: GlobalPosition,
    records: usize,
    read_at: Instant,
}

/// The deliveries of the open transaction (transactional mode): they count
/// only once the transaction commits.
#[derive(Default)]
struct Transaction {
    sent: usize,
    delivered: Vec<usize>,
}

pub(super) struct Session<'a, S: OutboxSource> {
    context: &'a ShardContext<S>,
    lease: &'a S::Lease,
    producer: ProducerSession,
    progress: Progress,
    progress_sender: &'a watch::Sender<Progress>,
    stop: &'a mut StopSignal,
    reader: OutboxReadAhead,
    /// Ticks every poll interval: an idle session notices a lost lease as
    /// soon as one that read the outbox itself did.
    lease_check: tokio::time::Interval,
    window: AckWindow,
    topics: Topics,
    tails: HashMap<String, HashMap<i32, PublishedTail>>,
    /// The last acked offset of each partition in this session.
    offsets: HashMap<String, HashMap<i32, i64>>,
    batches: VecDeque<BatchMark>,
    transaction: Option<Transaction>,
    /// Records parked by this relay, loaded when recovery first needs them.
    parked_ids: Option<std::collections::HashSet<uuid::Uuid>>,
    /// Whether records of this relay and shard after the checkpoint may be
    /// in the partitions already, so that recovery must read their tails.
    recover: bool,
    store_backoff: Backoff,
    last_save: Instant,
    /// Records of the batches acked whole since the checkpoint was last
    /// saved.
    unsaved: usize,
}

/// Starts reading the shard's outbox after `progress`, for the next
/// session: before its producer connects, so that the first page is there
/// by the time the producer is (on a fresh start, connecting and reading a
/// large page each take tens of milliseconds).
pub(super) fn read_ahead<S: OutboxSource>(
    context: &ShardContext<S>,
    progress: Progress,
) -> OutboxReadAhead {
    let settings = &context.settings;
    OutboxReadAhead::spawn(
        context.source.clone(),
        ReadAheadSettings {
            shard: context.shard,
            batch_size: settings.batch_size,
            poll_interval: settings.poll_interval,
            backoff: (settings.backoff_min, settings.backoff_max),
        },
        progress.done_through,
    )
}

impl<'a, S: OutboxSource> Session<'a, S> {
    pub(super) fn new(
        context: &'a ShardContext<S>,
        lease: &'a S::Lease,
        producer: ProducerSession,
        reader: OutboxReadAhead,
        progress: Progress,
        progress_sender: &'a watch::Sender<Progress>,
        stop: &'a mut StopSignal,
    ) -> Self {
        let settings = &context.settings;
        let mut lease_check = tokio::time::interval(settings.poll_interval);
        lease_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Session {
            reader,
            lease_check,
            window: AckWindow::new(progress.done_through),
            topics: Topics::new(settings.unknown_topic_timeout, settings.broker_timeout),
            tails: HashMap::new(),
            offsets: HashMap::new(),
            batches: VecDeque::new(),
            transaction: None,
            parked_ids: None,
            recover: true,
            store_backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            last_save: Instant::now(),
            unsaved: 0,
            context,
            lease,
            producer,
            progress,
            progress_sender,
            stop,
        }
    }

    /// A session that knows nothing of its shard after the checkpoint is in
    /// the partitions (no relay of this name led it, or the last holder
    /// stopped with everything acknowledged and checkpointed): it sends
    /// without reading the partitions' tails first.
    pub(super) fn without_recovery(mut self) -> Self {
        self.recover = false;
        self
    }

    /// Publishes until the session ends; returns why, how far it got, and
    /// whether everything it sent was acknowledged and its producer closed
    /// (nothing of it can land later).
    pub(super) async fn run(mut self) -> (SessionEnd, Progress, bool) {
        let end = match self.publish_until_ended().await {
            Ok(never) => match never {},
            Err(end) => end,
        };
        if !matches!(end, SessionEnd::Stopped) {
            // Nothing more of this session may reach the broker: what is
            // queued goes now, before anything that could take time.
            self.producer.purge();
        }
        let flushed = match &end {
            SessionEnd::Stopped => self.drain().await,
            SessionEnd::LeaseLost => false,
            SessionEnd::Broken(_) => {
                // The acks taken in before the failure came before anything
                // suspicious in the producer's report order: keep them.
                let _ = self.advance(true).await;
                false
            }
        };
        let Session {
            producer, progress, ..
        } = self;
        if flushed {
            producer.close().await;
        } else {
            producer.abandon().await;
        }
        (end, progress, flushed)
    }

    async fn publish_until_ended(&mut self) -> Result<std::convert::Infallible, SessionEnd> {
        let settings = &self.context.settings;
        loop {
            while let Some(event) = self.producer.try_event() {
                self.on_event(event).await?;
            }
            self.advance(false).await?;
            if self.stop.is_stopping() {
                return Err(SessionEnd::Stopped);
            }
            let ack_due = self.ack_due();
            if ack_due.is_some_and(|due| due <= Instant::now()) {
                return Err(SessionEnd::Broken(format!(
                    "a record waited {:?} for its ack: the session ends before the producer's \
                     message.timeout.ms could fail it and let later records overtake it",
                    settings.ack_deadline.unwrap_or_default()
                )));
            }
            let room = self.window.in_flight() + settings.batch_size <= settings.max_in_flight;
            if room && let Some(read) = self.reader.try_next() {
                self.take(read).await?;
                continue;
            }
            let save_due = (self.progress.saved < self.window.done_through())
                .then(|| self.last_save + settings.checkpoint_interval);
            tokio::select! {
                biased;
                () = self.stop.stopped() => {}
                event = self.producer.next_event() => self.on_event(event).await?,
                read = self.reader.next(), if room => self.take(read).await?,
                () = sleep_until(save_due), if save_due.is_some() => {}
                () = sleep_until(ack_due), if ack_due.is_some() => {}
                _ = self.lease_check.tick() => {
                    if !self.context.source.is_held(self.lease) {
                        return Err(SessionEnd::LeaseLost);
                    }
                }
            }
        }
    }

    /// When the oldest record in flight has waited too long for its ack
    /// (see `RelaySettings::ack_deadline`).
    fn ack_due(&self) -> Option<Instant> {
        Some(self.window.oldest_sent_at()? + self.context.settings.ack_deadline?)
    }

    /// Publishes what the reader read, or reports its failure (it retries
    /// by itself).
    async fn take(&mut self, read: Read) -> Result<(), SessionEnd> {
        let context = self.context;
        let settings = &context.settings;
        let Page { records, read_at } = match read {
            Read::Page(page) => page,
            Read::Failed(error) => return self.store_failed("reading the outbox", &error),
        };
        // Only the lease holder publishes; the page may have been read
        // before the lease was lost.
        if !context.source.is_held(self.lease) {
            return Err(SessionEnd::LeaseLost);
        }
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let span = tracing::info_span!(
            "relay_batch",
            relay = %settings.name,
            shard = %context.shard,
            count = records.len(),
            first = %first.position,
            last = %last.position,
        );
        self.batches.push_back(BatchMark {
            last: last.position,
            records: records.len(),
            read_at,
        });
        self.publish(records).instrument(span).await
    }

    /// Sends a batch in order: each record to its partition, unless
    /// recovery found it already there or the broker refuses it for good.
    async fn publish(&mut self, records: Vec<OutboxRecord>) -> Result<(), SessionEnd> {
        let routes = self.route(&records).await?;
        self.recover_partitions(&records, &routes).await?;
        if self.context.settings.transactional {
            self.producer
                .begin_transaction()
                .map_err(|error| broken("beginning a transaction", &error))?;
            self.transaction = Some(Transaction::default());
        }
        for (n, (record, route)) in records.into_iter().zip(routes).enumerate() {
            if n > 0 && n % YIELD_EVERY == 0 {
                // Handing a page to the producer takes milliseconds: let the
                // other tasks on this worker (the read-ahead, the host
                // service's own) run in between.
                tokio::task::yield_now().await;
                // Only the lease holder hands records over, also in the
                // middle of a page: how late a holder can send after
                // noticing the loss is part of the exactly-once argument.
                if !self.context.source.is_held(self.lease) {
                    return Err(SessionEnd::LeaseLost);
                }
            }
            let position = record.position;
            let topic = record.message.topic.clone();
            let index = self.window.push(record);
            match route {
                Route::Refused(reason) => self.park(index, reason).await?,
                Route::Partition(partition) => {
                    let tail = &self.tails[&topic][&partition];
                    match tail.verdict(position) {
                        Verdict::Published => {
                            self.window.complete(index);
                            self.context.metrics.skipped.increment(1);
                            self.context.status.update(|status| status.skipped += 1);
                        }
                        Verdict::Missing => self.park_missing(index, &topic, partition).await?,
                        Verdict::Pending => self.send(index, partition).await?,
                    }
                }
            }
        }
        if self.transaction.is_some() {
            self.commit().await?;
        }
        Ok(())
    }

    /// The partition of every record (or why its topic is refused).
    async fn route(&mut self, records: &[OutboxRecord]) -> Result<Vec<Route>, SessionEnd> {
        let mut routes = Vec::with_capacity(records.len());
        for record in records {
            let message = &record.message;
            let state = self
                .topics
                .state(&self.producer, &message.topic)
                .await
                .map_err(|error| broken("reading topic metadata", &error))?;
            routes.push(match state {
                TopicState::Partitions(count) => {
                    Route::Partition(partition_for_key(&message.key, count) as i32)
                }
                TopicState::Refused(reason) => Route::Refused(reason),
            });
        }
        Ok(routes)
    }

    /// Hands the record at `index` to the producer; waits for reports while
    /// its queue is full.
    async fn send(&mut self, index: usize, partition: i32) -> Result<(), SessionEnd> {
        loop {
            let record = self
                .window
                .record(index)
                .expect("sent records are in flight");
            let Err(error) = self.producer.send(record, partition, index) else {
                if let Some(transaction) = &mut self.transaction {
                    transaction.sent += 1;
                }
                self.context.status.update(|status| status.sent += 1);
                return Ok(());
            };
            if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                let event = self.producer.next_event().await;
                self.on_event(event).await?;
                continue;
            }
            return match permanent_rejection(&error) {
                Some(reason) => self.park(index, reason).await,
                None => Err(broken("sending", &error)),
            };
        }
    }

    /// Commits the open transaction; its deliveries count once it did.
    async fn commit(&mut self) -> Result<(), SessionEnd> {
        let timeout = self.context.settings.commit_timeout;
        self.producer
            .commit_transaction(timeout)
            .await
            .map_err(|error| broken("committing the transaction", &error))?;
        loop {
            let transaction = self.transaction.as_ref().expect("a transaction is open");
            if transaction.delivered.len() >= transaction.sent {
                break;
            }
            let event = self.producer.next_event().await;
            self.on_event(event).await?;
        }
        let transaction = self.transaction.take().expect("a transaction is open");
        for index in transaction.delivered {
            if self.window.complete(index).is_some() {
                self.context.metrics.published.increment(1);
                self.context.status.update(|status| status.published += 1);
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, event: ProducerEvent) -> Result<(), SessionEnd> {
        match event {
            ProducerEvent::Delivered {
                index,
                partition,
                offset,
            } => {
                let Some(record) = self.window.record(index) else {
                    return Ok(());
                };
                let topic = record.message.topic.as_str();
                let last = match self.offsets.get_mut(topic) {
                    Some(offsets) => offsets.entry(partition).or_insert(-1),
                    None => self
                        .offsets
                        .entry(topic.to_owned())
                        .or_default()
                        .entry(partition)
                        .or_insert(-1),
                };
                // Acks of one partition come in the order of the sends, with
                // rising offsets. tansu 0.6.0 restarted while an idempotent
                // producer sends acks records at offset -1 and then at
                // offsets that earlier records hold, and loses them
                // (docs/broker-notes.md, "Known bad"): such an ack is not
                // believed, and the session ends so that recovery checks
                // what really landed.
                if offset < 0 || offset <= *last {
                    return Err(SessionEnd::Broken(format!(
                        "the broker acked {topic}[{partition}] at offset {offset} after offset {}: \
                         it lost track of the partition",
                        *last
                    )));
                }
                *last = offset;
                if let Some(transaction) = &mut self.transaction {
                    transaction.delivered.push(index);
                    return Ok(());
                }
                self.window.complete(index);
                self.context.metrics.published.increment(1);
                self.context.status.update(|status| status.published += 1);
                Ok(())
            }
            ProducerEvent::Failed { index, error } => {
                if self.window.record(index).is_none() {
                    return Ok(());
                }
                match permanent_rejection(&error) {
                    Some(reason) if self.transaction.is_none() => self.park(index, reason).await,
                    _ => Err(broken("delivering", &error)),
                }
            }
            ProducerEvent::ClientError { error, reason } => {
                if ends_session(&error) {
                    return Err(SessionEnd::Broken(format!("{error}: {reason}")));
                }
                tracing::warn!(relay = %self.context.settings.name, shard = %self.context.shard,
                    %error, reason, "producer error");
                Ok(())
            }
        }
    }

    /// Moves the progress to the acked prefix and saves the checkpoint when
    /// due: every checkpoint interval, at once when `force`, and at once
    /// when nothing is in flight while a prune batch or more waits behind
    /// an unsaved checkpoint (the end of a drain: pruning need not wait
    /// for the interval).
    async fn advance(&mut self, force: bool) -> Result<(), SessionEnd> {
        let done = self.window.done_through();
        if done > self.progress.done_through {
            self.progress.done_through = done;
            while self.batches.front().is_some_and(|batch| batch.last <= done) {
                let batch = self.batches.pop_front().expect("checked above");
                self.unsaved += batch.records;
                self.context
                    .metrics
                    .batch_seconds
                    .record(batch.read_at.elapsed().as_secs_f64());
            }
            self.context
                .status
                .update(|status| status.last_published = Some(done));
            self.progress_sender.send_replace(self.progress);
        }
        let settings = &self.context.settings;
        let idle_behind = self.window.in_flight() == 0 && self.unsaved >= settings.prune_batch;
        let due = force || idle_behind || self.last_save.elapsed() >= settings.checkpoint_interval;
        if self.progress.saved < self.progress.done_through && due {
            self.save().await?;
        }
        Ok(())
    }

    async fn save(&mut self) -> Result<(), SessionEnd> {
        let context = self.context;
        let position = self.progress.done_through;
        self.last_save = Instant::now();
        // A failed save is tried again at the next interval.
        self.unsaved = 0;
        if !context.source.is_held(self.lease) {
            return Err(SessionEnd::LeaseLost);
        }
        let saved = context
            .source
            .save_checkpoint(self.lease, &context.settings.name, context.shard, position)
            .await;
        match saved {
            Ok(()) => {
                self.progress.saved = position;
                self.progress_sender.send_replace(self.progress);
                context.status.update(|status| {
                    status.checkpoint = Some(position);
                    status.last_error = None;
                });
                Ok(())
            }
            // Retried at the next interval; publishing goes on meanwhile.
            Err(error) => self.store_failed("saving the checkpoint", &error),
        }
    }

    /// Reports a store failure; the lease being gone ends the session,
    /// anything else is retried (by the caller or the reader).
    fn store_failed(&self, doing: &str, error: &annals::Error) -> Result<(), SessionEnd> {
        let context = self.context;
        if !context.source.is_held(self.lease) {
            return Err(SessionEnd::LeaseLost);
        }
        tracing::warn!(relay = %context.settings.name, shard = %context.shard, %error,
            "{doing} failed; retrying");
        context.status.set_error(Some(format!("{doing}: {error}")));
        Ok(())
    }

    /// Stops reading, awaits what is in flight (up to the shutdown timeout)
    /// and saves the checkpoint; returns whether everything sent was acked.
    async fn drain(&mut self) -> bool {
        let deadline = Instant::now() + self.context.settings.shutdown_timeout;
        let mut trusted = true;
        while self.window.in_flight() > 0 && Instant::now() < deadline {
            let event = tokio::select! {
                event = self.producer.next_event() => event,
                () = tokio::time::sleep_until(deadline.into()) => break,
            };
            if let Err(end) = self.on_event(event).await {
                tracing::warn!(relay = %self.context.settings.name, shard = %self.context.shard,
                    ?end, "the producer failed while stopping");
                trusted = false;
                break;
            }
        }
        let _ = self.advance(true).await;
        trusted && self.window.in_flight() == 0
    }
}

fn broken(doing: &str, error: &rdkafka::error::KafkaError) -> SessionEnd {
    SessionEnd::Broken(format!("{doing}: {error}"))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
