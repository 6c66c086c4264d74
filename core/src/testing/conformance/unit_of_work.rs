//! Several streams appended in one transaction.

use uuid::Uuid;

use super::{added, read_everything, stream};
use crate::{AppendRequest, Error, EventStore, ExpectedVersion, GlobalPosition, OutboxReader};

/// A unit of work writes every stream, in one commit.
pub async fn unit_of_work_appends_every_stream_in_one_commit<S: EventStore + OutboxReader>(
    store: S,
) {
    store
        .append(
            AppendRequest::new(stream("account-a"), ExpectedVersion::NoStream).event(added(100)),
        )
        .await
        .unwrap();
    let outcomes = store
        .append_all(vec![
            AppendRequest::new(stream("account-a"), ExpectedVersion::Exact(1)).event(added(-30)),
            AppendRequest::new(stream("account-b"), ExpectedVersion::NoStream)
                .events([added(30), added(0)]),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        (outcomes[0].stream.as_str(), outcomes[0].last_version),
        ("account-a", 2)
    );
    assert_eq!(
        (outcomes[1].stream.as_str(), outcomes[1].last_version),
        ("account-b", 2)
    );
    let events = read_everything(&store, GlobalPosition::START).await;
    assert_eq!(events.len(), 4);
    let unit = &events[1..];
    assert!(
        unit.iter()
            .all(|event| event.position.commit == unit[0].position.commit),
        "one commit"
    );
    assert!(unit[0].position.commit != events[0].position.commit);
    assert!(store.append_all(Vec::new()).await.unwrap().is_empty());
}

/// A conflict on one stream refuses the whole unit.
pub async fn unit_of_work_conflict_writes_nothing<S: EventStore + OutboxReader>(store: S) {
    store
        .append(AppendRequest::new(stream("account-a"), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    let error = store
        .append_all(vec![
            AppendRequest::new(stream("account-b"), ExpectedVersion::NoStream).event(added(2)),
            AppendRequest::new(stream("account-a"), ExpectedVersion::NoStream).event(added(3)),
        ])
        .await
        .unwrap_err();
    match error {
        Error::Conflict {
            stream: conflicted,
            actual,
            ..
        } => {
            assert_eq!(conflicted.as_str(), "account-a");
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&stream("account-b")).await.unwrap(),
        None
    );
    assert_eq!(
        read_everything(&store, GlobalPosition::START).await.len(),
        1
    );
}

/// A unit may not append to one stream twice.
pub async fn unit_of_work_rejects_a_stream_twice<S: EventStore + OutboxReader>(store: S) {
    let error = store
        .append_all(vec![
            AppendRequest::new(stream("account-a"), ExpectedVersion::NoStream).event(added(1)),
            AppendRequest::new(stream("account-a"), ExpectedVersion::Exact(1)).event(added(2)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
    assert!(
        read_everything(&store, GlobalPosition::START)
            .await
            .is_empty()
    );
}

/// A request in a unit whose command already ran is skipped with the first
/// outcome; the others are written.
pub async fn unit_of_work_with_a_duplicate_command_writes_the_rest<S: EventStore + OutboxReader>(
    store: S,
) {
    let command = Uuid::now_v7();
    let first = store
        .append(
            AppendRequest::new(stream("account-a"), ExpectedVersion::NoStream)
                .event(added(1))
                .command_id(command),
        )
        .await
        .unwrap();
    let outcomes = store
        .append_all(vec![
            AppendRequest::new(stream("account-a"), ExpectedVersion::NoStream)
                .event(added(1))
                .command_id(command),
            AppendRequest::new(stream("account-b"), ExpectedVersion::NoStream).event(added(2)),
        ])
        .await
        .unwrap();
    assert!(outcomes[0].duplicate);
    assert_eq!(outcomes[0].last_position, first.last_position);
    assert!(!outcomes[1].duplicate);
    assert_eq!(
        read_everything(&store, GlobalPosition::START).await.len(),
        2
    );
}
