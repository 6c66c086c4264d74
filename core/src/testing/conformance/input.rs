//! Bad input is refused with a typed error before anything is written.

use uuid::Uuid;

use super::{added, read_everything, stream};
use crate::{
    AppendRequest, Error, EventStore, ExpectedVersion, GlobalPosition, Limits, Metadata, NewEvent,
    OutboxReader, OutboxShard, Payload,
};

async fn assert_nothing_written<S: EventStore + OutboxReader>(store: &S) {
    assert!(
        read_everything(store, GlobalPosition::START)
            .await
            .is_empty()
    );
    assert!(
        store
            .read_outbox(OutboxShard::ALL, GlobalPosition::START, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A payload over the limit (default 1 MiB) is refused, naming its size.
pub async fn oversized_payload_is_rejected_before_anything_is_written<
    S: EventStore + OutboxReader,
>(
    store: S,
) {
    let limit = Limits::default().max_payload_bytes;
    let big = Payload::encode(&"x".repeat(limit)).unwrap();
    let event = NewEvent::raw("Added", 2, big, Metadata::default());
    let error = store
        .append(
            AppendRequest::new(stream("order-1"), ExpectedVersion::Any).events([added(1), event]),
        )
        .await
        .unwrap_err();
    match error {
        Error::PayloadTooLarge {
            size,
            limit: reported,
            what,
            ..
        } => {
            assert_eq!(size, limit + 2);
            assert_eq!(reported, limit);
            assert!(what.contains("#1"), "{what}");
        }
        other => panic!("expected a payload-too-large error, got {other:?}"),
    }
    assert_nothing_written(&store).await;
}

/// An append without events is refused.
pub async fn empty_append_is_rejected<S: EventStore + OutboxReader>(store: S) {
    let error = store
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
    assert_nothing_written(&store).await;
}

/// Empty or control-character type names and version 0 are refused.
pub async fn invalid_event_type_is_rejected<S: EventStore + OutboxReader>(store: S) {
    let payload = || Payload::encode(&1).unwrap();
    for event in [
        NewEvent::raw("", 1, payload(), Metadata::default()),
        NewEvent::raw("Bad\nName", 1, payload(), Metadata::default()),
        NewEvent::raw("x".repeat(256), 1, payload(), Metadata::default()),
        NewEvent::raw("Added", 0, payload(), Metadata::default()),
    ] {
        let error = store
            .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any).event(event))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
    }
    assert_nothing_written(&store).await;
}

/// An outbox message for a topic no broker accepts is refused with its
/// events.
pub async fn invalid_outbox_topic_is_rejected<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    for topic in ["", "has space", "ünïcode", &"t".repeat(250)] {
        let mut message = super::outbox::message(&id, 1, "k");
        message.topic = topic.to_owned();
        message.message_id = Uuid::now_v7();
        let error = store
            .append(
                AppendRequest::new(id.clone(), ExpectedVersion::Any)
                    .event(added(1))
                    .outbox_message(message),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidAppend { .. }),
            "{topic:?}: {error:?}"
        );
    }
    assert_nothing_written(&store).await;
}

/// More events in one append than the limit (default 10,000) are refused.
pub async fn too_many_events_are_rejected<S: EventStore + OutboxReader>(store: S) {
    let limit = Limits::default().max_events_per_append;
    let events: Vec<NewEvent> = (0..=limit as i64).map(added).collect();
    let error = store
        .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any).events(events))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
    assert!(error.to_string().contains("10001"), "{error}");
    assert_nothing_written(&store).await;
}
