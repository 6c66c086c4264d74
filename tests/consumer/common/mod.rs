//! What the consumer tests share: the broker, the test event, records
//! produced as the relay writes them (or as a foreign producer might), and
//! the backends the handlers' effects are recorded in.

mod memory;
mod postgres;
mod produce;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{DomainEvent, Inbox};
use annals_kafka::{ConsumerStatus, Handler, KafkaConfig};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub(crate) use memory::MemoryBackend;
pub(crate) use postgres::PostgresBackend;
pub(crate) use produce::{TestMessage, headers_of, produce, produce_over_time, produce_raw};

/// The event every test handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "Ping")]
pub(crate) struct Ping {
    pub(crate) n: u64,
}

/// Logs to the test output when `RUST_LOG` is set.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The settings of every test consumer: joins take half the session
/// timeout against tansu (docs/broker-notes.md), so a short one keeps the
/// tests quick.
pub(crate) fn config() -> KafkaConfig {
    KafkaConfig::new(annals_tests::kafka::brokers())
        .expect("ANNALS_TEST_KAFKA_BROKERS is host:port")
        .with("session.timeout.ms", "2000")
        .with("heartbeat.interval.ms", "500")
}

/// A topic of the test's own with `partitions` partitions, and its
/// dead-letter topic.
pub(crate) async fn topics(prefix: &str, partitions: i32) -> String {
    let topic = annals_tests::kafka::unique_topic(prefix);
    let brokers = annals_tests::kafka::brokers();
    annals_tests::kafka::create_topic(brokers, &topic, partitions).await;
    annals_tests::kafka::create_topic(brokers, &format!("{topic}.dlq"), 1).await;
    topic
}

/// A consumer name of the test's own.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", fastrand::u32(..))
}

/// Message ids whose handler fails while they are in the set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults(Arc<Mutex<HashSet<Uuid>>>);

impl Faults {
    pub(crate) fn new(ids: impl IntoIterator<Item = Uuid>) -> Self {
        Faults(Arc::new(Mutex::new(ids.into_iter().collect())))
    }

    pub(crate) fn fails(&self, id: Uuid) -> bool {
        self.0.lock().unwrap().contains(&id)
    }

    /// The fix: nothing fails any more.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// One effect of the counting handler, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effect {
    pub(crate) message_id: Uuid,
    pub(crate) key: Option<String>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Where the handlers' effects are recorded, in one transaction with the
/// inbox's claim.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The inbox.
    type Inbox: Inbox;
    /// A handler that records an [`Effect`] per event, failing for the
    /// message ids in its [`Faults`].
    type Effect: Handler<<Self::Inbox as Inbox>::Tx, Event = Ping>;

    fn inbox(&self) -> Self::Inbox;

    fn effect(&self, faults: Faults) -> Self::Effect;

    /// Every committed effect, in commit order.
    fn effects(&self) -> impl Future<Output = Vec<Effect>> + Send;
}

/// How often each message id has an effect.
pub(crate) fn counts(effects: &[Effect]) -> BTreeMap<Uuid, u64> {
    let mut counts = BTreeMap::new();
    for effect in effects {
        *counts.entry(effect.message_id).or_default() += 1;
    }
    counts
}

/// Waits until every id in `expected` has an effect, failing the test with
/// `consumers`' status when that takes longer than `deadline`.
pub(crate) async fn wait_for_effects<B: Backend>(
    backend: &B,
    expected: &HashSet<Uuid>,
    deadline: Duration,
    status: impl Fn() -> Vec<ConsumerStatus>,
) -> Vec<Effect> {
    let started = tokio::time::Instant::now();
    loop {
        let effects = backend.effects().await;
        let seen: HashSet<Uuid> = effects.iter().map(|effect| effect.message_id).collect();
        if expected.is_subset(&seen) {
            return effects;
        }
        assert!(
            started.elapsed() < deadline,
            "{} of {} messages had an effect after {deadline:?}; consumers: {:#?}",
            expected.intersection(&seen).count(),
            expected.len(),
            status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails unless every id in `expected` has exactly one effect and nothing
/// else has any.
pub(crate) fn assert_exactly_once(effects: &[Effect], expected: &HashSet<Uuid>) {
    let counts = counts(effects);
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        twice.is_empty(),
        "{} messages had more than one effect: {twice:?}",
        twice.len()
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages had no effect: {missing:?}",
        missing.len()
    );
    let foreign: Vec<_> = counts.keys().filter(|id| !expected.contains(id)).collect();
    assert!(
        foreign.is_empty(),
        "effects of unknown messages: {foreign:?}"
    );
}
