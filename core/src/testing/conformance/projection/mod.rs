//! The contract of [`ProjectionBackend`], run through the
//! [`ProjectionRunner`]: each event applied once across restarts and
//! takeovers, one active runner per projection version, failures parked
//! and stopped or skipped and replayed, versions rebuilt beside the serving
//! one and promoted, resets, the backlog in the status, and checkpoints
//! moved by compare-and-set.
//!
//! The cases run the projection [`Tally`], whose read model is written
//! with the backend's transactions through a [`TallyModel`] the backend's
//! test harness provides ([`MemoryTally`] for the in-memory backend). Each
//! case takes a [`ProjectionFixture`]: a fresh store, the backend under test
//! over it, and the model.

mod backend;
mod model;
mod parked;
mod runner;
mod versions;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use super::{FixtureEvent, added, stream};
use crate::{
    AppendRequest, Backoff, BoxError, Envelope, EventStore, ExpectedVersion, GlobalPosition,
    Projection, ProjectionBackend, ProjectionExhausted, ProjectionHandle, ProjectionRunner,
    RetryPolicy,
};

pub use backend::checkpoints_move_only_from_where_they_are;
pub use model::{MemoryTally, Tallies, TallyModel};
pub use parked::{
    a_poison_event_is_parked_and_stops_the_projection_until_fixed,
    a_reset_clears_the_version_and_the_next_run_replays_everything_once,
    an_undecodable_event_of_a_known_type_stops_the_projection,
    skipped_events_are_replayed_through_the_handle_once_fixed,
    with_skip_a_poison_event_is_parked_counted_and_passed,
};
pub use runner::{
    a_projection_that_cannot_clear_its_read_model_refuses_a_reset, catches_up_then_follows_live,
    events_of_other_types_advance_the_checkpoint_without_the_handler,
    one_runner_applies_and_a_standby_takes_over_from_its_checkpoint,
    restarts_resume_from_the_checkpoint_applying_each_event_once,
    the_status_counts_the_backlog_and_reaches_zero_when_caught_up,
};
pub use versions::{
    a_held_rebuild_shows_its_progress_while_the_serving_version_keeps_up,
    the_first_version_serves_at_once_and_a_new_version_rebuilds_beside_it,
};

/// How long a case waits for a runner: long enough for one held back by
/// another test's open transaction on a shared server.
pub const WAIT: Duration = Duration::from_secs(30);

/// Events per batch in the cases.
pub const BATCH: usize = 7;

/// What a projection case runs on: a fresh, empty store, the backend under
/// test over it (sharing nothing with other cases), and the read model of
/// [`Tally`] written with the backend's transactions.
#[derive(Debug, Clone)]
pub struct ProjectionFixture<S, B, M> {
    /// The store the events are appended to.
    pub store: S,
    /// The backend under test.
    pub backend: B,
    /// The read model of [`Tally`].
    pub model: M,
}

/// The bounds every case puts on its fixture.
pub trait Fixture: Clone + Send + Sync + 'static {
    /// The store.
    type Store: EventStore + Clone;
    /// The backend under test.
    type Backend: ProjectionBackend;
    /// The read model.
    type Model: TallyModel<<Self::Backend as ProjectionBackend>::Tx>;

    /// The store, the backend and the read model.
    fn parts(&self) -> (&Self::Store, &Self::Backend, &Self::Model);
}

impl<S, B, M> Fixture for ProjectionFixture<S, B, M>
where
    S: EventStore + Clone,
    B: ProjectionBackend,
    M: TallyModel<B::Tx>,
{
    type Store = S;
    type Backend = B;
    type Model = M;

    fn parts(&self) -> (&S, &B, &M) {
        (&self.store, &self.backend, &self.model)
    }
}

