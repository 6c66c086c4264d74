//! Snapshots written with appends.

use serde_json::json;

use super::{added, stream};
use crate::{AppendRequest, EventStore, ExpectedVersion, NewSnapshot, OutboxReader, Payload};

fn snapshot(total: i64) -> NewSnapshot {
    NewSnapshot {
        state_version: 3,
        state: Payload::encode(&json!({ "total": total })).unwrap(),
    }
}

/// A snapshot in an append is stored at the append's last version.
pub async fn snapshot_is_stored_at_the_appends_last_version<S: EventStore + OutboxReader>(
    store: S,
) {
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
