//! Command ids make appends idempotent; event ids are unique.

use uuid::Uuid;

use super::{added, read_everything, read_stream, stream};
use crate::{AppendRequest, Error, EventStore, ExpectedVersion, GlobalPosition, OutboxReader};

/// The same command id twice: the second append writes nothing and returns
/// the first outcome, flagged as a duplicate.
pub async fn repeated_command_id_returns_the_first_outcome_and_appends_nothing<
    S: EventStore + OutboxReader,
>(
    store: S,
) {
    let id = stream("order-1");
    let command = Uuid::now_v7();
    let first = store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::Any)
                .events([added(1), added(2)])
                .command_id(command),
        )
        .await
        .unwrap();
    let second = store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::Any)
                .events([added(1), added(2)])
                .command_id(command),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(
        (
            second.stream.clone(),
            second.first_version,
            second.last_version,
            second.last_position
        ),
        (
            first.stream,
            first.first_version,
            first.last_version,
            first.last_position
        )
    );
    assert_eq!(read_stream(&store, &id).await.len(), 2);
    // Even on another stream, the command has run already.
    let elsewhere = store
        .append(
            AppendRequest::new(stream("order-2"), ExpectedVersion::Any)
                .event(added(3))
                .command_id(command),
        )
        .await
        .unwrap();
    assert!(elsewhere.duplicate);
    assert_eq!(elsewhere.stream, id);
    assert_eq!(
        read_everything(&store, GlobalPosition::START).await.len(),
        2
    );
}

/// A resent command whose expected version is now stale (because its first
/// execution moved the stream) is a duplicate, not a conflict.
pub async fn command_id_is_checked_before_the_expected_version<S: EventStore + OutboxReader>(
    store: S,
) {
    let id = stream("order-1");
    let command = Uuid::now_v7();
    let request = AppendRequest::new(id.clone(), ExpectedVersion::NoStream)
        .event(added(1))
        .command_id(command);
    store.append(request.clone()).await.unwrap();
    let again = store.append(request).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.last_version, 1);
}

/// The outcome of a command can be looked up by its id.
pub async fn command_outcome_is_recorded<S: EventStore + OutboxReader>(store: S) {
    let command = Uuid::now_v7();
    assert_eq!(store.command_outcome(command).await.unwrap(), None);
    let outcome = store
        .append(
            AppendRequest::new(stream("order-1"), ExpectedVersion::Any)
                .events([added(1), added(2), added(3)])
                .command_id(command),
        )
        .await
        .unwrap();
    let recorded = store
        .command_outcome(command)
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(recorded.stream, outcome.stream);
    assert_eq!((recorded.first_version, recorded.last_version), (1, 3));
    assert_eq!(recorded.last_position, outcome.last_position);
    assert!(
        recorded.duplicate,
        "a looked-up outcome is what a repeat would get"
    );
    // A refused append records nothing.
    let refused = Uuid::now_v7();
    let _ = store
        .append(
            AppendRequest::new(stream("order-1"), ExpectedVersion::NoStream)
                .event(added(1))
                .command_id(refused),
        )
        .await
        .unwrap_err();
    assert_eq!(store.command_outcome(refused).await.unwrap(), None);
}

/// An event id can be stored once; a second append with it is refused
/// whole.
pub async fn duplicate_event_id_is_rejected<S: EventStore + OutboxReader>(store: S) {
    let event = added(1);
    store
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any).event(event.clone()))
        .await
        .unwrap();
    let error = store
        .append(
            AppendRequest::new(stream("order-2"), ExpectedVersion::Any)
                .events([added(2), event.clone()]),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&event.event_id.to_string()),
        "{error}"
    );
    assert_eq!(
        store.stream_version(&stream("order-2")).await.unwrap(),
        None
    );
    // Twice within one append is refused before anything is written.
    let error = store
        .append(
            AppendRequest::new(stream("order-3"), ExpectedVersion::Any)
                .events([event.clone(), event]),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
}
