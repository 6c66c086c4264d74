//! The repository on top of the store: snapshots, retries, idempotency,
//! integration events.

use serde_json::json;

use super::{FixtureEvent, Tally, TallyCommand, added, read_stream};
use crate::{
    AppendRequest, CommandContext, CommandError, EventStore, ExpectedVersion, GlobalPosition,
    IntegrationEvent, NewSnapshot, OutboxReader, OutboxShard, Payload, Repository, SnapshotPolicy,
};

/// Loads through a snapshot and the events after it give the same state as
/// a load of every event.
pub async fn repository_reloads_through_snapshots<S: EventStore + OutboxReader>(store: S) {
    let with_snapshots =
        Repository::<Tally, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Every(4));
    for amount in 1..=10 {
        with_snapshots
            .execute("t-1", &TallyCommand::Add(amount))
            .await
            .unwrap();
    }
    with_snapshots
        .execute("t-1", &TallyCommand::Remove(5))
        .await
        .unwrap();
    let snapshot = store
        .load_snapshot(&Repository::<Tally, S>::stream_id("t-1").unwrap())
        .await
        .unwrap()
        .expect("a snapshot every 4 events");
    assert_eq!(snapshot.version, 8);
    let loaded = with_snapshots.load("t-1").await.unwrap();
    let without = Repository::<Tally, _>::new(store)
        .load("t-1")
        .await
        .unwrap();
    assert_eq!(loaded, without);
    assert_eq!(loaded.version, 11);
    assert_eq!(loaded.state.total, 50);
}

/// Eight tasks command one aggregate at once through separate repositories
/// (so without a shared warm state): conflicts are retried and every
/// command lands once.
pub async fn concurrent_commands_on_one_aggregate_all_land<S: EventStore + OutboxReader>(store: S) {
    let mut tasks = Vec::new();
    for task in 0..8 {
        let repository = Repository::<Tally, _>::new(store.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                repository
                    .execute("shared", &TallyCommand::Add(task + 1))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded = Repository::<Tally, _>::new(store)
        .load("shared")
        .await
        .unwrap();
    assert_eq!(loaded.version, 80);
    assert_eq!(loaded.state.total, 10 * (1..=8).sum::<i64>());
}

/// A resent command returns the first outcome, even when the state it
/// produced would now refuse it.
pub async fn resent_command_returns_the_first_outcome<S: EventStore + OutboxReader>(store: S) {
    let repository = Repository::<Tally, _>::new(store.clone());
    repository
        .execute("t-1", &TallyCommand::Add(5))
        .await
        .unwrap();
    let context = CommandContext::new();
    let first = repository
        .execute_with("t-1", &TallyCommand::Remove(5), context.clone())
        .await
        .unwrap();
    // Now the total is 0, so removing 5 again would be refused.
    let again = repository
        .execute_with("t-1", &TallyCommand::Remove(5), context.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(again.version, first.version);
    // A fresh repository (no warm state) agrees.
    let fresh = Repository::<Tally, _>::new(store.clone());
    let third = fresh
        .execute_with("t-1", &TallyCommand::Remove(5), context)
        .await
        .unwrap();
    assert!(third.duplicate);
    assert_eq!(fresh.load("t-1").await.unwrap().version, 2);
    // A new command id is refused as the state demands.
    let refused = fresh
        .execute("t-1", &TallyCommand::Remove(5))
        .await
        .unwrap_err();
    assert!(matches!(refused, CommandError::Rejected(_)), "{refused:?}");
}

async fn write_with_snapshot<S: EventStore>(store: &S, snapshot: NewSnapshot) {
    let stream = Repository::<Tally, S>::stream_id("t-1").unwrap();
    store
        .append(
            AppendRequest::new(stream, ExpectedVersion::NoStream)
                .events([added(3), added(4)])
                .snapshot(snapshot),
        )
        .await
        .unwrap();
}

/// A snapshot of another state version is ignored and the state rebuilt.
pub async fn snapshot_of_another_state_version_is_ignored<S: EventStore + OutboxReader>(store: S) {
    write_with_snapshot(
        &store,
        NewSnapshot {
            state_version: 99,
            state: Payload::encode(&json!({ "total": 1000, "applied": 2 })).unwrap(),
        },
    )
    .await;
    let repository = Repository::<Tally, _>::new(store).with_snapshots(SnapshotPolicy::Every(10));
    let loaded = repository.load("t-1").await.unwrap();
    assert_eq!((loaded.state.total, loaded.version), (7, 2));
}

/// A snapshot that does not decode is ignored and the state rebuilt.
pub async fn undecodable_snapshot_is_ignored<S: EventStore + OutboxReader>(store: S) {
    write_with_snapshot(
        &store,
        NewSnapshot {
            state_version: 1,
            state: Payload::encode(&json!({ "total": "garbage" })).unwrap(),
        },
    )
    .await;
    let repository = Repository::<Tally, _>::new(store).with_snapshots(SnapshotPolicy::Every(10));
    let loaded = repository.load("t-1").await.unwrap();
    assert_eq!((loaded.state.total, loaded.version), (7, 2));
}

/// Integration events chosen by the mapping are written to the outbox with
/// the event's id, stream, version and metadata, keyed by aggregate id.
pub async fn integration_events_reach_the_outbox<S: EventStore + OutboxReader>(store: S) {
    let repository =
        Repository::<Tally, _>::new(store.clone()).with_integration_events(|pending| match pending
            .event
        {
            FixtureEvent::Removed { amount } => {
                IntegrationEvent::new("tally.removed", &FixtureEvent::Removed { amount: *amount })
                    .map(Some)
            }
            _ => Ok(None),
        });
    repository
        .execute("t-1", &TallyCommand::Add(10))
        .await
        .unwrap();
    let context = CommandContext::new().with_user("alice");
    repository
        .execute_with("t-1", &TallyCommand::Remove(4), context.clone())
        .await
        .unwrap();
    let records = store
        .read_outbox(OutboxShard::ALL, GlobalPosition::START, 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "only the chosen event leaves");
    let message = &records[0].message;
    let stream = Repository::<Tally, S>::stream_id("t-1").unwrap();
    let events = read_stream(&store, &stream).await;
    assert_eq!(message.message_id, events[1].event_id);
    assert_eq!(
        (message.topic.as_str(), message.key.as_str()),
        ("tally.removed", "t-1")
    );
    assert_eq!((&message.stream, message.stream_version), (&stream, 2));
    assert_eq!(message.metadata.command_id, Some(context.command_id));
    assert_eq!(message.metadata.user.as_deref(), Some("alice"));
    assert_eq!(message.payload.to_value().unwrap(), json!({ "amount": 4 }));
}
