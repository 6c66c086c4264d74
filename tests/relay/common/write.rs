//! Filling the outbox: aggregates appending events with an integration
//! message each, version after version, from concurrent writers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, OutboxMessage, Payload,
    StreamId,
};
use uuid::Uuid;

/// An outbox message a test wrote, as the topic must show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) message_id: Uuid,
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) stream_version: u64,
}

/// Appends to the streams of `aggregates` aggregates, one event and one
/// outbox message per append, each aggregate's versions in order.
#[derive(Debug, Clone)]
pub(crate) struct Writer<S> {
    store: S,
    topic: String,
    prefix: String,
    versions: Arc<Mutex<Vec<u64>>>,
}

impl<S: EventStore> Writer<S> {
    pub(crate) fn new(store: S, topic: &str, aggregates: usize) -> Self {
        Writer {
            store,
            topic: topic.to_owned(),
            prefix: format!("agg-{:06x}", fastrand::u32(..0xff_ffff)),
            versions: Arc::new(Mutex::new(vec![0; aggregates])),
        }
    }

    /// Writes `count` messages from `writers` concurrent tasks, each with
    /// aggregates of its own, taking them in turn; at most `per_second` in
    /// all when given.
    pub(crate) async fn write(
        &self,
        count: usize,
        writers: usize,
        per_second: Option<f64>,
    ) -> Vec<Written> {
        let aggregates = self.versions.lock().unwrap().len();
        assert!(writers >= 1 && writers <= aggregates);
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let this = self.clone();
                let share = count / writers + usize::from(writer < count % writers);
                let own: Vec<usize> = (writer..aggregates).step_by(writers).collect();
                let pause = per_second.map(|rate| Duration::from_secs_f64(writers as f64 / rate));
                tokio::spawn(async move {
                    let mut ticks = pause.map(|pause| {
                        let mut ticks = tokio::time::interval(pause);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticks
                    });
                    let mut written = Vec::with_capacity(share);
                    for n in 0..share {
                        if let Some(ticks) = &mut ticks {
                            ticks.tick().await;
                        }
                        let aggregate = own[n % own.len()];
                        written.push(this.append_next(aggregate, None).await);
                    }
                    written
                })
            })
            .collect();
        let mut written = Vec::with_capacity(count);
        for task in tasks {
            written.extend(task.await.expect("a writer task panicked"));
        }
        written
    }

    /// Writes in the background; the task returns what it wrote.
    pub(crate) fn spawn(
        &self,
        count: usize,
        writers: usize,
        per_second: Option<f64>,
    ) -> tokio::task::JoinHandle<Vec<Written>> {
        let this = self.clone();
        tokio::spawn(async move { this.write(count, writers, per_second).await })
    }

    /// Appends the next version of aggregate `aggregate`, with `payload` if
    /// given (else a small JSON object), to `topic` if given.
    pub(crate) async fn append_next(&self, aggregate: usize, payload: Option<Payload>) -> Written {
        self.append_to(aggregate, &self.topic.clone(), payload)
            .await
    }

    /// Like [`Writer::append_next`], to another topic.
    pub(crate) async fn append_to(
        &self,
        aggregate: usize,
        topic: &str,
        payload: Option<Payload>,
    ) -> Written {
        let version = {
            let mut versions = self.versions.lock().unwrap();
            versions[aggregate] += 1;
            versions[aggregate]
        };
        let key = format!("{}-{aggregate}", self.prefix);
        let stream = StreamId::new(&key).unwrap();
        let payload = payload.unwrap_or_else(|| {
            Payload::encode(&serde_json::json!({ "aggregate": key, "version": version })).unwrap()
        });
        let metadata = Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: Some(Uuid::now_v7()),
            traceparent: Some(format!(
                "00-{:032x}-{:016x}-01",
                fastrand::u128(..),
                fastrand::u64(..)
            )),
            ..Metadata::default()
        };
        let message = OutboxMessage {
            message_id: Uuid::now_v7(),
            topic: topic.to_owned(),
            key: key.clone(),
            event_type: "RelayTested".into(),
            event_version: 1,
            payload: payload.clone(),
            stream: stream.clone(),
            stream_version: version,
            metadata: metadata.clone(),
        };
        let expected = match version {
            1 => ExpectedVersion::NoStream,
            previous => ExpectedVersion::Exact(previous - 1),
        };
        let request = AppendRequest::new(stream, expected)
            .event(NewEvent::raw("RelayTested", 1, payload, metadata))
            .outbox_message(message.clone());
        let mut attempts = 0;
        loop {
            match self.store.append(request.clone()).await {
                Ok(_) => break,
                // A store restarting under a fault test: the append either
                // happened or not; the version check tells which.
                Err(error) if error.is_retriable() && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) if error.is_conflict() && attempts > 0 => break,
                Err(error) => panic!("appending {key} v{version}: {error}"),
            }
        }
        Written {
            message_id: message.message_id,
            topic: topic.to_owned(),
            key,
            stream_version: version,
        }
    }
}
