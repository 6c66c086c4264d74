//! One producer session: a producer, the ordered stream of what it reports
//! (deliveries and client errors), and its transactional calls.

use std::time::Duration;

use annals::OutboxRecord;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use tokio::sync::mpsc;

use crate::headers::relayed_headers;

/// What the producer reports, in the order librdkafka reports it: client
/// errors and delivery reports come through the same queue, so a delivery
/// that follows a transport failure is seen after it.
#[derive(Debug)]
pub(super) enum ProducerEvent {
    /// The broker acked the record sent with `index`.
    Delivered {
        index: usize,
        partition: i32,
        offset: i64,
    },
    /// The record sent with `index` failed.
    Failed { index: usize, error: KafkaError },
    /// A client-wide error (broker unreachable, fatal producer state, ...).
    ClientError { error: KafkaError, reason: String },
}

/// Forwards deliveries and errors to the session, and librdkafka's log to
/// `tracing`.
struct RelayContext {
    events: mpsc::UnboundedSender<ProducerEvent>,
}

impl ClientContext for RelayContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The session may be gone already; nobody needs the report then.
        let _ = self.events.send(ProducerEvent::ClientError {
            error,
            reason: reason.to_owned(),
        });
    }
}

impl ProducerContext for RelayContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let event = match result {
            Ok(message) => ProducerEvent::Delivered {
                index,
                partition: message.partition(),
                offset: message.offset(),
            },
            Err((error, _)) => ProducerEvent::Failed {
                index,
                error: error.clone(),
            },
        };
        let _ = self.events.send(event);
    }
}

/// A producer and its reports. Dropped with [`ProducerSession::abandon`]
/// when the session ends abnormally.
pub(super) struct ProducerSession {
    producer: ThreadedProducer<RelayContext>,
    events: mpsc::UnboundedReceiver<ProducerEvent>,
    relay: String,
}

impl std::fmt::Debug for ProducerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerSession")
            .field("relay", &self.relay)
            .field("in_flight", &self.producer.in_flight_count())
            .finish()
    }
}

impl ProducerSession {
    /// Creates a producer and checks that the brokers answer (and, when
    /// transactional, fences earlier sessions of the same transactional id).
    pub(super) async fn connect(
        config: ClientConfig,
        relay: &str,
        transactional: bool,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let (sender, events) = mpsc::unbounded_channel();
        let context = RelayContext { events: sender };
        let producer = ThreadedProducer::from_config_and_context(&config, context)?;
        let session = ProducerSession {
            producer,
            events,
            relay: relay.to_owned(),
        };
        let probe = session.producer.clone();
        blocking(move || {
            probe.client().fetch_metadata(None, timeout)?;
            if transactional {
                probe.init_transactions(timeout)?;
            }
            Ok(())
        })
        .await?;
        let mut session = session;
        // Connection failures while the brokers came back are reported
        // before the answer that just arrived; they are over.
        while let Ok(event) = session.events.try_recv() {
            tracing::debug!(?event, "producer report from before the brokers answered");
        }
        Ok(session)
    }

    /// Hands `record` to the producer for `partition`; its delivery is
    /// reported with `index`. Errors are those of enqueueing (queue full, too
    /// large for `message.max.bytes`, ...).
    pub(super) fn send(
        &self,
        record: &OutboxRecord,
        partition: i32,
        index: usize,
    ) -> Result<(), KafkaError> {
        let headers = relayed_headers(record, &self.relay);
        let message = &record.message;
        let base = BaseRecord::with_opaque_to(&message.topic, index)
            .partition(partition)
            .key(message.key.as_bytes())
            .payload(message.payload.get().as_bytes())
            .headers(headers);
        self.producer.send(base).map_err(|(error, _)| error)
    }

    /// The next report, without waiting.
    pub(super) fn try_event(&mut self) -> Option<ProducerEvent> {
        self.events.try_recv().ok()
    }

    /// The next report.
    pub(super) async fn next_event(&mut self) -> ProducerEvent {
        self.events
            .recv()
            .await
            .expect("the producer's context holds the sender as long as the session lives")
    }

    /// The metadata of `topic`.
    pub(super) async fn topic_metadata(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Metadata, KafkaError> {
        let probe = self.producer.clone();
        let topic = topic.to_owned();
        blocking(move || probe.client().fetch_metadata(Some(&topic), timeout)).await
    }

    /// Starts a transaction (transactional mode).
    pub(super) fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.producer.begin_transaction()
    }

    /// Commits the transaction, which waits until every record in it was
    /// delivered; aborts it when the commit fails.
    pub(super) async fn commit_transaction(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        blocking(move || {
            producer.commit_transaction(timeout).inspect_err(|_| {
                // Best effort: the session ends either way, and the next one
                // fences this transactional id.
                let _ = producer.abort_transaction(timeout);
            })
        })
        .await
    }

    /// Drops every record the producer has not had acked, queued or in
    /// flight: none of them is sent (again) after this. A request already
    /// on its way may still land; the idempotent producer's sequence numbers
    /// make what lands a prefix of what was sent.
    pub(super) fn purge(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
    }

    /// Ends the session without waiting for what is in flight: the unacked
    /// records are not checkpointed, and recovery finds out which of them
    /// landed. Returns once the producer is gone, so that nothing of this
    /// session is sent afterwards.
    pub(super) async fn abandon(self) {
        self.purge();
        let ProducerSession { producer, .. } = self;
        // Dropping a producer blocks while librdkafka shuts down.
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }

    /// Closes the session after everything was delivered.
    pub(super) async fn close(self) {
        let ProducerSession { producer, .. } = self;
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }
}

/// Whether a client-wide error means the broker connection cannot be
/// trusted any more and the session must end.
pub(super) fn ends_session(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            BrokerTransportFailure
                | AllBrokersDown
                | Fatal
                | Fenced
                | ProducerFenced
                | InvalidProducerEpoch
                | UnknownProducerId
                | OutOfOrderSequenceNumber
        )
    )
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(KafkaError::Canceled),
    }
}
