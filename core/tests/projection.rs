//! The projection runner on the in-memory backend: catch-up, live follow,
//! restarts, failures parked and stopped or skipped, one active runner.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::testing::conformance::{FixtureEvent, added, stream};
use annals::{
    AppendRequest, BoxError, Envelope, EventStore, ExpectedVersion, FailurePolicy, GlobalPosition,
    MemoryEventStore, MemoryProjectionBackend, Metadata, NewEvent, OnExhausted, Payload,
    Projection, ProjectionBackend, ProjectionRunner, ProjectionState, RunnerConfig,
};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// Sums amounts per stream; fails on amounts listed in `poison` while
/// `broken` is set.
#[derive(Clone, Default)]
struct Totals {
    totals: Arc<Mutex<HashMap<String, i64>>>,
    applied: Arc<Mutex<Vec<Uuid>>>,
    poison: Arc<Mutex<Vec<i64>>>,
    broken: Arc<AtomicBool>,
}

impl Totals {
    fn total(&self, stream: &str) -> i64 {
        self.totals
            .lock()
            .unwrap()
            .get(stream)
            .copied()
            .unwrap_or(0)
    }
}

impl Projection<()> for Totals {
    type Event = FixtureEvent;

    fn name(&self) -> &str {
        "totals"
    }

    async fn handle(&self, _: &mut (), envelope: &Envelope<FixtureEvent>) -> Result<(), BoxError> {
        let amount = match &envelope.event {
            FixtureEvent::Added { amount, .. } => *amount,
            FixtureEvent::Removed { amount } => -amount,
            _ => 0,
        };
        if self.broken.load(Ordering::SeqCst) && self.poison.lock().unwrap().contains(&amount) {
            return Err(format!("cannot apply {amount}").into());
        }
        *self
            .totals
            .lock()
            .unwrap()
            .entry(envelope.stream.to_string())
            .or_default() += amount;
        self.applied.lock().unwrap().push(envelope.event_id);
        Ok(())
    }
}

fn fast(on_exhausted: OnExhausted) -> RunnerConfig {
    RunnerConfig::default()
        .with_batch_size(7)
        .with_poll_interval(Duration::from_millis(50))
        .with_failure_policy(
            FailurePolicy::default()
                .with_max_attempts(3)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
                .with_on_exhausted(on_exhausted),
        )
}

async fn append(store: &MemoryEventStore, name: &str, amounts: &[i64]) -> GlobalPosition {
    store
        .append(
            AppendRequest::new(stream(name), ExpectedVersion::Any)
                .events(amounts.iter().copied().map(added)),
        )
        .await
        .unwrap()
        .last_position
}

