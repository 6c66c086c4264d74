//! The store's own promises beyond the conformance suite: streamed reads,
//! the global order under `Any` writers, the oldest blocking transaction,
//! large batches and units.

use std::time::Duration;

use annals::testing::conformance::{added, read_everything, read_stream, stream};
use annals::{
    AppendRequest, Error, EventStore, ExpectedVersion, FromSnapshot, GlobalPosition, NewSnapshot,
    Payload,
};
use annals_postgres::PgHorizon;
use futures::StreamExt;

use crate::common::{connect, database_url, eventually, fresh_store, fresh_store_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_read_as_it_is_consumed() {
    let store = fresh_store().await;
    let id = stream("long");
    for _ in 0..4 {
        store
            .append(
                AppendRequest::new(id.clone(), ExpectedVersion::Any).events((0..5000).map(added)),
            )
            .await
            .unwrap();
    }
    let first: Vec<_> = store.read_stream(id.clone(), 1).take(10).collect().await;
    assert_eq!(first.len(), 10);
    assert_eq!(first[9].as_ref().unwrap().version, 10);
    // The connection of the dropped stream goes back to the pool, usable.
    let status = store.pool().status();
    assert_eq!(status.available, status.size, "{status:?}");
    let mut count = 0u64;
    let mut events = store.read_stream(id.clone(), 19_990);
    while let Some(event) = events.next().await {
        count += 1;
        assert_eq!(event.unwrap().version, 19_989 + count);
    }
    assert_eq!(count, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_version_writers_on_one_stream_keep_its_versions_in_global_order() {
    let store = fresh_store().await;
    let id = stream("contended");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    store
                        .append(
                            AppendRequest::new(id.clone(), ExpectedVersion::Any).event(added(1)),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let global = read_everything(&store, GlobalPosition::START).await;
    let versions: Vec<u64> = global.iter().map(|event| event.version).collect();
    assert_eq!(versions, (1..=320).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_blocking_transaction_is_reported() {
    let store = fresh_store_with(|config| config.with_horizon_wait(Duration::ZERO)).await;
    let mut holder = connect(database_url()).await.unwrap();
    let transaction = holder.transaction().await.unwrap();
    let row = transaction
        .query_one("SELECT pg_backend_pid(), pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    let pid: i32 = row.get(0);
    let horizon = PgHorizon::new(&store);
    eventually(
        Duration::from_secs(10),
        "the held transaction is a second old",
        || async {
            horizon
                .oldest_blocking_transaction()
                .await
                .unwrap()
                .is_some_and(|blocking| blocking.age >= Duration::from_secs(1))
        },
    )
    .await;
    let blocking = horizon
        .oldest_blocking_transaction()
        .await
        .unwrap()
        .expect("the held transaction");
    // Something else on the server may hold an older one.
    assert!(blocking.age >= Duration::from_secs(1), "{blocking:?}");
    if blocking.pid == Some(pid) {
        assert_eq!(blocking.state.as_deref(), Some("idle in transaction"));
    }
    // What it holds back: an append committed after it is not readable yet.
    store
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any).event(added(1)))
        .await
        .unwrap();
    assert!(
        store
            .read_all(GlobalPosition::START, 10)
            .await
            .unwrap()
            .is_empty()
    );
    transaction.rollback().await.unwrap();
    // Readable once nothing older runs (whatever else the server runs).
    eventually(
        Duration::from_secs(30),
        "the append becomes readable",
        || async {
            store
                .read_all(GlobalPosition::START, 10)
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_batch_and_a_wide_unit_are_written_whole() {
    let store = fresh_store().await;
    let limit = annals::Limits::default().max_events_per_append;
    let outcome = store
        .append(
            AppendRequest::new(stream("batch"), ExpectedVersion::NoStream)
                .events((0..limit as i64).map(added)),
        )
        .await
        .unwrap();
    assert_eq!(outcome.last_version, limit as u64);
    assert_eq!(read_stream(&store, &stream("batch")).await.len(), limit);
    // More streams than a pipeline of 30 statements, in reverse id order.
    let unit: Vec<_> = (0..40)
        .rev()
        .map(|n| {
            AppendRequest::new(stream(&format!("unit-{n:02}")), ExpectedVersion::NoStream)
                .event(added(n))
        })
        .collect();
    let outcomes = store.append_all(unit).await.unwrap();
    for (outcome, n) in outcomes.iter().zip((0..40).rev()) {
        assert_eq!(outcome.stream.as_str(), format!("unit-{n:02}"));
    }
    let commits: std::collections::HashSet<u64> = outcomes
        .iter()
        .map(|outcome| outcome.last_position.commit)
        .collect();
    assert_eq!(commits.len(), 1, "one transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_repeated_across_a_unit_is_refused() {
    let store = fresh_store().await;
    let event = added(1);
    let error = store
        .append_all(vec![
            AppendRequest::new(stream("a"), ExpectedVersion::Any).event(event.clone()),
            AppendRequest::new(stream("b"), ExpectedVersion::Any).event(event.clone()),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidAppend { reason, .. } if reason.contains(&event.event_id.to_string())),
        "{error:?}"
    );
    assert!(
        read_everything(&store, GlobalPosition::START)
            .await
            .is_empty()
    );
}

/// `read_from_snapshot` reads the snapshot and the events after it in one
/// statement: while a writer adds an event and a newer snapshot with every
/// append, each read's events start right after its snapshot and follow
/// each other, and its connection goes back to the pool when the events
/// are dropped half read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_snapshot_never_skip_events_while_snapshots_are_written() {
    // The last append, like every third, without a snapshot.
    const APPENDS: u64 = 301;
    let store = fresh_store().await;
    let id = stream("snapshotted");
    let writer = tokio::spawn({
        let (store, id) = (store.clone(), id.clone());
        async move {
            for version in 0..APPENDS {
                // Every third append without a snapshot, so that reads also
                // find events after one.
                let mut request =
                    AppendRequest::new(id.clone(), ExpectedVersion::Exact(version)).event(added(1));
                if version % 3 != 0 {
                    request = request.snapshot(NewSnapshot {
                        state_version: 1,
                        state: Payload::encode(&(version + 1)).unwrap(),
                    });
                }
                store.append(request).await.unwrap();
            }
        }
    });
    let mut reads = 0;
    let mut with_events_after = 0;
    while !writer.is_finished() {
        let FromSnapshot { snapshot, events } = store.read_from_snapshot(id.clone()).await.unwrap();
        let start = match &snapshot {
            Some(snapshot) => {
                assert_eq!(snapshot.state.decode::<u64>().unwrap(), snapshot.version);
                snapshot.version
            }
            None => 0,
        };
        let versions: Vec<u64> = events.map(|event| event.unwrap().version).collect().await;
        let expected: Vec<u64> = (start + 1..=start + versions.len() as u64).collect();
        assert_eq!(versions, expected, "after a snapshot at {start}");
        reads += 1;
        with_events_after += usize::from(!versions.is_empty());
    }
    writer.await.unwrap();
    assert!(
        reads >= 10 && with_events_after >= 1,
        "{reads} reads, {with_events_after} with events"
    );

    let FromSnapshot { snapshot, events } = store.read_from_snapshot(id.clone()).await.unwrap();
    assert_eq!(snapshot.unwrap().version, APPENDS - 1);
    let rest: Vec<_> = events.collect().await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].as_ref().unwrap().version, APPENDS);
    // A read from version 1 dropped after its first event gives its
    // connection back.
    store
        .append(
            AppendRequest::new(stream("unsnapshotted"), ExpectedVersion::NoStream)
                .events((0..100).map(added)),
        )
        .await
        .unwrap();
    let FromSnapshot { snapshot, events } = store
        .read_from_snapshot(stream("unsnapshotted"))
        .await
        .unwrap();
    assert!(snapshot.is_none());
    let first: Vec<_> = events.take(1).collect().await;
    assert_eq!(first[0].as_ref().unwrap().version, 1);
    let status = store.pool().status();
    assert_eq!(status.available, status.size, "{status:?}");
}
