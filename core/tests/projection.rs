//! The projection runner on the in-memory backend: catch-up, live follow,
//! restarts, failures parked and stopped or skipped and replayed, one
//! active runner, versions rebuilt beside each other and promoted, resets,
//! the backlog in the status.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::testing::conformance::{FixtureEvent, added, stream};
use annals::{
    AppendRequest, Backoff, BoxError, Envelope, EventStore, ExpectedVersion, GlobalPosition,
    MemoryEventStore, MemoryProjectionBackend, Metadata, NewEvent, Payload, Projection,
    ProjectionBackend, ProjectionExhausted, ProjectionRunner, ProjectionState, RetryPolicy,
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
    /// The projection's version (1 when 0).
    version: u32,
    /// The versions promoted, in order, shared by every version.
    promoted: Arc<Mutex<Vec<u32>>>,
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

    fn version(&self) -> u32 {
        self.version.max(1)
    }

    async fn promote(&self, _: &mut ()) -> Result<(), BoxError> {
        self.promoted.lock().unwrap().push(self.version());
        Ok(())
    }

    async fn reset(&self, _: &mut ()) -> Result<(), BoxError> {
        self.totals.lock().unwrap().clear();
        self.applied.lock().unwrap().clear();
        Ok(())
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

/// Small batches, quick polls, three quick attempts per event.
trait Fast {
    fn fast(self, on_exhausted: ProjectionExhausted) -> Self;
}

impl<P: Projection<()>> Fast for ProjectionRunner<MemoryEventStore, MemoryProjectionBackend, P> {
    fn fast(self, on_exhausted: ProjectionExhausted) -> Self {
        self.batch_size(7)
            .poll_interval(Duration::from_millis(50))
            .retry_policy(
                retries(3, Duration::from_millis(1), Duration::from_millis(5))
                    .with_on_exhausted(on_exhausted),
            )
    }
}

fn retries(attempts: u32, initial: Duration, max: Duration) -> RetryPolicy<ProjectionExhausted> {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_backoff(Backoff::exponential(initial, max))
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
    let handle = ProjectionRunner::new(
        store.clone(),
        MemoryProjectionBackend::new(),
        totals.clone(),
    )
    .fast(ProjectionExhausted::Stop)
    .start()
    .unwrap();
    let last = append(&store, "s-0", &[100]).await;
    let status = handle.wait_for(last, WAIT).await.unwrap();
    assert_eq!(status.checkpoint, last);
    assert_eq!(status.applied, 21);
    assert_eq!(
        totals.total("s-0") + totals.total("s-1") + totals.total("s-2"),
        130
    );
    let status = handle
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Live);
    handle.stop(WAIT).await.unwrap();
}

#[tokio::test]
async fn restarts_resume_from_the_checkpoint_applying_each_event_once() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let totals = Totals::default();
    let mut last = GlobalPosition::START;
    for round in 0..5 {
        let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
            .fast(ProjectionExhausted::Stop)
            .start()
            .unwrap();
        for n in 0..20 {
            last = append(&store, &format!("s-{}", n % 4), &[round + 1]).await;
        }
        if round % 2 == 0 {
            handle.abort().await;
        } else {
            handle.stop(WAIT).await.unwrap();
        }
    }
    let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .start()
        .unwrap();
    assert_eq!(handle.wait_for(last, WAIT).await.unwrap().checkpoint, last);
    let applied = totals.applied.lock().unwrap().clone();
    let mut unique = applied.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(applied.len(), 100, "every event once");
    assert_eq!(unique.len(), 100, "no event twice");
    handle.stop(WAIT).await.unwrap();
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

    let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    let status = handle
        .wait_until(WAIT, |status| {
            matches!(status.state, ProjectionState::Stopped { .. })
        })
        .await
        .unwrap();
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
    let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    assert_eq!(handle.wait_for(last, WAIT).await.unwrap().checkpoint, last);
    assert_eq!(totals.total("s"), 25);
    assert!(
        backend.parked("totals", 1).await.unwrap().is_empty(),
        "applied, so unparked"
    );
    handle.stop(WAIT).await.unwrap();
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
    let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .fast(ProjectionExhausted::Skip)
        .start()
        .unwrap();
    let status = handle.wait_for(last, WAIT).await.unwrap();
    assert_eq!(status.checkpoint, last);
    assert_eq!((status.skipped, status.parked), (1, 1));
    assert_eq!(totals.total("s"), 7);
    assert_eq!(backend.parked("totals", 1).await.unwrap().len(), 1);
    handle.stop(WAIT).await.unwrap();
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
    let handle = ProjectionRunner::new(
        store.clone(),
        MemoryProjectionBackend::new(),
        totals.clone(),
    )
    .start()
    .unwrap();
    let status = handle.wait_for(last, WAIT).await.unwrap();
    assert_eq!(status.checkpoint, last);
    assert_eq!(status.applied, 1);
    handle.stop(WAIT).await.unwrap();
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
    let handle = ProjectionRunner::new(store, backend.clone(), Totals::default())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    let status = handle
        .wait_until(WAIT, |status| {
            matches!(status.state, ProjectionState::Stopped { .. })
        })
        .await
        .unwrap();
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
    let first = ProjectionRunner::new(store.clone(), backend.clone(), first_model.clone())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    let second = ProjectionRunner::new(store.clone(), backend.clone(), second_model.clone())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    let last = append(&store, "s", &[1, 2, 3]).await;
    // One of them is the standby and never gets there.
    let _ = first.wait_for(last, WAIT).await;
    let _ = second.wait_for(last, Duration::from_millis(200)).await;
    let applied_by_first = first_model.applied.lock().unwrap().len();
    let applied_by_second = second_model.applied.lock().unwrap().len();
    assert_eq!(
        applied_by_first + applied_by_second,
        3,
        "exactly one runner applied them"
    );
    let (survivor, survivor_model) = if applied_by_first == 3 {
        first.abort().await;
        (second, second_model)
    } else {
        second.abort().await;
        (first, first_model)
    };
    let survivor = survivor;
    let last = append(&store, "s", &[4]).await;
    assert_eq!(
        survivor.wait_for(last, WAIT).await.unwrap().checkpoint,
        last
    );
    assert_eq!(
        survivor_model.applied.lock().unwrap().len(),
        1,
        "it continued from the shared checkpoint"
    );
    survivor.stop(WAIT).await.unwrap();
}

