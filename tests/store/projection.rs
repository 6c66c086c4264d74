//! The projection runner on PostgreSQL: each event applied exactly once
//! while runners are aborted and their connections killed, one active runner
//! with a standby that takes over, a poison event parked until fixed, and
//! the checkpoint's compare-and-set.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use annals::testing::conformance::{FixtureEvent, added, stream};
use annals::{
    AppendRequest, BoxError, Envelope, EventStore, ExpectedVersion, FailurePolicy, GlobalPosition,
    Projection, ProjectionBackend, ProjectionHandle, ProjectionRunner, ProjectionState,
    RunnerConfig,
};
use annals_postgres::{PgEventStore, PgProjectionBackend, PgTx};

use crate::common::{TestStore, connect, database_url, fresh_store};

/// Long enough for a runner held back by another test's open transaction.
const WAIT: Duration = Duration::from_secs(30);

/// Per stream: events applied and the sum of their amounts, in the tables
/// `tally` and `tally_applied` (one row per event: a second application
/// fails on its key). Fails on the amount `poison` while `broken` is set.
#[derive(Clone)]
struct Tally {
    schema: String,
    runner: &'static str,
    poison: i64,
    broken: Arc<AtomicBool>,
}

impl Tally {
    fn new(store: &TestStore, runner: &'static str) -> Self {
        Tally {
            schema: store.schema().name().to_owned(),
            runner,
            poison: 13,
            broken: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Projection<PgTx> for Tally {
    type Event = FixtureEvent;

    fn name(&self) -> &str {
        "tally"
    }

    async fn setup(&self, tx: &mut PgTx) -> Result<(), BoxError> {
        let schema = &self.schema;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{schema}\".tally
                 (stream_id text PRIMARY KEY, events bigint NOT NULL, amount bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{schema}\".tally_applied
                 (event_id uuid PRIMARY KEY, runner text NOT NULL)"
        ))
        .await?;
        Ok(())
    }

    async fn handle(&self, tx: &mut PgTx, event: &Envelope<FixtureEvent>) -> Result<(), BoxError> {
        let FixtureEvent::Added { amount, .. } = &event.event else {
            return Err(format!("unexpected event {:?}", event.event).into());
        };
        if *amount == self.poison && self.broken.load(Ordering::SeqCst) {
            return Err(format!("cannot apply {amount}").into());
        }
        let schema = &self.schema;
        let applied = tx
            .prepare_cached(&format!(
                "INSERT INTO \"{schema}\".tally_applied (event_id, runner) VALUES ($1, $2)"
            ))
            .await?;
        tx.execute(&applied, &[&event.event_id, &self.runner])
            .await?;
        let tally = tx
            .prepare_cached(&format!(
                "INSERT INTO \"{schema}\".tally AS t (stream_id, events, amount) VALUES ($1, 1, $2)
                 ON CONFLICT (stream_id) DO UPDATE
                    SET events = t.events + 1, amount = t.amount + excluded.amount"
            ))
            .await?;
        tx.execute(&tally, &[&event.stream.as_str(), amount])
            .await?;
        Ok(())
    }
}

fn config() -> RunnerConfig {
    RunnerConfig::default()
        .with_batch_size(50)
        .with_poll_interval(Duration::from_millis(50))
        .with_failure_policy(
            FailurePolicy::default()
                .with_max_attempts(3)
                .with_backoff(Duration::from_millis(5), Duration::from_millis(50)),
        )
}

fn spawn(store: &PgEventStore, tally: &Tally) -> ProjectionHandle {
    ProjectionRunner::new(
        store.clone(),
        PgProjectionBackend::new(store),
        tally.clone(),
    )
    .with_config(config())
    .spawn()
}

/// Another store over `store`'s schema whose connections (pool, listener,
/// lease) report `application_name`, so that they can be killed alone.
async fn store_named(store: &TestStore, application_name: &str) -> PgEventStore {
    PgEventStore::connect(
        store
            .schema()
            .config()
            .with_application_name(application_name)
            .with_migrations_on_connect(false),
    )
    .await
    .expect("connecting to the test database")
}

async fn append(store: &TestStore, name: &str, amounts: &[i64]) -> GlobalPosition {
    store
        .append(
            AppendRequest::new(stream(name), ExpectedVersion::Any)
                .events(amounts.iter().copied().map(added)),
        )
        .await
        .expect("appending")
        .last_position
}

/// Per stream, (events, amount) of every committed event, and the events'
/// ids: what the read model must hold.
async fn fold(store: &TestStore) -> (BTreeMap<String, (i64, i64)>, HashSet<uuid::Uuid>) {
    let mut tally = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store.read_all(after, 1000).await.expect("reading all");
        let Some(last) = page.last() else { break };
        after = last.position;
        for record in &page {
            let [FixtureEvent::Added { amount, .. }] = record.decode().unwrap()[..] else {
                panic!("unexpected event {record:?}");
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

/// The read model: per stream (events, amount), and per applied event the
/// runner that applied it.
async fn read_model(
    store: &TestStore,
) -> (BTreeMap<String, (i64, i64)>, BTreeMap<uuid::Uuid, String>) {
    let client = connect(database_url()).await.expect("a test connection");
    let schema = store.schema().name();
    let tally = client
        .query(
            &format!("SELECT stream_id, events, amount FROM \"{schema}\".tally"),
            &[],
        )
        .await
        .expect("the tally")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    let applied = client
        .query(
            &format!("SELECT event_id, runner FROM \"{schema}\".tally_applied"),
            &[],
        )
        .await
        .expect("the applied events")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    (tally, applied)
}

/// Asserts that the read model is the fold of every committed event, each
/// applied once.
async fn assert_exact(store: &TestStore) -> BTreeMap<uuid::Uuid, String> {
    let (expected, ids) = fold(store).await;
    let (tally, applied) = read_model(store).await;
    assert_eq!(tally, expected, "the read model is the fold of the events");
    let applied_ids: HashSet<_> = applied.keys().copied().collect();
    assert_eq!(applied_ids, ids, "every event applied, once");
    applied
}

/// Waits until the runner's checkpoint reaches `position` and fails the test
/// otherwise.
async fn reach(handle: &mut ProjectionHandle, position: GlobalPosition) {
    let status = handle.wait_for(position, WAIT).await;
    assert!(
        status.checkpoint >= position,
        "the runner reaches {position}: {status:?}"
    );
}

/// Kills every connection reporting `application_name` once one of them is
/// inside a transaction (mid-batch); returns how many it killed.
async fn kill_mid_batch(application_name: &str) -> u64 {
    let client = connect(database_url()).await.expect("a test connection");
    let started = tokio::time::Instant::now();
    loop {
        // An explicit transaction between statements, or running one that is
        // not its first: a batch in progress.
        let in_batch: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE application_name = $1
                    AND (state = 'idle in transaction'
                         OR (state = 'active' AND xact_start < query_start))",
                &[&application_name],
            )
            .await
            .expect("watching the runner")
            .get(0);
        if in_batch > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the runner was never seen inside a batch"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .expect("killing the runner's connections");
    killed.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_applies_each_event_once_while_runners_are_killed() {
    let store = fresh_store().await;
    let application_name = format!("{}-runner", store.schema().application_name());
    let tally = Tally::new(&store, "any");

    // Writers append until the killing is done, and at least 100 times each.
    let killing_done = Arc::new(AtomicBool::new(false));
    let appends = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            let killing_done = Arc::clone(&killing_done);
            let appends = Arc::clone(&appends);
            tokio::spawn(async move {
                let mut last = GlobalPosition::START;
                let mut n = 0;
                while n < 100 || !killing_done.load(Ordering::SeqCst) {
                    let amounts: Vec<i64> = (0..fastrand::usize(1..=5))
                        .map(|_| fastrand::i64(1..100))
                        .collect();
                    let name = format!("s-{}", (writer * 7 + n) % 10);
                    last = last.max(append(&store, &name, &amounts).await);
                    n += 1;
                    appends.fetch_add(1, Ordering::SeqCst);
                }
                last
            })
        })
        .collect();

    let mut killed_connections = 0;
    for round in 0..6 {
        // A store of its own per runner, as a restarted process has: no
        // connection killed under an earlier runner is reused.
        let runner_store = store_named(&store, &application_name).await;
        let handle = spawn(&runner_store, &tally);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..250))).await;
        if round % 2 == 1 {
            // Its transaction, lease and listener die under it mid-batch.
            killed_connections += kill_mid_batch(&application_name).await;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..200))).await;
        }
        handle.abort();
    }
    killing_done.store(true, Ordering::SeqCst);
    let mut last = GlobalPosition::START;
    for writer in writers {
        last = last.max(writer.await.unwrap());
    }
    let mut handle = spawn(&store_named(&store, &application_name).await, &tally);
    reach(&mut handle, last).await;
    handle.stop().await.unwrap();
    assert!(killed_connections >= 2, "connections were killed");
    assert!(appends.load(Ordering::SeqCst) >= 400);

    assert_exact(&store).await;
    let backend = PgProjectionBackend::new(&store);
    assert!(backend.parked("tally", 1).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_has_one_active_runner_and_a_standby_takes_over() {
    let store = fresh_store().await;
    let first_tally = Tally::new(&store, "first");
    let second_tally = Tally::new(&store, "second");
    let first = spawn(&store, &first_tally);
    let second = spawn(&store, &second_tally);
    let mut last = GlobalPosition::START;
    for n in 0..40 {
        last = append(&store, &format!("s-{}", n % 4), &[1, 2, 3]).await;
    }

    // Whichever got the lease applies everything; the other stands by.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (active, mut standby, standby_name) = loop {
        if first.status().checkpoint >= last {
            break (first, second, "second");
        }
        if second.status().checkpoint >= last {
            break (second, first, "first");
        }
        assert!(tokio::time::Instant::now() < deadline, "nobody applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let active_name = if standby_name == "first" {
        "second"
    } else {
        "first"
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(standby.status().state, ProjectionState::Standby);
    assert_eq!(standby.status().applied, 0);
    assert_eq!(active.status().applied, 120);
    let applied = assert_exact(&store).await;
    assert!(applied.values().all(|runner| runner == active_name));

    // The active one dies; its lease goes with its connection, and the
    // standby takes over from the shared checkpoint.
    active.abort();
    for n in 0..10 {
        last = append(&store, &format!("s-{}", n % 4), &[4]).await;
    }
    let status = standby.wait_for(last, Duration::from_secs(5)).await;
    assert!(
        status.checkpoint >= last,
        "the standby took over: {status:?}"
    );
    assert_eq!(status.applied, 10);
    let applied = assert_exact(&store).await;
    assert_eq!(
        applied
            .values()
            .filter(|runner| *runner == standby_name)
            .count(),
        10
    );
    standby.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_parks_a_poison_event_and_stops_until_fixed() {
    let store = fresh_store().await;
    let backend = PgProjectionBackend::new(&store);
    let tally = Tally::new(&store, "any");
    tally.broken.store(true, Ordering::SeqCst);
    append(&store, "s", &[1, 2]).await;
    append(&store, "s", &[13, 4]).await;
    let last = append(&store, "s", &[5]).await;

    let mut handle = spawn(&store, &tally);
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
    assert_eq!(status.parked, 1);
    let (model, _) = read_model(&store).await;
    assert_eq!(
        model.get("s"),
        Some(&(2, 3)),
        "nothing after the poison event is applied"
    );

    let parked = backend.parked("tally", 1).await.unwrap();
    assert_eq!(parked.len(), 1);
    let poison = store
        .read_all(GlobalPosition::START, 10)
        .await
        .unwrap()
        .into_iter()
        .nth(2)
        .unwrap();
    let parked = &parked[0];
    assert_eq!((parked.projection.as_str(), parked.version), ("tally", 1));
    assert_eq!(parked.attempts, 3);
    assert!(parked.error.contains("cannot apply 13"), "{}", parked.error);
    assert_eq!(parked.event.event_id, poison.event_id);
    assert_eq!(parked.event.position, poison.position);
    assert_eq!(parked.event.stream, poison.stream);
    assert_eq!(parked.event.version, 3);
    assert_eq!(parked.event.event_type, poison.event_type);
    assert_eq!(parked.event.event_version, poison.event_version);
    assert_eq!(parked.event.payload.get(), poison.payload.get());
    assert_eq!(parked.event.metadata, poison.metadata);
    assert_eq!(parked.event.recorded_at, poison.recorded_at);
    assert!(handle.is_finished());

    // Fixed: a restart applies the parked event first, then the rest.
    tally.broken.store(false, Ordering::SeqCst);
    let mut handle = spawn(&store, &tally);
    reach(&mut handle, last).await;
    assert_exact(&store).await;
    assert!(
        backend.parked("tally", 1).await.unwrap().is_empty(),
        "applied, so unparked"
    );
    handle.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_checkpoint_moves_only_from_where_it_is() {
    let store = fresh_store().await;
    let backend = PgProjectionBackend::new(&store);
    let schema = store.schema().name();
    let effect = format!("INSERT INTO \"{schema}\".effects (n) VALUES ($1)");
    let client = connect(database_url()).await.unwrap();
    client
        .batch_execute(&format!("CREATE TABLE \"{schema}\".effects (n bigint)"))
        .await
        .unwrap();
    let (first, second) = (GlobalPosition::new(7, 3), GlobalPosition::new(9, 1));

    // No checkpoint yet: only a move from the start creates it.
    let tx = backend.begin("p", 1).await.unwrap();
    tx.execute(&effect, &[&1_i64]).await.unwrap();
    let error = backend.commit(tx, "p", 1, first, second).await.unwrap_err();
    assert!(!error.is_retriable(), "{error:?}");
    assert_eq!(backend.checkpoint("p", 1).await.unwrap(), None);

    let tx = backend.begin("p", 1).await.unwrap();
    tx.execute(&effect, &[&2_i64]).await.unwrap();
    backend
        .commit(tx, "p", 1, GlobalPosition::START, first)
        .await
        .unwrap();
    assert_eq!(backend.checkpoint("p", 1).await.unwrap(), Some(first));

    // A stale `from` (another runner moved it) writes nothing.
    let tx = backend.begin("p", 1).await.unwrap();
    tx.execute(&effect, &[&3_i64]).await.unwrap();
    let error = backend
        .commit(tx, "p", 1, GlobalPosition::START, second)
        .await
        .unwrap_err();
    assert!(!error.is_retriable(), "{error:?}");
    assert_eq!(backend.checkpoint("p", 1).await.unwrap(), Some(first));

    let tx = backend.begin("p", 1).await.unwrap();
    tx.execute(&effect, &[&4_i64]).await.unwrap();
    backend.commit(tx, "p", 1, first, second).await.unwrap();
    assert_eq!(backend.checkpoint("p", 1).await.unwrap(), Some(second));
    assert_eq!(
        backend.checkpoint("p", 2).await.unwrap(),
        None,
        "versions have checkpoints of their own"
    );

    let effects: Vec<i64> = client
        .query(
            &format!("SELECT n FROM \"{schema}\".effects ORDER BY n"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(effects, [2, 4], "refused commits wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_runner_rides_out_killed_connections_on_its_own() {
    let store = fresh_store().await;
    let application_name = format!("{}-runner", store.schema().application_name());
    let tally = Tally::new(&store, "any");
    // One runner for the whole test: it must recover by itself, over a pool
    // that hands out connections killed under it.
    let runner_store = store_named(&store, &application_name).await;
    let mut handle = spawn(&runner_store, &tally);

    // Writers keep appending, so that the runner is inside a batch whenever
    // its connections are killed.
    let writing_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let writing_done = Arc::clone(&writing_done);
        tokio::spawn(async move {
            let mut last = GlobalPosition::START;
            let mut n = 0;
            while !writing_done.load(Ordering::SeqCst) {
                let name = format!("s-{}", n % 7);
                last = last.max(append(&store, &name, &[fastrand::i64(1..100)]).await);
                n += 1;
            }
            last
        })
    };
    let mut killed_connections = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..200))).await;
        killed_connections += kill_mid_batch(&application_name).await;
    }
    writing_done.store(true, Ordering::SeqCst);
    let last = writer.await.unwrap();
    reach(&mut handle, last).await;
    // It may be standing by for a moment (the pool can still hold a killed
    // connection), but it never gave up.
    let status = handle.status();
    assert!(
        !handle.is_finished() && !matches!(status.state, annals::ProjectionState::Stopped { .. }),
        "the runner keeps running: {status:?}"
    );
    handle.stop().await.unwrap();
    assert!(killed_connections >= 5, "connections were killed");
    assert_exact(&store).await;
}
