//! The projection backend in PostgreSQL ([`PgProjectionBackend`]): the
//! conformance suite of `ProjectionBackend`, and what is Postgres's own:
//! each event applied once while runners' connections are killed mid-batch,
//! and the transaction that holds the horizon back shown in the status.

mod model;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use annals::testing::conformance::projection::{
    ProjectionFixture, Tally, WAIT, Writer, append, assert_exact, reach, runner,
};
use annals::{
    EventStore, GlobalPosition, ProjectionBackend, ProjectionExhausted, ProjectionHandle,
    ProjectionState,
};
use annals_postgres::{PgEventStore, PgProjectionBackend};

use crate::common::{TestStore, connect, database_url, eventually, fresh_store};
use model::PgTally;

annals::projection_backend_tests!(projection_postgres, async {
    crate::projection::own_fixture(&crate::common::fresh_store().await)
});

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
        // Long: the tests share one cluster, and a transaction another test
        // holds open on purpose holds back every reader of the global
        // stream, this runner too (once in five runs of the whole suite on
        // 2026-12-03, none was seen within 10 seconds).
        assert!(
            started.elapsed() < Duration::from_secs(60),
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

/// A runner over a store of its own whose connections report
/// `application_name`, so that they can be killed alone.
async fn named_runner(
    store: &TestStore,
    application_name: &str,
    tally: &Tally<PgTally>,
) -> ProjectionHandle {
    let runners = store_named(store, application_name).await;
    let fixture = ProjectionFixture {
        backend: PgProjectionBackend::new(&runners),
        store: runners,
        model: PgTally::new(store),
    };
    runner(&fixture, tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts")
}

/// The suite's fixture over the test store itself.
fn own_fixture(store: &TestStore) -> ProjectionFixture<TestStore, PgProjectionBackend, PgTally> {
    ProjectionFixture {
        backend: PgProjectionBackend::new(store),
        store: store.clone(),
        model: PgTally::new(store),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_applies_each_event_once_while_runners_are_killed() {
    let store = fresh_store().await;
    let fixture = own_fixture(&store);
    let application_name = format!("{}-runner", store.schema().application_name());
    let tally = Tally::new(fixture.model.clone(), "any");

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
        let handle = named_runner(&store, &application_name, &tally).await;
        // Killed or aborted once it has applied a few events of its own.
        let applied = fastrand::u64(1..=20);
        handle
            .wait_until(WAIT, |status| status.applied >= applied)
            .await
            .expect("the runner applies");
        if round % 2 == 1 {
            // Its transaction, lease and listener die under it mid-batch;
            // it is aborted once it has seen its lease go.
            killed_connections += kill_mid_batch(&application_name).await;
            handle
                .wait_until(WAIT, |status| status.state != ProjectionState::Live)
                .await
                .expect("the runner notices its killed connections");
        }
        handle.abort().await;
    }
    killing_done.store(true, Ordering::SeqCst);
    let mut last = GlobalPosition::START;
    for writer in writers {
        last = last.max(writer.await.unwrap());
    }
    let handle = named_runner(&store, &application_name, &tally).await;
    reach(&handle, last).await;
    handle.stop(WAIT).await.unwrap();
    assert!(killed_connections >= 2, "connections were killed");
    assert!(appends.load(Ordering::SeqCst) >= 400);

    assert_exact(&fixture, Some(1)).await;
    assert!(fixture.backend.parked("tally", 1).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_runner_rides_out_killed_connections_on_its_own() {
    let store = fresh_store().await;
    let fixture = own_fixture(&store);
    let application_name = format!("{}-runner", store.schema().application_name());
    // One runner for the whole test: it must recover by itself, over a pool
    // that hands out connections killed under it.
    let handle = named_runner(
        &store,
        &application_name,
        &Tally::new(fixture.model.clone(), "any"),
    )
    .await;

    // A writer keeps appending, so that the runner is inside a batch
    // whenever its connections are killed; each kill comes once the runner
    // has applied more since the one before.
    let writer = Writer::start(&store);
    let mut killed_connections = 0;
    for _ in 0..5 {
        let applied = handle.status().applied + fastrand::u64(1..=10);
        handle
            .wait_until(WAIT, |status| status.applied >= applied)
            .await
            .expect("the runner applies between kills");
        killed_connections += kill_mid_batch(&application_name).await;
    }
    let last = writer.finish().await;
    reach(&handle, last).await;
    // It may be standing by for a moment (the pool can still hold a killed
    // connection), but it never gave up.
    let status = handle.status();
    assert!(
        !handle.is_finished() && !matches!(status.state, ProjectionState::Stopped { .. }),
        "the runner keeps running: {status:?}"
    );
    handle.stop(WAIT).await.unwrap();
    assert!(killed_connections >= 5, "connections were killed");
    assert_exact(&fixture, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_status_counts_the_backlog_and_shows_what_holds_the_horizon() {
    let store = fresh_store().await;
    let fixture = own_fixture(&store);
    for n in 0..120 {
        append(&store, &format!("s-{}", n % 3), &[1]).await;
    }
    // Readable once every older transaction (other tests' too) has ended;
    // from then on they stay readable.
    eventually(WAIT, "the events become readable", || async {
        store
            .read_all(GlobalPosition::START, 200)
            .await
            .unwrap()
            .len()
            >= 120
    })
    .await;
    let tally = Tally::new(fixture.model.clone(), "any");
    tally.hold_after(0);
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .progress(Duration::from_millis(20), 1_000)
        .start()
        .expect("the runner starts");
    // Held in its first batch: every event is still to be read, counted
    // once before the batch.
    let status = handle
        .wait_until(WAIT, |status| status.lag_events == Some(120))
        .await
        .unwrap();
    assert_eq!(status.lag_events, Some(120), "{status:?}");
    assert!(!status.lag_events_capped);
    tally.release();

    // A transaction with an id, left open, holds every reader back.
    let holder = connect(database_url()).await.expect("a test connection");
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    let status = handle
        .wait_until(WAIT, |status| {
            status
                .horizon_held_for
                .is_some_and(|age| age >= Duration::from_millis(500))
        })
        .await
        .unwrap();
    assert!(
        status
            .horizon_held_for
            .is_some_and(|age| age >= Duration::from_millis(500)),
        "{status:?}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let last = append(&store, "s-0", &[1]).await;
    reach(&handle, last).await;
    let status = handle
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.lag_events, Some(0), "{status:?}");
    handle.stop(WAIT).await.unwrap();
    assert_exact(&fixture, Some(1)).await;
}