#[tokio::test]
async fn the_first_version_serves_at_once_and_a_new_version_rebuilds_beside_it() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    for n in 0..30 {
        append(&store, &format!("s-{}", n % 4), &[1, 2, 3]).await;
    }
    let v1 = Totals::default();
    let first = ProjectionRunner::new(store.clone(), backend.clone(), v1.clone())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    let last = append(&store, "s-0", &[10]).await;
    let status = first.wait_for(last, WAIT).await.unwrap();
    assert_eq!(status.serving_version, Some(1));
    assert_eq!(backend.serving("totals").await.unwrap(), Some(1));
    assert_eq!(*v1.promoted.lock().unwrap(), vec![1]);

    // Version 2 rebuilds from the start while version 1 keeps serving and
    // applying; a handler that blocks holds it in the rebuild.
    let v2 = Totals {
        version: 2,
        promoted: v1.promoted.clone(),
        poison: Arc::new(Mutex::new(vec![10])),
        broken: Arc::new(AtomicBool::new(true)),
        ..Totals::default()
    };
    let second = ProjectionRunner::new(store.clone(), backend.clone(), v2.clone())
        .fast(ProjectionExhausted::Stop)
        .retry_policy(retries(
            u32::MAX,
            Duration::from_millis(5),
            Duration::from_millis(5),
        ))
        .start()
        .unwrap();
    let status = second
        .wait_until(WAIT, |status| status.applied >= 7)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Rebuilding, "{status:?}");
    assert_eq!(status.serving_version, Some(1));
    assert_eq!(backend.serving("totals").await.unwrap(), Some(1));
    let later = append(&store, "s-1", &[5]).await;
    let status = first.wait_for(later, WAIT).await.unwrap();
    assert_eq!(status.checkpoint, later, "the serving version keeps up");

    // Unblocked, it catches up and is promoted.
    v2.broken.store(false, Ordering::SeqCst);
    let status = second
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Live, "{status:?}");
    assert_eq!(status.checkpoint, later);
    assert_eq!(status.serving_version, Some(2));
    assert_eq!(backend.serving("totals").await.unwrap(), Some(2));
    assert_eq!(*v1.promoted.lock().unwrap(), vec![1, 2]);
    for n in 0..4 {
        let stream = format!("s-{n}");
        assert_eq!(v2.total(&stream), v1.total(&stream), "{stream}");
    }
    assert_eq!(v2.applied.lock().unwrap().len(), 92);

    // An older version started again does not take the serving place back.
    first.stop(WAIT).await.unwrap();
    let again = ProjectionRunner::new(store.clone(), backend.clone(), v1.clone())
        .fast(ProjectionExhausted::Stop)
        .start()
        .unwrap();
    let status = again
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.serving_version, Some(2));
    assert_eq!(*v1.promoted.lock().unwrap(), vec![1, 2]);
    again.stop(WAIT).await.unwrap();
    second.stop(WAIT).await.unwrap();
}

#[tokio::test]
async fn a_reset_clears_the_version_and_the_next_run_replays_everything_once() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let totals = Totals::default();
    totals.poison.lock().unwrap().push(4);
    totals.broken.store(true, Ordering::SeqCst);
    append(&store, "a", &[1, 2]).await;
    let last = append(&store, "b", &[3, 4]).await;
    let runner = || {
        ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
            .fast(ProjectionExhausted::Skip)
    };
    let handle = runner().start().unwrap();
    handle.wait_for(last, WAIT).await.unwrap();
    handle.stop(WAIT).await.unwrap();
    assert_eq!(backend.parked("totals", 1).await.unwrap().len(), 1);

    totals.broken.store(false, Ordering::SeqCst);
    runner().reset().await.unwrap();
    assert_eq!(backend.checkpoint("totals", 1).await.unwrap(), None);
    assert!(backend.parked("totals", 1).await.unwrap().is_empty());
    assert_eq!(totals.total("a"), 0, "the read model is cleared");

    let handle = runner().start().unwrap();
    let status = handle.wait_for(last, WAIT).await.unwrap();
    assert_eq!(status.checkpoint, last);
    assert_eq!((totals.total("a"), totals.total("b")), (3, 7));
    assert_eq!(totals.applied.lock().unwrap().len(), 4);
    handle.stop(WAIT).await.unwrap();
}

