//! Appending to and reading one stream; optimistic concurrency.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use futures::TryStreamExt;
use uuid::Uuid;

use super::{added, read_everything, read_stream, stream};
use crate::{
    AppendRequest, Error, EventStore, ExpectedVersion, GlobalPosition, Metadata, OutboxReader,
    OutboxShard, Payload,
};

fn assert_conflict(error: Error, expected: ExpectedVersion, actual: Option<u64>) {
    match error {
        Error::Conflict {
            expected: reported_expected,
            actual: reported_actual,
            ..
        } => {
            assert_eq!(
                reported_expected, expected,
                "the conflict names what was expected"
            );
            assert_eq!(
                reported_actual, actual,
                "the conflict names the actual version"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A new stream's first event has version 1; the outcome says so.
pub async fn append_to_new_stream_starts_at_version_one<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    let outcome = store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::NoStream).events([added(1), added(2)]),
        )
        .await
        .unwrap();
    assert_eq!((outcome.first_version, outcome.last_version), (1, 2));
    assert!(!outcome.duplicate);
    assert_eq!(store.stream_version(&id).await.unwrap(), Some(2));
    let versions: Vec<u64> = read_stream(&store, &id)
        .await
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

/// Appends at the exact current version chain one after another.
pub async fn exact_version_appends_chain<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    for version in 0..5u64 {
        let outcome = store
            .append(AppendRequest::new(id.clone(), ExpectedVersion::Exact(version)).event(added(1)))
            .await
            .unwrap();
        assert_eq!(outcome.last_version, version + 1);
    }
    assert_eq!(read_stream(&store, &id).await.len(), 5);
}

/// A stale expected version is a conflict naming the actual version.
pub async fn stale_exact_version_conflicts_with_the_actual_version<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = stream("order-1");
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
    let error = store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::Exact(1)).event(added(4)))
        .await
        .unwrap_err();
    assert!(error.is_conflict() && !error.is_retriable());
    assert_conflict(error, ExpectedVersion::Exact(1), Some(3));
    let error = store
        .append(AppendRequest::new(id, ExpectedVersion::Exact(7)).event(added(4)))
        .await
        .unwrap_err();
    assert_conflict(error, ExpectedVersion::Exact(7), Some(3));
}

/// `NoStream` refuses a stream that has events.
pub async fn no_stream_on_an_existing_stream_conflicts<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    let error = store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(2)))
        .await
        .unwrap_err();
    assert_conflict(error, ExpectedVersion::NoStream, Some(1));
    let error = store
        .append(AppendRequest::new(id, ExpectedVersion::Exact(0)).event(added(2)))
        .await
        .unwrap_err();
    assert_conflict(error, ExpectedVersion::Exact(0), Some(1));
}

/// `StreamExists` refuses a stream without events.
pub async fn stream_exists_on_a_missing_stream_conflicts<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    let error = store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::StreamExists).event(added(1)))
        .await
        .unwrap_err();
    assert_conflict(error, ExpectedVersion::StreamExists, None);
    assert_eq!(store.stream_version(&id).await.unwrap(), None);
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::Any).event(added(1)))
        .await
        .unwrap();
    let outcome = store
        .append(AppendRequest::new(id, ExpectedVersion::StreamExists).event(added(2)))
        .await
        .unwrap();
    assert_eq!(outcome.last_version, 2);
}

/// `Any` appends whatever the version.
pub async fn any_version_appends_to_new_and_existing_streams<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = stream("order-1");
    let first = store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::Any).event(added(1)))
        .await
        .unwrap();
    let second = store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::Any).events([added(2), added(3)]))
        .await
        .unwrap();
    assert_eq!((first.first_version, first.last_version), (1, 1));
    assert_eq!((second.first_version, second.last_version), (2, 3));
}

/// A refused append leaves no event, snapshot or outbox message behind.
pub async fn conflicting_append_writes_nothing<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    let before = read_everything(&store, GlobalPosition::START).await.len();
    let refused = AppendRequest::new(id.clone(), ExpectedVersion::Exact(5))
        .event(added(2))
        .snapshot(crate::NewSnapshot {
            state_version: 1,
            state: Payload::encode(&1).unwrap(),
        })
        .outbox_message(super::outbox::message(&id, 2, "refused"));
    assert!(store.append(refused).await.unwrap_err().is_conflict());
    assert_eq!(
        read_everything(&store, GlobalPosition::START).await.len(),
        before
    );
    assert!(store.load_snapshot(&id).await.unwrap().is_none());
    assert!(
        store
            .read_outbox(OutboxShard::ALL, GlobalPosition::START, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stream_version(&id).await.unwrap(), Some(1));
}

