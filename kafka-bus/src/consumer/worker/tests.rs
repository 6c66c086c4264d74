//! The worker without a broker: records fed straight into its queue, an
//! inbox whose transactions carry the handler's effects, dead letters kept
//! in a list, and time that passes as fast as the worker waits.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{
    BoxError, DomainEvent, GlobalPosition, Inbox, Metadata, OutboxMessage, OutboxRecord, Payload,
    StreamId,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rdkafka::message::{OwnedMessage, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{PartitionWorker, StopSignal};
use crate::consumer::dead_letter::{DeadLetterReason, DeadLetterSink, Letter, Written};
use crate::consumer::handler::{Handler, ReceivedEvent};
use crate::consumer::monitor::Monitor;
use crate::consumer::policy::{FailurePolicy, OnExhausted};
use crate::consumer::progress::PartitionProgress;
use crate::consumer::routes::Routes;
use crate::consumer::runtime::{Options, Runtime};
use crate::{Error, outbox_headers};

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "Step")]
struct Step {
    n: u64,
}

/// What a committed transaction did: (key, offset) per handled record.
type Log = Arc<Mutex<Vec<(String, i64)>>>;

#[derive(Debug, Clone, Default)]
struct LogInbox {
    log: Log,
    claims: Arc<Mutex<HashSet<Uuid>>>,
}

impl Inbox for LogInbox {
    type Tx = (Vec<Uuid>, Vec<(String, i64)>);

    async fn begin(&self) -> Result<Self::Tx, annals::Error> {
        Ok(Default::default())
    }

    async fn claim(&self, tx: &mut Self::Tx, _: &str, id: Uuid) -> Result<bool, annals::Error> {
        if tx.0.contains(&id) || self.claims.lock().unwrap().contains(&id) {
            return Ok(false);
        }
        tx.0.push(id);
        Ok(true)
    }

    async fn commit(&self, tx: Self::Tx) -> Result<(), annals::Error> {
        self.claims.lock().unwrap().extend(tx.0);
        self.log.lock().unwrap().extend(tx.1);
        Ok(())
    }

    async fn rollback(&self, _: Self::Tx) -> Result<(), annals::Error> {
        Ok(())
    }

    async fn prune(&self, _: &str, _: DateTime<Utc>) -> Result<u64, annals::Error> {
        Ok(0)
    }
}

/// Fails each record the number of times given for its offset.
#[derive(Debug, Clone, Default)]
struct Flaky {
    failures: Arc<Mutex<HashMap<i64, u32>>>,
}

impl Handler<(Vec<Uuid>, Vec<(String, i64)>)> for Flaky {
    type Event = Step;

    async fn handle(
        &self,
        tx: &mut (Vec<Uuid>, Vec<(String, i64)>),
        received: &ReceivedEvent<Step>,
    ) -> Result<(), BoxError> {
        let origin = &received.message.origin;
        if let Some(left) = self.failures.lock().unwrap().get_mut(&origin.offset)
            && *left > 0
        {
            *left -= 1;
            return Err(format!("step {} failed", received.event.n).into());
        }
        tx.1.push((
            received.message.key.clone().unwrap_or_default(),
            origin.offset,
        ));
        Ok(())
    }
}

/// The dead letters written, and a dead-letter topic that fails the next
/// `down` writes as an unreachable broker would.
#[derive(Debug, Default)]
struct Letters {
    written: Mutex<Vec<(i64, DeadLetterReason, u32)>>,
    down: Mutex<u32>,
}

impl DeadLetterSink for Letters {
    fn send<'a>(
        &'a self,
        letter: Letter<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Written, Error>> + Send + 'a>> {
        use rdkafka::Message;
        let mut down = self.down.lock().unwrap();
        if *down > 0 {
            *down -= 1;
            return Box::pin(async {
                Err(Error::kafka(
                    "writing a dead letter to steps.dlq",
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                    ),
                ))
            });
        }
        self.written
            .lock()
            .unwrap()
            .push((letter.record.offset(), letter.reason, letter.attempts));
        Box::pin(async { Ok(Written::Whole) })
    }
}