/// Applies nothing; has no way to clear a read model.
struct NoReset;

impl Projection<()> for NoReset {
    type Event = FixtureEvent;

    fn name(&self) -> &str {
        "no_reset"
    }

    async fn handle(&self, _: &mut (), _: &Envelope<FixtureEvent>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_projection_that_cannot_clear_its_read_model_refuses_a_reset() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let last = append(&store, "a", &[1]).await;
    let handle = ProjectionRunner::new(store.clone(), backend.clone(), NoReset)
        .start()
        .unwrap();
    handle.wait_for(last, WAIT).await.unwrap();
    handle.stop(WAIT).await.unwrap();
    let error = ProjectionRunner::new(store, backend.clone(), NoReset)
        .reset()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Projection::reset"), "{error}");
    assert_eq!(
        backend.checkpoint("no_reset", 1).await.unwrap(),
        Some(last),
        "nothing forgotten"
    );
}

#[tokio::test]
async fn skipped_events_are_replayed_through_the_handle_of_a_running_projection() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    let totals = Totals::default();
    totals.poison.lock().unwrap().extend([13, 14]);
    totals.broken.store(true, Ordering::SeqCst);
    append(&store, "a", &[1, 13, 2]).await;
    let last = append(&store, "b", &[14, 3]).await;
    let handle = ProjectionRunner::new(store.clone(), backend.clone(), totals.clone())
        .fast(ProjectionExhausted::Skip)
        .start()
        .unwrap();
    let status = handle.wait_for(last, WAIT).await.unwrap();
    assert_eq!((status.skipped, status.parked), (2, 2));
    assert_eq!((totals.total("a"), totals.total("b")), (3, 3));

    // Still broken: both fail again and stay parked, with one more attempt.
    let report = handle.replay_parked().await.unwrap();
    assert_eq!((report.replayed, report.failed, report.ahead), (0, 2, 0));
    assert!(report.last_error.unwrap().contains("cannot apply 14"));
    let parked = backend.parked("totals", 1).await.unwrap();
    assert_eq!(
        parked
            .iter()
            .map(|parked| parked.attempts)
            .collect::<Vec<_>>(),
        [4, 4]
    );

    totals.broken.store(false, Ordering::SeqCst);
    let report = handle.replay_parked().await.unwrap();
    assert_eq!((report.replayed, report.failed, report.ahead), (2, 0, 0));
    assert!(backend.parked("totals", 1).await.unwrap().is_empty());
    assert_eq!((totals.total("a"), totals.total("b")), (16, 17));
    assert_eq!(totals.applied.lock().unwrap().len(), 5);

    let report = handle.replay_parked().await.unwrap();
    assert_eq!(report, Default::default(), "nothing left to replay");
    handle.stop(WAIT).await.unwrap();
}

#[tokio::test]
async fn the_status_counts_the_backlog_and_reaches_zero_when_caught_up() {
    let store = MemoryEventStore::new();
    let backend = MemoryProjectionBackend::new();
    for n in 0..50 {
        append(&store, &format!("s-{}", n % 5), &[1, 2]).await;
    }
    let last = append(&store, "s-0", &[1]).await;
    let totals = Totals::default();
    totals.poison.lock().unwrap().push(2);
    totals.broken.store(true, Ordering::SeqCst);
    let handle = ProjectionRunner::new(store.clone(), backend, totals.clone())
        .fast(ProjectionExhausted::Stop)
        .progress(Duration::ZERO, 40)
        .retry_policy(retries(
            u32::MAX,
            Duration::from_millis(5),
            Duration::from_millis(5),
        ))
        .start()
        .unwrap();
    // Held at the first event of amount 2: the backlog behind it is counted,
    // up to the limit.
    let status = handle
        .wait_until(WAIT, |status| status.lag_events.is_some())
        .await
        .unwrap();
    assert_eq!(status.lag_events, Some(40), "{status:?}");
    assert!(status.lag_events_capped);
    assert_eq!(
        status.horizon_held_for, None,
        "nothing holds a memory store back"
    );

    totals.broken.store(false, Ordering::SeqCst);
    let status = handle.wait_for(last, WAIT).await.unwrap();
    assert_eq!(status.checkpoint, last);
    let status = handle
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.lag_events, Some(0));
    assert!(!status.lag_events_capped);
    handle.stop(WAIT).await.unwrap();
}
