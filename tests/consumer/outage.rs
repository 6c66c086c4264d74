//! An inbox outage (the database down) is waited out: records are retried
//! without counting attempts, nothing is dead-lettered, nothing is lost.
//! Against PostgreSQL, connections killed in the middle of transactions are
//! such outages too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use annals::Inbox;
use annals_kafka::{Consumer, FailurePolicy};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::common::{
    Backend, Faults, MemoryBackend, PostgresBackend, TestMessage, assert_exactly_once, config,
    init_tracing, produce, produce_over_time, topics, unique_name,
};

/// An inbox that fails as a database that went away does, while `down`.
#[derive(Debug, Clone)]
struct Flaky<I> {
    inner: I,
    down: Arc<AtomicBool>,
}

impl<I: Inbox> Flaky<I> {
    fn check(&self) -> Result<(), annals::Error> {
        if self.down.load(Ordering::Acquire) {
            return Err(annals::Error::backend("memory", true, "connection refused"));
        }
        Ok(())
    }
}

impl<I: Inbox> Inbox for Flaky<I> {
    type Tx = I::Tx;

    async fn begin(&self) -> Result<I::Tx, annals::Error> {
        self.check()?;
        self.inner.begin().await
    }

    async fn claim(&self, tx: &mut I::Tx, consumer: &str, id: Uuid) -> Result<bool, annals::Error> {
        self.check()?;
        self.inner.claim(tx, consumer, id).await
    }

    async fn commit(&self, tx: I::Tx) -> Result<(), annals::Error> {
        self.check()?;
        self.inner.commit(tx).await
    }

    async fn rollback(&self, tx: I::Tx) -> Result<(), annals::Error> {
        self.inner.rollback(tx).await
    }

    async fn prune(&self, consumer: &str, before: DateTime<Utc>) -> Result<u64, annals::Error> {
        self.check()?;
        self.inner.prune(consumer, before).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_outage_is_waited_out_without_dead_letters() {
    init_tracing();
    let backend = MemoryBackend::new();
    let topic = topics("outage", 2).await;
    let messages: Vec<TestMessage> = (0..200)
        .map(|n| TestMessage::new(n, format!("key-{}", n % 7)))
        .collect();
    let down = Arc::new(AtomicBool::new(true));
    let inbox = Flaky {
        inner: backend.inbox(),
        down: Arc::clone(&down),
    };
    let consumer = Consumer::builder(config(), inbox)
        .name(unique_name("outage"))
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        // Attempts that would run out within the outage if it counted.
        .failure_policy(
            FailurePolicy::default()
                .with_max_attempts(2)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(100)),
        )
        .start()
        .expect("the consumer starts");
    produce(&topic, &messages).await;

    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.transient_errors >= 20
        })
        .await;
    assert!(status.transient_errors >= 20, "{status:#?}");
    assert_eq!(
        (status.handled, status.dead_lettered, status.retried),
        (0, 0, 0),
        "{status:#?}"
    );

    down.store(false, Ordering::Release);
    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == 200 && status.lag() == Some(0)
        })
        .await;
    assert_eq!(status.handled, 200, "{status:#?}");
    assert_eq!(
        status.dead_lettered, 0,
        "an outage dead-letters nothing: {status:#?}"
    );
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    assert_exactly_once(
        &backend.effects().await,
        &messages.iter().map(|message| message.id).collect(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_retried_without_dead_letters_in_postgres() {
    const MESSAGES: u64 = 2_000;
    init_tracing();
    let backend = PostgresBackend::new().await;
    let topic = topics("killed", 2).await;
    let messages: Vec<TestMessage> = (0..MESSAGES)
        .map(|n| TestMessage::new(n, format!("key-{}", n % 50)))
        .collect();
    let expected = messages.iter().map(|message| message.id).collect();
    let consumer = Consumer::builder(config(), backend.inbox())
        .name(unique_name("killed"))
        .topic(&topic)
        .handler(backend.effect(Faults::default()))
        // One attempt: a lost connection taken for a handler failure would
        // dead-letter its record at once.
        .failure_policy(
            FailurePolicy::default()
                .with_max_attempts(1)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .start()
        .expect("the consumer starts");
    // Produced while the connections die, so that there is work for them.
    let producing = produce_over_time(&topic, messages, 200, Duration::from_millis(50));

    // Kills the consumer's connections wherever they are: in BEGIN, the
    // claim, the handler's statement or the COMMIT.
    let admin = annals_tests::postgres::connect(annals_tests::postgres::database_url())
        .await
        .expect("an admin connection");
    let mut killed = 0;
    while !producing.is_finished() {
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&backend.application_name()],
            )
            .await
            .expect("killing the consumer's connections");
        killed += rows.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    producing.await.expect("the producing task");
    assert!(killed > 0, "no connection of the consumer's was killed");

    let status = consumer
        .wait_until(Duration::from_secs(60), |status| {
            status.handled == MESSAGES && status.lag() == Some(0)
        })
        .await;
    assert_eq!(status.handled, MESSAGES, "{status:#?}");
    assert!(status.transient_errors > 0, "the kills hurt: {status:#?}");
    assert_eq!(
        (status.dead_lettered, status.retried),
        (0, 0),
        "a lost connection is an outage, not a failed handler: {status:#?}"
    );
    consumer
        .stop(Duration::from_secs(30))
        .await
        .expect("the consumer stops");
    assert_exactly_once(&backend.effects().await, &expected);
}