/// Eight tasks append to one stream at once, each reading the version and
/// appending at exactly that version: every version is won by exactly one
/// append, and the stream ends without gaps or duplicates.
pub async fn concurrent_writers_one_winner_per_version<S: EventStore + OutboxReader>(store: S) {
    const WRITERS: usize = 8;
    const APPENDS_PER_WRITER: usize = 25;
    let id = stream("contended");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0u32;
            while won.len() < APPENDS_PER_WRITER {
                let version = store.stream_version(&id).await.unwrap().unwrap_or(0);
                let mut event = added(writer as i64);
                event
                    .metadata
                    .headers
                    .insert("writer".into(), writer.to_string());
                let event_id = event.event_id;
                match store
                    .append(
                        AppendRequest::new(id.clone(), ExpectedVersion::Exact(version))
                            .event(event),
                    )
                    .await
                {
                    Ok(outcome) => {
                        assert_eq!(outcome.last_version, version + 1);
                        won.push((outcome.last_version, event_id));
                    }
                    Err(error) if error.is_conflict() => conflicts += 1,
                    Err(error) => panic!("writer {writer}: {error}"),
                }
            }
            (won, conflicts)
        }));
    }
    let mut winners = BTreeMap::new();
    for task in tasks {
        let (won, _conflicts) = task.await.unwrap();
        for (version, event_id) in won {
            assert!(
                winners.insert(version, event_id).is_none(),
                "two appends won version {version}"
            );
        }
    }
    let events = read_stream(&store, &id).await;
    let total = WRITERS * APPENDS_PER_WRITER;
    assert_eq!(events.len(), total);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.version, index as u64 + 1, "no gaps, no repeats");
        assert_eq!(
            winners[&event.version], event.event_id,
            "the winner's event holds the version"
        );
    }
    let ids: HashSet<Uuid> = events.iter().map(|event| event.event_id).collect();
    assert_eq!(ids.len(), total);
}

/// Reading from version n returns versions n, n+1, ...
pub async fn read_stream_from_a_version_returns_the_suffix<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::NoStream).events((1..=10).map(added)),
        )
        .await
        .unwrap();
    for from in [0u64, 1, 4, 10, 11, 50] {
        let versions: Vec<u64> = store
            .read_stream(id.clone(), from)
            .map_ok(|event| event.version)
            .try_collect()
            .await
            .unwrap();
        let expected: Vec<u64> = (from.max(1)..=10).collect();
        assert_eq!(versions, expected, "reading from {from}");
    }
}

/// A stream never written is empty and has no version.
pub async fn missing_stream_reads_empty_and_has_no_version<S: EventStore + OutboxReader>(store: S) {
    let id = stream("never-written");
    assert!(read_stream(&store, &id).await.is_empty());
    assert_eq!(store.stream_version(&id).await.unwrap(), None);
}

/// What is read back is what was written: id, type, version, payload,
/// metadata; the recording time is now.
pub async fn recorded_events_keep_ids_types_payloads_and_metadata<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = stream("order-1");
    let metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        command_id: Some(Uuid::now_v7()),
        tenant: Some("acme".into()),
        user: Some("alice".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        headers: [("source".to_owned(), "web ✓".to_owned())].into(),
    };
    let payload = Payload::from_json(
        r#"{"amount": 12, "note": "unicode ✓ \"quoted\"", "nested": {"list": [1, 2.5, null, true]}}"#
            .to_owned(),
    )
    .unwrap();
    let event = crate::NewEvent::raw("Added", 2, payload.clone(), metadata.clone());
    let event_id = event.event_id;
    let before = Utc::now() - chrono::Duration::seconds(5);
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(event))
        .await
        .unwrap();
    let after = Utc::now() + chrono::Duration::seconds(5);
    let events = read_stream(&store, &id).await;
    let recorded = &events[0];
    assert_eq!(recorded.event_id, event_id);
    assert_eq!(recorded.stream, id);
    assert_eq!(recorded.version, 1);
    assert_eq!(recorded.event_type, "Added");
    assert_eq!(recorded.event_version, 2);
    assert_eq!(
        recorded.payload.to_value().unwrap(),
        payload.to_value().unwrap()
    );
    assert_eq!(recorded.metadata, metadata);
    assert!(recorded.recorded_at > before && recorded.recorded_at < after);
    let global = store.read_all(GlobalPosition::START, 10).await.unwrap();
    assert_eq!(global[0].event_id, event_id);
    assert_eq!(global[0].position, recorded.position);
    assert!(recorded.position > GlobalPosition::START);
}

/// Appending to one stream does not move another's version.
pub async fn streams_are_independent<S: EventStore + OutboxReader>(store: S) {
    let (a, b) = (stream("order-a"), stream("order-b"));
    store
        .append(
            AppendRequest::new(a.clone(), ExpectedVersion::NoStream).events([added(1), added(2)]),
        )
        .await
        .unwrap();
    store
        .append(AppendRequest::new(b.clone(), ExpectedVersion::NoStream).event(added(3)))
        .await
        .unwrap();
    assert_eq!(store.stream_version(&a).await.unwrap(), Some(2));
    assert_eq!(store.stream_version(&b).await.unwrap(), Some(1));
    assert!(
        read_stream(&store, &b)
            .await
            .iter()
            .all(|event| event.stream == b)
    );
}
