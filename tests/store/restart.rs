//! Connections killed under the store (as a server restart would): appends
//! fail with retriable errors, succeed when retried, and leave nothing
//! half-written; command ids outlive the store.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use annals::testing::conformance::{added, read_stream, stream};
use annals::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, OutboxReader, OutboxShard,
};
use futures::TryStreamExt;
use uuid::Uuid;

use crate::common::{
    TestStore, connect, database_url, eventually, fresh_store, fresh_store_with, second_store,
    wait_for_one_lock_wait,
};

/// Terminates every backend of `store`'s connections; returns how many.
async fn kill_connections(store: &TestStore) -> i64 {
    let client = connect(database_url()).await.unwrap();
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&store.schema().application_name()],
        )
        .await
        .unwrap();
    row.get(0)
}

/// `operation`'s result, trying again (within a deadline) while it fails
/// with retriable errors.
async fn retrying<T, F, Fut>(mut operation: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, annals::Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{error:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_cut_off_mid_statement_fails_retriably_and_succeeds_after() {
    let store = fresh_store().await;
    let id = stream("held");
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    // Another session holds the stream row, so the next append waits inside
    // its statement when the connections are killed.
    let mut blocker = connect(database_url()).await.unwrap();
    let holding = blocker.transaction().await.unwrap();
    holding
        .execute(
            &format!(
                "SELECT 1 FROM \"{}\".streams WHERE stream_id = 'held' FOR UPDATE",
                store.schema().name()
            ),
            &[],
        )
        .await
        .unwrap();
    let request = AppendRequest::new(id.clone(), ExpectedVersion::Exact(1))
        .event(added(2))
        .command_id(Uuid::now_v7());
    let waiting = tokio::spawn({
        let store = store.clone();
        let request = request.clone();
        async move { store.append(request).await }
    });
    let observer = connect(database_url()).await.unwrap();
    wait_for_one_lock_wait(&observer, &store).await;
    assert!(kill_connections(&store).await >= 1);
    let error = waiting.await.unwrap().unwrap_err();
    assert!(error.is_retriable(), "{error:?}");
    holding.rollback().await.unwrap();

    // The pool may still hand out an idle connection that was killed as well
    // before its client has seen the socket close: that append fails
    // retriably too, and the retry lands (the command id keeps it once).
    let outcome = retrying(|| store.append(request.clone())).await;
    assert_eq!((outcome.last_version, outcome.duplicate), (2, false));
    assert_eq!(read_stream(&store, &id).await.len(), 2);
}

/// Four writers on as many lanes: each command goes alone, in a
/// transaction of its own (the grouped path is the test below).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_survive_connections_killed_mid_run_with_nothing_half_written() {
    let store = fresh_store_with(|config| config.with_append_lanes(4)).await;
    let (commands, transactions) = survive_kills(store, 4).await;
    assert_eq!(
        transactions, commands,
        "each command in a transaction of its own"
    );
}

/// The same with appends committed in groups: 12 writers on one lane, so
/// that kills cut off groups (their appends fail alike and are retried) and
/// retried commands that had landed roll back the group they join.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_writers_survive_connections_killed_mid_run_with_nothing_half_written() {
    let store = fresh_store_with(|config| config.with_pool_size(3).with_append_lanes(1)).await;
    let (commands, transactions) = survive_kills(store, 12).await;
    assert!(
        transactions < commands,
        "{transactions} transactions for {commands} commands: groups formed"
    );
}