#[tokio::test]
async fn catches_up_then_follows_live() {
    let store = MemoryEventStore::new();
    for n in 0..10 {
        append(&store, &format!("s-{}", n % 3), &[1, 2]).await;
    }
    let totals = Totals::default();
    let mut handle = ProjectionRunner::new(
        store.clone(),
        MemoryProjectionBackend::new(),
        totals.clone(),
    )
    .with_config(fast(OnExhausted::Stop))
    .spawn();
    let last = append(&store, "s-0", &[100]).await;
    let status = handle.wait_for(last, WAIT).await;
    assert_eq!(status.checkpoint, last);
    assert_eq!(status.applied, 21);
    assert_eq!(
        totals.total("s-0") + totals.total("s-1") + totals.total("s-2"),
        130
    );
    let status = handle
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await;
    assert_eq!(status.state, ProjectionState::Live);
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn restarts_resume_from_the_checkpoint_applying_each_event_once() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let totals = Totals::default();
    let mut last = GlobalPosition::START;
    for round in 0..5 {
        let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
            .with_config(fast(OnExhausted::Stop))
            .spawn();
        for n in 0..20 {
            last = append(&store, &format!("s-{}", n % 4), &[round + 1]).await;
        }
        if round % 2 == 0 {
            handle.abort();
        } else {
            handle.stop().await.unwrap();
        }
    }
    let mut handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone()).spawn();
    assert_eq!(handle.wait_for(last, WAIT).await.checkpoint, last);
    let applied = totals.applied.lock().unwrap().clone();
    let mut unique = applied.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(applied.len(), 100, "every event once");
    assert_eq!(unique.len(), 100, "no event twice");
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn a_poison_event_is_parked_and_stops_the_projection_until_fixed() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let totals = Totals::default();
    totals.poison.lock().unwrap().push(13);
    totals.broken.store(true, Ordering::SeqCst);
    append(&store, "s", &[1, 2]).await;
    append(&store, "s", &[13, 4]).await;
    let last = append(&store, "s", &[5]).await;

    let mut handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .with_config(fast(OnExhausted::Stop))
        .spawn();
    let status = handle
        .wait_until(WAIT, |status| {
            matches!(status.state, ProjectionState::Stopped { .. })
        })
        .await;
    match &status.state {
        ProjectionState::Stopped { error: Some(error) } => {
            assert!(error.contains("cannot apply 13"), "{error}")
        }
        other => panic!("expected a stop with an error, got {other:?}"),
    }
    assert_eq!(
        totals.total("s"),
        3,
        "nothing after the poison event is applied"
    );
    assert_eq!(status.parked, 1);
    let parked = backend.parked("totals", 1).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(parked[0].event.version, 3);
    assert!(handle.is_finished());

    // The cause is fixed; a restart retries the parked event first.
    totals.broken.store(false, Ordering::SeqCst);
    let mut handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .with_config(fast(OnExhausted::Stop))
        .spawn();
    assert_eq!(handle.wait_for(last, WAIT).await.checkpoint, last);
    assert_eq!(totals.total("s"), 25);
    assert!(
        backend.parked("totals", 1).await.unwrap().is_empty(),
        "applied, so unparked"
    );
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn with_skip_a_poison_event_is_parked_counted_and_passed() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let totals = Totals::default();
    totals.poison.lock().unwrap().push(13);
    totals.broken.store(true, Ordering::SeqCst);
    append(&store, "s", &[1, 13, 2]).await;
    let last = append(&store, "s", &[4]).await;
    let mut handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .with_config(fast(OnExhausted::Skip))
        .spawn();
    let status = handle.wait_for(last, WAIT).await;
    assert_eq!(status.checkpoint, last);
    assert_eq!((status.skipped, status.parked), (1, 1));
    assert_eq!(totals.total("s"), 7);
    assert_eq!(backend.parked("totals", 1).await.unwrap().len(), 1);
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn events_of_other_types_advance_the_checkpoint_without_the_handler() {
    let store = MemoryEventStore::new();
    let totals = Totals::default();
    append(&store, "s", &[1]).await;
    let foreign = NewEvent::raw(
        "InventoryCounted",
        1,
        Payload::encode(&1).unwrap(),
        Metadata::default(),
    );
    let last = store
        .append(AppendRequest::new(stream("stock-1"), ExpectedVersion::Any).events([foreign]))
        .await
        .unwrap()
        .last_position;
    let mut handle = ProjectionRunner::new(
        store.clone(),
        MemoryProjectionBackend::new(),
        totals.clone(),
    )
    .spawn();
    let status = handle.wait_for(last, WAIT).await;
    assert_eq!(status.checkpoint, last);
    assert_eq!(status.applied, 1);
    handle.stop().await.unwrap();
}

#[tokio::test]
async fn an_undecodable_event_of_a_known_type_stops_the_projection() {
    let store = MemoryEventStore::new();
    let bad = NewEvent::raw(
        "Removed",
        1,
        Payload::encode(&"oops").unwrap(),
        Metadata::default(),
    );
    store
        .append(AppendRequest::new(stream("s"), ExpectedVersion::Any).events([added(1), bad]))
        .await
        .unwrap();
    let backend = MemoryProjectionBackend::new();
    let mut handle = ProjectionRunner::new(store, backend.clone(), Totals::default())
        .with_config(fast(OnExhausted::Stop))
        .spawn();
    let status = handle
        .wait_until(WAIT, |status| {
            matches!(status.state, ProjectionState::Stopped { .. })
        })
        .await;
    let ProjectionState::Stopped { error: Some(error) } = &status.state else {
        panic!("expected a stop, got {:?}", status.state);
    };
    assert!(error.contains("cannot decode `Removed`"), "{error}");
    assert_eq!(status.applied, 1);
    assert_eq!(backend.parked("totals", 1).await.unwrap()[0].attempts, 3);
}

#[tokio::test]
async fn only_one_runner_of_a_projection_applies_and_the_other_takes_over() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let first_model = Totals::default();
    let second_model = Totals::default();
    let mut first = ProjectionRunner::new(store.clone(), backend.clone(), first_model.clone())
        .with_config(fast(OnExhausted::Stop))
        .spawn();
    let mut second = ProjectionRunner::new(store.clone(), backend.clone(), second_model.clone())
        .with_config(fast(OnExhausted::Stop))
        .spawn();
    let last = append(&store, "s", &[1, 2, 3]).await;
    first.wait_for(last, WAIT).await;
    second.wait_for(last, Duration::from_millis(200)).await;
    let applied_by_first = first_model.applied.lock().unwrap().len();
    let applied_by_second = second_model.applied.lock().unwrap().len();
    assert_eq!(
        applied_by_first + applied_by_second,
        3,
        "exactly one runner applied them"
    );
    let (survivor, survivor_model) = if applied_by_first == 3 {
        first.abort();
        (second, second_model)
    } else {
        second.abort();
        (first, first_model)
    };
    let mut survivor = survivor;
    let last = append(&store, "s", &[4]).await;
    assert_eq!(survivor.wait_for(last, WAIT).await.checkpoint, last);
    assert_eq!(
        survivor_model.applied.lock().unwrap().len(),
        1,
        "it continued from the shared checkpoint"
    );
    survivor.stop().await.unwrap();
}
