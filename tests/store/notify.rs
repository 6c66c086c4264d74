//! How appends wake readers in other processes: `NOTIFY` after commit from
//! a connection of the notifier's own, which comes back after it is lost,
//! and `NOTIFY` in the append's transaction.

use std::time::Duration;

use annals::testing::conformance::{added, stream};
use annals::{AppendRequest, AppendSignal, EventStore, ExpectedVersion};
use annals_postgres::Notify;

use crate::common::{TestStore, connect, database_url, eventually, fresh_store, second_store_with};

/// Long enough for a notification to arrive on a loaded machine.
const WAKE_UP: Duration = Duration::from_secs(20);

/// Waits out the wake-ups that are pending already (the listener's own when
/// it connects).
async fn settle(signal: &mut AppendSignal) {
    while signal.wait(Duration::from_millis(300)).await {}
}

/// Whether `signal` wakes within [`WAKE_UP`].
async fn woken(signal: &mut AppendSignal) -> bool {
    signal.wait(WAKE_UP).await
}

/// Terminates the backends of the connections that `store` and every other
/// store of its schema opened; returns how many. With `query_like`, only
/// those whose last statement matches it.
async fn kill_connections(store: &TestStore, query_like: &str) -> i64 {
    let client = connect(database_url()).await.unwrap();
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE $2",
            &[&store.schema().application_name(), &query_like],
        )
        .await
        .unwrap();
    row.get(0)
}

/// How many connections of `store`'s schema last ran a statement like
/// `query_like`.
async fn connections(store: &TestStore, query_like: &str) -> i64 {
    let client = connect(database_url()).await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE $2",
            &[&store.schema().application_name(), &query_like],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_in_the_transaction_wakes_readers_of_other_processes() {
    let reader = fresh_store().await;
    let mut signal = reader.append_signal();
    let writer =
        second_store_with(&reader, |config| config.with_notify(Notify::InTransaction)).await;
    settle(&mut signal).await;
    writer
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    assert!(woken(&mut signal).await, "woken by a lone append");
    settle(&mut signal).await;
    writer
        .append_all(vec![
            AppendRequest::new(stream("order-1"), ExpectedVersion::Exact(1)).event(added(2)),
            AppendRequest::new(stream("order-2"), ExpectedVersion::NoStream).event(added(3)),
        ])
        .await
        .unwrap();
    assert!(woken(&mut signal).await, "woken by a unit of work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_notifier_connects_again_and_notifies_the_newest_commit() {
    let reader = fresh_store().await;
    let mut signal = reader.append_signal();
    let writer = second_store_with(&reader, |config| config.with_notify(Notify::AfterCommit)).await;
    settle(&mut signal).await;
    writer
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    assert!(woken(&mut signal).await, "woken after the first commit");
    // Cut off the notifier's connection, and only that one.
    eventually(Duration::from_secs(10), "the notifier notified", || async {
        connections(&writer, "%pg_notify%").await > 0
    })
    .await;
    assert_eq!(kill_connections(&writer, "%pg_notify%").await, 1);
    settle(&mut signal).await;
    writer
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Exact(1)).event(added(2)))
        .await
        .unwrap();
    assert!(
        woken(&mut signal).await,
        "woken after the notifier lost its connection"
    );
}