/// A projection named `tally` that adds up the amounts of `Added` (and
/// subtracts those of `Removed`) per stream in its model, recording which
/// runner applied each event. It fails on the amounts in its poison list
/// while it is broken, and holds before a batch once it has applied
/// [`Tally::hold_after`] batches, until released.
#[derive(Clone)]
pub struct Tally<M> {
    model: M,
    runner: String,
    version: u32,
    poison: Arc<Mutex<Vec<i64>>>,
    broken: Arc<AtomicBool>,
    batches_before_hold: Arc<AtomicI64>,
}

impl<M> fmt::Debug for Tally<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tally")
            .field("runner", &self.runner)
            .field("version", &self.version)
            .field("broken", &self.broken.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<M> Tally<M> {
    /// Version 1, applied by `runner`, neither poisoned nor held.
    pub fn new(model: M, runner: &str) -> Self {
        Tally {
            model,
            runner: runner.to_owned(),
            version: 1,
            poison: Arc::default(),
            broken: Arc::default(),
            batches_before_hold: Arc::new(AtomicI64::new(i64::MAX)),
        }
    }

    /// The same projection at another version, applied by `runner`, with a
    /// poison list and hold of its own.
    pub fn version(&self, version: u32, runner: &str) -> Self
    where
        M: Clone,
    {
        Tally {
            version,
            ..Tally::new(self.model.clone(), runner)
        }
    }

    /// Fails on `amounts` while broken (and makes it broken).
    pub fn poison(&self, amounts: &[i64]) {
        self.poison
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(amounts);
        self.set_broken(true);
    }

    /// Fails on its poison amounts (`true`) or not.
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    /// Holds before every batch once `batches` more have been applied.
    pub fn hold_after(&self, batches: i64) {
        self.batches_before_hold.store(batches, Ordering::SeqCst);
    }

    /// Lets a held runner through.
    pub fn release(&self) {
        self.batches_before_hold.store(i64::MAX, Ordering::SeqCst);
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }
}

impl<Tx: Send, M: TallyModel<Tx>> Projection<Tx> for Tally<M> {
    type Event = FixtureEvent;

    fn name(&self) -> &str {
        "tally"
    }

    fn version(&self) -> u32 {
        self.version
    }

    async fn setup(&self, tx: &mut Tx) -> Result<(), BoxError> {
        self.model.setup(tx, self.version).await
    }

    async fn promote(&self, tx: &mut Tx) -> Result<(), BoxError> {
        self.model.promote(tx, self.version).await
    }

    async fn reset(&self, tx: &mut Tx) -> Result<(), BoxError> {
        self.model.reset(tx, self.version).await
    }

    async fn handle_batch(
        &self,
        tx: &mut Tx,
        events: &[Envelope<FixtureEvent>],
    ) -> Result<(), BoxError> {
        // Held before the batch writes anything, so that its transaction has
        // no id yet and holds no reader of the global stream back.
        if self.batches_before_hold.fetch_sub(1, Ordering::SeqCst) <= 0 {
            while self.batches_before_hold.load(Ordering::SeqCst) <= 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for event in events {
            self.handle(tx, event).await?;
        }
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope<FixtureEvent>) -> Result<(), BoxError> {
        let amount = match &event.event {
            FixtureEvent::Added { amount, .. } => *amount,
            FixtureEvent::Removed { amount } => -amount,
            other => return Err(format!("unexpected event {other:?}").into()),
        };
        let poisoned = self
            .poison
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&amount);
        if poisoned && self.broken.load(Ordering::SeqCst) {
            return Err(format!("cannot apply {amount}").into());
        }
        let stream = event.stream.as_str();
        self.model
            .apply(
                tx,
                self.version,
                &self.runner,
                event.event_id,
                stream,
                amount,
            )
            .await
    }
}

/// Batches of [`BATCH`], quick polls and progress counts, three quick
/// attempts per event, then `exhausted`.
pub fn runner<F: Fixture>(
    fixture: &F,
    tally: &Tally<F::Model>,
    exhausted: ProjectionExhausted,
) -> ProjectionRunner<F::Store, F::Backend, Tally<F::Model>> {
    let (store, backend, _) = fixture.parts();
    ProjectionRunner::new(store.clone(), backend.clone(), tally.clone())
        .batch_size(BATCH)
        .poll_interval(Duration::from_millis(50))
        .progress(Duration::from_millis(100), 1_000_000)
        .retry_policy(retries(3, Duration::from_millis(5)).with_on_exhausted(exhausted))
}

/// `attempts` attempts per event, `pause` apart.
pub fn retries(attempts: u32, pause: Duration) -> RetryPolicy<ProjectionExhausted> {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_backoff(Backoff::exponential(pause, pause * 10))
}

/// Appends `amounts` to stream `name` as `Added` events; the position of the
/// last.
pub async fn append<S: EventStore>(store: &S, name: &str, amounts: &[i64]) -> GlobalPosition {
    store
        .append(
            AppendRequest::new(stream(name), ExpectedVersion::Any)
                .events(amounts.iter().copied().map(added)),
        )
        .await
        .expect("appending")
        .last_position
}

/// Waits until the runner's checkpoint reaches `position`, failing the case
/// otherwise; the status then.
pub async fn reach(handle: &ProjectionHandle, position: GlobalPosition) -> crate::ProjectionStatus {
    let status = handle
        .wait_for(position, WAIT)
        .await
        .unwrap_or_else(|error| panic!("the runner reaches {position}: {error}"));
    assert!(status.checkpoint >= position, "{status:?}");
    status
}

/// Per stream, (events, amount) of every committed event of the store, and
/// the events' ids: what a complete read model holds.
pub async fn fold<S: EventStore>(store: &S) -> (BTreeMap<String, (i64, i64)>, HashSet<Uuid>) {
    let mut tally = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store.read_all(after, 1000).await.expect("reading all");
        let Some(last) = page.last() else { break };
        after = last.position;
        for record in &page {
            let amount = match record.decode::<FixtureEvent>().expect("decodable")[..] {
                [FixtureEvent::Added { amount, .. }] => amount,
                [FixtureEvent::Removed { amount }] => -amount,
                _ => panic!("unexpected event {record:?}"),
            };
            let entry = tally
                .entry(record.stream.to_string())
                .or_insert((0_i64, 0_i64));
            entry.0 += 1;
            entry.1 += amount;
            assert!(ids.insert(record.event_id), "event ids are unique");
        }
    }
    (tally, ids)
}

