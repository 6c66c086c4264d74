//! Snapshots written with appends.

use futures::TryStreamExt;
use serde_json::json;

use super::{added, read_stream, stream};
use crate::{
    AppendRequest, EventStore, ExpectedVersion, FromSnapshot, NewSnapshot, OutboxReader, Payload,
    RecordedEvent, StreamId,
};

fn snapshot(total: i64) -> NewSnapshot {
    NewSnapshot {
        state_version: 3,
        state: Payload::encode(&json!({ "total": total })).unwrap(),
    }
}

/// `order-1` with one append of an event, then one of two events and a
/// snapshot (state `{"total": 6}`, state version 3) at version 3.
async fn snapshotted_at_3<S: EventStore>(store: &S) -> StreamId {
    let id = stream("order-1");
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::Exact(1))
                .events([added(2), added(3)])
                .snapshot(snapshot(6)),
        )
        .await
        .unwrap();
    id
}

/// A snapshot in an append is stored at the append's last version.
pub async fn snapshot_is_stored_at_the_appends_last_version<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = snapshotted_at_3(&store).await;
    let stored = store.load_snapshot(&id).await.unwrap().expect("a snapshot");
    assert_eq!(stored.stream, id);
    assert_eq!(stored.version, 3);
    assert_eq!(stored.state_version, 3);
    assert_eq!(stored.state.to_value().unwrap(), json!({ "total": 6 }));
}

/// A later snapshot replaces an earlier one.
pub async fn newest_snapshot_wins<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    for version in 0..3u64 {
        store
            .append(
                AppendRequest::new(id.clone(), ExpectedVersion::Exact(version))
                    .event(added(1))
                    .snapshot(snapshot(version as i64 + 1)),
            )
            .await
            .unwrap();
    }
    let stored = store.load_snapshot(&id).await.unwrap().expect("a snapshot");
    assert_eq!(stored.version, 3);
    assert_eq!(stored.state.to_value().unwrap(), json!({ "total": 3 }));
    // An append without a snapshot keeps the last one.
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::Exact(3)).event(added(1)))
        .await
        .unwrap();
    assert_eq!(store.load_snapshot(&id).await.unwrap().unwrap().version, 3);
}

/// No snapshot was written: none is returned.
pub async fn stream_without_snapshot_has_none<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    assert!(store.load_snapshot(&id).await.unwrap().is_none());
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    assert!(store.load_snapshot(&id).await.unwrap().is_none());
}

/// `read_from_snapshot` gives the newest snapshot and exactly the events
/// after it, with what was recorded of them.
pub async fn read_from_snapshot_returns_the_snapshot_and_the_events_after_it<
    S: EventStore + OutboxReader,
>(
    store: S,
) {
    let id = snapshotted_at_3(&store).await;
    store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::Exact(3)).events([added(4), added(5)]),
        )
        .await
        .unwrap();
    let FromSnapshot { snapshot, events } = store.read_from_snapshot(id.clone()).await.unwrap();
    let snapshot = snapshot.expect("a snapshot");
    assert_eq!(snapshot.stream, id);
    assert_eq!(snapshot.version, 3);
    assert_eq!(snapshot.state_version, 3);
    assert_eq!(snapshot.state.to_value().unwrap(), json!({ "total": 6 }));
    let after: Vec<RecordedEvent> = events.try_collect().await.unwrap();
    let mut expected = read_stream(&store, &id).await;
    expected.retain(|event| event.version > 3);
    assert_eq!(versions(&after), [4, 5]);
    assert_eq!(debug(&after), debug(&expected));
}

/// With the snapshot at the stream's last version, no events follow it.
pub async fn read_from_snapshot_at_the_last_version_has_no_events<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = stream("order-1");
    store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::NoStream)
                .events([added(1), added(2)])
                .snapshot(snapshot(3)),
        )
        .await
        .unwrap();
    let FromSnapshot { snapshot, events } = store.read_from_snapshot(id).await.unwrap();
    assert_eq!(snapshot.expect("a snapshot").version, 2);
    let after: Vec<RecordedEvent> = events.try_collect().await.unwrap();
    assert!(after.is_empty(), "{after:?}");
}

/// Without a snapshot, `read_from_snapshot` gives every event; a missing
/// stream gives nothing.
pub async fn read_from_snapshot_without_one_reads_every_event<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = stream("order-1");
    let FromSnapshot { snapshot, events } = store.read_from_snapshot(id.clone()).await.unwrap();
    assert!(snapshot.is_none());
    assert!(events.try_collect::<Vec<_>>().await.unwrap().is_empty());
    store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::NoStream).events([
                added(1),
                added(2),
                added(3),
            ]),
        )
        .await
        .unwrap();
    let FromSnapshot { snapshot, events } = store.read_from_snapshot(id.clone()).await.unwrap();
    assert!(snapshot.is_none());
    let all: Vec<RecordedEvent> = events.try_collect().await.unwrap();
    assert_eq!(versions(&all), [1, 2, 3]);
    assert_eq!(debug(&all), debug(&read_stream(&store, &id).await));
}

/// Every field of the events, to compare them whole.
fn debug(events: &[RecordedEvent]) -> String {
    format!("{events:?}")
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.version).collect()
}