fn record(offset: i64, key: &str) -> OwnedMessage {
    let outbox = OutboxRecord {
        position: GlobalPosition::new(offset as u64 + 1, 0),
        recorded_at: Utc::now(),
        message: OutboxMessage {
            message_id: Uuid::now_v7(),
            topic: "steps".into(),
            key: key.into(),
            event_type: "Step".into(),
            event_version: 1,
            payload: Payload::encode(&Step { n: offset as u64 }).unwrap(),
            stream: StreamId::new("steps-1").unwrap(),
            stream_version: offset as u64 + 1,
            metadata: Metadata::default(),
        },
    };
    OwnedMessage::new(
        Some(outbox.message.payload.get().as_bytes().to_vec()),
        Some(key.as_bytes().to_vec()),
        "steps".into(),
        Timestamp::NotAvailable,
        0,
        offset,
        Some(outbox_headers(&outbox)),
    )
}

struct Run {
    log: Vec<(String, i64)>,
    letters: Vec<(i64, DeadLetterReason, u32)>,
    committable: Option<i64>,
}

/// Feeds `keys` (one record each, offsets from 0) to a worker whose handler
/// fails per `failures`, and waits until every record is settled or
/// `within` passed (in the paused clock's time).
async fn run(
    keys: &[&str],
    failures: HashMap<i64, u32>,
    policy: FailurePolicy,
    max_batch: usize,
    within: Duration,
) -> Run {
    let inbox = LogInbox::default();
    let mut routes = Routes::default();
    routes
        .add(Flaky {
            failures: Arc::new(Mutex::new(failures)),
        })
        .unwrap();
    let letters = Arc::new(Letters::default());
    let runtime = Arc::new(Runtime {
        name: "test".into(),
        inbox: inbox.clone(),
        routes,
        options: Options {
            failure: policy,
            max_batch,
            ..Options::default()
        },
        dead_letters: Arc::clone(&letters) as Arc<dyn DeadLetterSink>,
        monitor: Arc::new(Monitor::new("test")),
    });
    let (queue, receiver) = mpsc::channel(keys.len().max(1));
    for (offset, key) in keys.iter().enumerate() {
        queue.try_send(record(offset as i64, key)).unwrap();
    }
    let (stop, signal) = StopSignal::new();
    let progress = Arc::new(PartitionProgress::new(&queue));
    let task =
        tokio::spawn(PartitionWorker::new(runtime, receiver, signal, Arc::clone(&progress)).run());
    let end = keys.len() as i64;
    let deadline = tokio::time::Instant::now() + within;
    while progress.committable() != Some(end) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let log = inbox.log.lock().unwrap().clone();
    let letters = letters.written.lock().unwrap().clone();
    Run {
        log,
        letters,
        committable: progress.committable(),
    }
}

/// Long enough, in the paused clock's time, for every retry of a test.
const SETTLED_WITHIN: Duration = Duration::from_secs(600);

fn keys_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c", "d"]), 1..40)
}

fn policy(on_exhausted: OnExhausted) -> FailurePolicy {
    FailurePolicy::default()
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(80))
        .with_on_exhausted(on_exhausted)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With dead letters, records are handled in offset order, each once;
    /// exactly those that fail every attempt are dead letters; the whole
    /// partition is settled. Batches of any size change nothing of that.
    #[test]
    fn dead_letters_keep_the_partition_in_order(
        keys in keys_strategy(),
        failures in proptest::collection::vec(0u32..5, 40),
        max_batch in 1usize..8,
    ) {
        let failures: HashMap<i64, u32> = failures.into_iter().take(keys.len()).enumerate()
            .map(|(offset, count)| (offset as i64, count)).collect();
        let result = runtime().block_on(run(&keys, failures.clone(), policy(OnExhausted::DeadLetter), max_batch, SETTLED_WITHIN));
        let handled: Vec<i64> = result.log.iter().map(|(_, offset)| *offset).collect();
        let expected: Vec<i64> = (0..keys.len() as i64).filter(|offset| failures[offset] < 3).collect();
        prop_assert_eq!(handled, expected);
        let dead: Vec<i64> = result.letters.iter().map(|(offset, _, _)| *offset).collect();
        let expected_dead: Vec<i64> = (0..keys.len() as i64).filter(|offset| failures[offset] >= 3).collect();
        prop_assert_eq!(dead, expected_dead);
        prop_assert!(result.letters.iter().all(|(_, reason, attempts)| *reason == DeadLetterReason::HandlerFailed && *attempts == 3));
        prop_assert_eq!(result.committable, Some(keys.len() as i64));
    }

    /// With blocked keys, every record is handled once in the end, in
    /// offset order within its key, and nothing is dead-lettered.
    #[test]
    fn blocked_keys_keep_their_order(
        keys in keys_strategy(),
        failures in proptest::collection::vec(0u32..6, 40),
        max_batch in 1usize..8,
    ) {
        let failures: HashMap<i64, u32> = failures.into_iter().take(keys.len()).enumerate()
            .map(|(offset, count)| (offset as i64, count)).collect();
        let result = runtime().block_on(run(&keys, failures, policy(OnExhausted::BlockKey), max_batch, SETTLED_WITHIN));
        prop_assert!(result.letters.is_empty());
        let mut handled: Vec<i64> = result.log.iter().map(|(_, offset)| *offset).collect();
        for key in ["a", "b", "c", "d"] {
            let order: Vec<i64> = result.log.iter().filter(|(k, _)| k == key).map(|(_, offset)| *offset).collect();
            let expected: Vec<i64> = keys.iter().enumerate().filter(|(_, k)| **k == key).map(|(offset, _)| offset as i64).collect();
            prop_assert_eq!(order, expected, "key {}", key);
        }
        handled.sort_unstable();
        prop_assert_eq!(handled, (0..keys.len() as i64).collect::<Vec<_>>());
        prop_assert_eq!(result.committable, Some(keys.len() as i64));
    }
}