/// Asserts that version `version` of the read model (the serving one when
/// `None`) is the fold of every committed event, each applied once; the
/// runner that applied each event.
pub async fn assert_exact<F: Fixture>(fixture: &F, version: Option<u32>) -> BTreeMap<Uuid, String> {
    let (store, _, model) = fixture.parts();
    let (expected, ids) = fold(store).await;
    let tallies = model.read(version).await;
    assert_eq!(
        tallies.streams, expected,
        "the read model is the fold of the events"
    );
    let applied: HashSet<Uuid> = tallies.applied.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        applied.len(),
        tallies.applied.len(),
        "no event applied twice"
    );
    assert_eq!(applied, ids, "every event applied");
    tallies.applied.into_iter().collect()
}

/// A task appending one event at a time to 7 streams, about a thousand a
/// second at most, until finished.
#[derive(Debug)]
pub struct Writer {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<GlobalPosition>,
}

impl Writer {
    /// Starts appending to `store`.
    pub fn start<S: EventStore + Clone>(store: &S) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let task = {
            let (store, done) = (store.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let mut last = GlobalPosition::START;
                let mut n = 0;
                while !done.load(Ordering::SeqCst) {
                    let name = format!("s-{}", n % 7);
                    last = last.max(append(&store, &name, &[fastrand::i64(1..100)]).await);
                    n += 1;
                    // A store in memory takes appends far faster than any
                    // runner applies them: a pace keeps the runners in reach.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                last
            })
        };
        Writer { done, task }
    }

    /// Stops it; the position of its last event.
    pub async fn finish(self) -> GlobalPosition {
        self.done.store(true, Ordering::SeqCst);
        self.task.await.expect("the writer")
    }
}
