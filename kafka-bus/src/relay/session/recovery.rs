//! What a session does about records it must not send: recovery, which
//! reads what earlier sessions left in a partition before the first send to
//! it, and parking, for records the broker refuses for good or that
//! recovery finds missing behind later ones.

use std::collections::HashMap;
use std::time::Instant;

use annals::{OutboxRecord, OutboxSource};

use super::{Route, Session, SessionEnd, broken};
use crate::relay::tail::{PublishedTail, TailQuery, read_tails};

impl<S: OutboxSource> Session<'_, S> {
    /// Reads the tail of every partition this batch goes to that this
    /// session has not sent to yet: before the first send to a partition,
    /// so that what is found there came from earlier sessions.
    pub(super) async fn recover_partitions(
        &mut self,
        records: &[OutboxRecord],
        routes: &[Route],
    ) -> Result<(), SessionEnd> {
        let mut needed: HashMap<&str, Vec<i32>> = HashMap::new();
        for (record, route) in records.iter().zip(routes) {
            let Route::Partition(partition) = route else {
                continue;
            };
            let topic = record.message.topic.as_str();
            let known = self
                .tails
                .get(topic)
                .is_some_and(|tails| tails.contains_key(partition));
            let partitions = needed.entry(topic).or_default();
            if !known && !partitions.contains(partition) {
                partitions.push(*partition);
            }
        }
        needed.retain(|_, partitions| !partitions.is_empty());
        if needed.is_empty() {
            return Ok(());
        }
        if !self.recover {
            for (topic, partitions) in needed {
                let tails = self.tails.entry(topic.to_owned()).or_default();
                for partition in partitions {
                    tails.insert(partition, PublishedTail::default());
                }
            }
            return Ok(());
        }
        let settings = &self.context.settings;
        // Any pending record that was published got its broker timestamp
        // after it was written to the outbox: records older than the oldest
        // of this batch (less the allowed clock skew) cannot be one.
        let oldest = records
            .iter()
            .map(|record| record.recorded_at)
            .min()
            .expect("a batch has records");
        let cutoff = oldest - chrono::Duration::from_std(settings.clock_skew).unwrap_or_default();
        let query = TailQuery {
            relay: settings.name.clone(),
            shard: self.context.shard,
            after: self.progress.done_through,
            cutoff_millis: cutoff.timestamp_millis(),
            deadline: Instant::now() + settings.recovery_timeout,
        };
        let started = Instant::now();
        let reads: Vec<_> = needed
            .into_iter()
            .map(|(topic, partitions)| {
                let config = settings.tail_consumer_config();
                let query = query.clone();
                let topic = topic.to_owned();
                tokio::task::spawn_blocking(move || {
                    let tails = read_tails(&config, &topic, &partitions, &query);
                    (topic, tails)
                })
            })
            .collect();
        for read in reads {
            let (topic, tails) = read.await.unwrap_or_else(|join| {
                if join.is_panic() {
                    std::panic::resume_unwind(join.into_panic())
                }
                (String::new(), Err(rdkafka::error::KafkaError::Canceled))
            });
            let tails = tails.map_err(|error| broken("reading partition tails", &error))?;
            for (partition, tail) in &tails {
                tracing::debug!(
                    relay = %settings.name, shard = %self.context.shard, topic, partition,
                    last = ?tail.last, found = tail.present.len(),
                    "recovery read the partition's tail"
                );
            }
            self.tails.entry(topic).or_default().extend(tails);
        }
        tracing::debug!(elapsed = ?started.elapsed(), "recovery done for this batch's partitions");
        Ok(())
    }

    /// Parks the record at `index` (retrying while the store is
    /// unreachable) and counts it as done.
    pub(super) async fn park(&mut self, index: usize, reason: String) -> Result<(), SessionEnd> {
        let context = self.context;
        let record = self
            .window
            .record(index)
            .expect("parked records are in flight")
            .clone();
        tracing::error!(
            relay = %context.settings.name, shard = %context.shard,
            position = %record.position, message_id = %record.message.message_id,
            topic = %record.message.topic, key = %record.message.key, reason,
            "parking an outbox record: it will not be published"
        );
        loop {
            match context
                .source
                .park(&context.settings.name, &record, &reason)
                .await
            {
                Ok(()) => break,
                Err(error) => {
                    self.store_failed("parking a record", &error)?;
                    let wait = self.store_backoff.next_wait();
                    if !self.stop.sleep(wait).await {
                        return Err(SessionEnd::Stopped);
                    }
                }
            }
        }
        self.store_backoff.reset();
        self.window.complete(index);
        self.parked_ids
            .get_or_insert_default()
            .insert(record.message.message_id);
        context.metrics.parked.increment(1);
        context.status.update(|status| status.parked += 1);
        Ok(())
    }

    /// A pending record absent from its partition although a later record
    /// of the shard is there: an earlier session had it refused and ended
    /// before parking it, or the broker lost it. Either way it must not be
    /// sent now (it would overtake nothing but land after its successors),
    /// nor vanish: it is parked unless it already was.
    pub(super) async fn park_missing(
        &mut self,
        index: usize,
        topic: &str,
        partition: i32,
    ) -> Result<(), SessionEnd> {
        let context = self.context;
        if self.parked_ids.is_none() {
            let parked = loop {
                match context.source.parked(&context.settings.name).await {
                    Ok(parked) => break parked,
                    Err(error) => {
                        self.store_failed("reading parked records", &error)?;
                        let wait = self.store_backoff.next_wait();
                        if !self.stop.sleep(wait).await {
                            return Err(SessionEnd::Stopped);
                        }
                    }
                }
            };
            self.parked_ids = Some(
                parked
                    .into_iter()
                    .map(|(record, _)| record.message.message_id)
                    .collect(),
            );
        }
        let record = self.window.record(index).expect("in flight");
        let known = self
            .parked_ids
            .as_ref()
            .is_some_and(|ids| ids.contains(&record.message.message_id));
        if known {
            self.window.complete(index);
            return Ok(());
        }
        let reason = format!(
            "not found in {topic}[{partition}] although later records of its shard are there: \
             an earlier producer session had it refused, or the broker lost it"
        );
        self.park(index, reason).await
    }
}