#[test]
fn a_blocked_key_holds_the_commit_at_its_first_record() {
    // Record 1 (key b) fails for longer than the test waits.
    let keys = ["a", "b", "a", "b", "c"];
    let failures = HashMap::from([(1, u32::MAX)]);
    let result = runtime().block_on(run(
        &keys,
        failures,
        policy(OnExhausted::BlockKey),
        4,
        Duration::from_secs(60),
    ));
    let handled: Vec<i64> = result.log.iter().map(|(_, offset)| *offset).collect();
    assert_eq!(handled, [0, 2, 4], "other keys go on, b waits");
    assert_eq!(
        result.committable,
        Some(1),
        "nothing is committed past b's first record"
    );
    assert!(result.letters.is_empty());
}

#[test]
fn a_dead_letter_that_cannot_be_written_shows_the_partition_stuck_with_the_cause() {
    runtime().block_on(async {
        let inbox = LogInbox::default();
        let mut routes = Routes::default();
        routes
            .add(Flaky {
                failures: Arc::new(Mutex::new(HashMap::from([(1, u32::MAX)]))),
            })
            .unwrap();
        let letters = Arc::new(Letters {
            down: Mutex::new(50),
            ..Letters::default()
        });
        let monitor = Arc::new(Monitor::new("test"));
        let runtime = Arc::new(Runtime {
            name: "test".into(),
            inbox: inbox.clone(),
            routes,
            options: Options {
                failure: policy(OnExhausted::DeadLetter),
                ..Options::default()
            },
            dead_letters: Arc::clone(&letters) as Arc<dyn DeadLetterSink>,
            monitor: Arc::clone(&monitor),
        });
        let (queue, receiver) = mpsc::channel(8);
        for offset in 0..3 {
            queue.try_send(record(offset, "a")).unwrap();
        }
        let (stop, signal) = StopSignal::new();
        let progress = Arc::new(PartitionProgress::new(&queue));
        let task = tokio::spawn(
            PartitionWorker::new(runtime, receiver, signal, Arc::clone(&progress)).run(),
        );
        while letters.down.lock().unwrap().to_owned() > 40 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stuck = progress.stuck().expect("the partition shows as stuck");
        assert_eq!(stuck.offset, 1);
        assert!(
            stuck.cause.contains("steps.dlq") && stuck.cause.contains("AllBrokersDown"),
            "the cause with its source: {}",
            stuck.cause
        );
        assert_eq!(progress.committable(), Some(1), "nothing past it");
        assert!(
            monitor
                .status()
                .last_error
                .is_some_and(|error| error.contains("AllBrokersDown"))
        );
        // The broker comes back: the letter is written, the partition moves.
        *letters.down.lock().unwrap() = 0;
        let deadline = tokio::time::Instant::now() + SETTLED_WITHIN;
        while progress.committable() != Some(3) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(progress.committable(), Some(3));
        assert_eq!(progress.stuck(), None);
        assert_eq!(
            letters.written.lock().unwrap().clone(),
            [(1, DeadLetterReason::HandlerFailed, 3)]
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    });
}