/// `writers` writers append 150 commands each, retrying each until it
/// lands, while the store's connections are killed again and again; then
/// every command's events are stored exactly once. Returns how many
/// commands were written, and in how many transactions.
async fn survive_kills(store: TestStore, writers_count: usize) -> (usize, usize) {
    const COMMANDS: usize = 150;
    let landed = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..writers_count {
        let store = store.clone();
        let landed = Arc::clone(&landed);
        writers.push(tokio::spawn(async move {
            let mut requests = Vec::new();
            let mut failures = 0;
            for index in 0..COMMANDS {
                let request = AppendRequest::new(
                    stream(&format!("writer-{writer}-{}", index % 3)),
                    ExpectedVersion::Any,
                )
                .events([added(1), added(2)])
                .outbox_message(annals::testing::conformance::outbox::message(
                    &stream(&format!("writer-{writer}")),
                    1,
                    "k",
                ))
                .command_id(Uuid::now_v7());
                // Retry the same request (same command id, same event ids)
                // until it lands: a retry after an unknown outcome must not
                // write twice.
                loop {
                    match store.append(request.clone()).await {
                        Ok(_) => {
                            landed.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(error) => {
                            assert!(error.is_retriable(), "{error:?}");
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                requests.push(request);
            }
            (requests, failures)
        }));
    }
    // Kills whenever the writers have landed a few more commands since the
    // last kill, so that every kill cuts off appends in flight and the
    // writers recover in between.
    let mut killed = 0;
    while !writers.iter().all(|writer| writer.is_finished()) {
        let target = landed.load(Ordering::SeqCst) + fastrand::usize(1..=8);
        eventually(
            Duration::from_secs(30),
            "the writers land commands between kills",
            || async {
                landed.load(Ordering::SeqCst) >= target
                    || writers.iter().all(|writer| writer.is_finished())
            },
        )
        .await;
        killed += kill_connections(&store).await;
    }
    let mut requests = Vec::new();
    let mut failures = 0;
    for writer in writers {
        let (written, failed) = writer.await.unwrap();
        requests.extend(written);
        failures += failed;
    }
    assert!(killed > 0, "connections were killed");
    println!("{killed} connections killed, {failures} appends failed and were retried");

    // The last kill may have left dead connections in the pool: like any
    // caller, the checks below retry what fails retriably.
    let stored = retrying(|| async {
        let mut events = Vec::new();
        let mut checkpoint = GlobalPosition::START;
        loop {
            let page = store.read_all(checkpoint, 1000).await?;
            let Some(last) = page.last() else {
                return Ok(events);
            };
            checkpoint = last.position;
            events.extend(page);
        }
    })
    .await;
    let stored_ids: Vec<Uuid> = stored.iter().map(|event| event.event_id).collect();
    let unique: HashSet<Uuid> = stored_ids.iter().copied().collect();
    assert_eq!(unique.len(), stored_ids.len(), "no event stored twice");
    let sent: HashSet<Uuid> = requests
        .iter()
        .flat_map(|request| request.events.iter().map(|event| event.event_id))
        .collect();
    assert_eq!(unique, sent, "every command's events, exactly once");
    let messages =
        retrying(|| store.read_outbox(OutboxShard::ALL, GlobalPosition::START, 10_000)).await;
    assert_eq!(messages.len(), requests.len(), "one message per command");
    for request in &requests {
        let outcome = retrying(|| store.command_outcome(request.command_id.unwrap()))
            .await
            .expect("every command recorded");
        assert_eq!(outcome.last_version - outcome.first_version, 1);
    }
    for writer in 0..writers_count {
        for part in 0..3 {
            let id = stream(&format!("writer-{writer}-{part}"));
            let events: Vec<_> =
                retrying(|| store.read_stream(id.clone(), 1).try_collect::<Vec<_>>()).await;
            let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
            assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
            assert_eq!(
                retrying(|| store.stream_version(&id)).await,
                Some(events.len() as u64)
            );
        }
    }
    let transactions: HashSet<u64> = stored.iter().map(|event| event.position.commit).collect();
    (requests.len(), transactions.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_are_woken_again_after_the_listening_connection_is_killed() {
    let store = fresh_store().await;
    let mut signal = store.append_signal();
    // Let the listener connect, then cut it (and the pool) off.
    eventually(Duration::from_secs(10), "the listener connects", || async {
        kill_connections(&store).await > 0
    })
    .await;
    // Let the reconnection's own wake-ups pass.
    while signal.wait(Duration::from_millis(300)).await {}
    let other_process = second_store(&store).await;
    other_process
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any).event(added(1)))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut woken = false;
    while !woken && started.elapsed() < Duration::from_secs(20) {
        woken = signal.wait(Duration::from_secs(20)).await;
    }
    assert!(woken, "a reader is woken by another process's append");
    assert_eq!(
        store
            .read_all(GlobalPosition::START, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_ids_outlive_the_store_that_recorded_them() {
    let store = fresh_store().await;
    let command = Uuid::now_v7();
    let request = AppendRequest::new(stream("order-1"), ExpectedVersion::NoStream)
        .event(added(1))
        .command_id(command);
    let first = store.append(request.clone()).await.unwrap();
    let restarted = second_store(&store).await;
    drop(store);
    let again = restarted.append(request).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.last_position, first.last_position);
}
