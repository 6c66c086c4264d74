//! What the relay tests share: stores to relay from, writers that fill the
//! outbox, a relay set up for tests, and the exactly-once check of a topic.

mod check;
mod stores;
mod write;

use std::time::Duration;

use annals::OutboxSource;
use annals_kafka::{KafkaConfig, OutboxRelay, OutboxRelayBuilder, RelayHandle, RelayStatus};

pub(crate) use check::assert_exactly_once_in_order;
pub(crate) use stores::{FlakySource, RelayStore, postgres_store};
pub(crate) use write::{Writer, Written};

/// The producer's `message.timeout.ms` in the tests, and with it the
/// relay's takeover grace: short, so that the many takeovers of the fault
/// tests do not add up to minutes.
pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The client settings of the tests' relays.
pub(crate) fn kafka_config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .expect("the test brokers are host:port")
        .with(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
}

/// A relay over `source` with the tests' client settings and timings.
pub(crate) fn relay<S: OutboxSource>(
    source: S,
    brokers: &str,
    name: &str,
) -> OutboxRelayBuilder<S> {
    relay_with(source, kafka_config(brokers), name)
}

/// A relay over `source` with the tests' timings and `kafka`.
pub(crate) fn relay_with<S: OutboxSource>(
    source: S,
    kafka: KafkaConfig,
    name: &str,
) -> OutboxRelayBuilder<S> {
    OutboxRelay::builder(source, kafka)
        .name(name)
        .poll_interval(Duration::from_millis(50))
        .status_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_secs(1))
}

/// A relay name no other test uses.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", fastrand::u32(..))
}

/// Fails unless the statuses of a relay's runs (one relay, or one stopped
/// and the next) account for the `records` the topic holds: every one
/// acknowledged in their sessions, or, where a session broke (its producer
/// abandoned with acknowledgements still to come, as a loaded machine
/// makes the tests' 1.5 s ack deadline do), found in the partitions by the
/// recovery that followed. The topic check is what proves exactly once;
/// this checks the counters.
pub(crate) fn assert_accounted_for(statuses: &[&RelayStatus], records: u64) {
    let published: u64 = statuses.iter().map(|status| status.published()).sum();
    let found: u64 = statuses
        .iter()
        .map(|status| published_or_found(status))
        .sum();
    let skipped = found - published;
    let broke = statuses
        .iter()
        .flat_map(|status| &status.shards)
        .any(|shard| shard.sessions > 1);
    if broke {
        assert!(
            published <= records && published + skipped >= records,
            "{published} published and {skipped} found published of {records}: {statuses:#?}"
        );
    } else {
        assert_eq!(published, records, "{statuses:#?}");
        assert_eq!(skipped, 0, "{statuses:#?}");
    }
}

/// Records a relay put in the topic by its status: acknowledged, or found
/// published by a recovery (see [`assert_accounted_for`]).
pub(crate) fn published_or_found(status: &RelayStatus) -> u64 {
    status.published() + status.shards.iter().map(|shard| shard.skipped).sum::<u64>()
}

/// Waits until `relay`'s status satisfies `condition`.
pub(crate) async fn wait_for_status(
    relay: &RelayHandle,
    deadline: Duration,
    what: &str,
    condition: impl Fn(&RelayStatus) -> bool,
) {
    let started = tokio::time::Instant::now();
    loop {
        let status = relay.status();
        if condition(&status) {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}; status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub(crate) fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Declares `#[tokio::test]`s that run the generic test `$test` against
/// every store: `$test::memory` and `$test::postgres`.
/// How many relay tests run at once. Each drives a relay, writers, a broker
/// and a database on the same machine; all of them at once on 2 cores
/// stretch first deliveries past the tests' 2 s `message.timeout.ms` (which
/// once let librdkafka time out the earliest records and send later ones;
/// the relay now ends such a session before that, see `stall.rs`), and take
/// no less time in all. The assertions are the same either way.
const CONCURRENT_TESTS: usize = 4;

/// A turn to run: held for the whole test.
pub(crate) async fn slot() -> tokio::sync::SemaphorePermit<'static> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_TESTS);
    SLOTS
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

macro_rules! for_each_store {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let _slot = $crate::common::slot().await;
                $crate::common::init_tracing();
                super::$test(annals::MemoryEventStore::new()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let _slot = $crate::common::slot().await;
                $crate::common::init_tracing();
                // The schema outlives the test body, which drops the store.
                let (_schema, store) = $crate::common::postgres_store().await;
                super::$test(store).await;
            }
        }
    };
}
pub(crate) use for_each_store;
