//! Stored events decode into the code's types, through upcasters.

use serde_json::json;

use super::{FixtureEvent, read_stream, stream};
use crate::{
    AppendRequest, Error, EventStore, ExpectedVersion, GlobalPosition, Metadata, NewEvent,
    OutboxReader, Payload,
};

fn raw(event_type: &str, version: u32, payload: serde_json::Value) -> NewEvent {
    NewEvent::raw(
        event_type,
        version,
        Payload::encode(&payload).unwrap(),
        Metadata::default(),
    )
}

async fn store_raw<S: EventStore>(store: &S, stream_name: &str, events: Vec<NewEvent>) {
    store
        .append(AppendRequest::new(stream(stream_name), ExpectedVersion::Any).events(events))
        .await
        .unwrap();
}

/// An event stored at an old version reads as the current version, from a
/// stream and from the global stream.
pub async fn upcasting_on_read_brings_old_versions_up_to_date<S: EventStore + OutboxReader>(
    store: S,
) {
    store_raw(
        &store,
        "order-1",
        vec![raw("Added", 1, json!({ "amount": 5 }))],
    )
    .await;
    let events = read_stream(&store, &stream("order-1")).await;
    assert_eq!(
        events[0].event_version, 1,
        "the store keeps what was written"
    );
    let decoded: Vec<FixtureEvent> = events[0].decode().unwrap();
    assert_eq!(
        decoded,
        [FixtureEvent::Added {
            amount: 5,
            note: String::new()
        }]
    );
    let global = store.read_all(GlobalPosition::START, 10).await.unwrap();
    let envelopes = global[0].clone().into_envelopes::<FixtureEvent>().unwrap();
    assert_eq!(
        envelopes[0].event,
        FixtureEvent::Added {
            amount: 5,
            note: String::new()
        }
    );
    assert_eq!(envelopes[0].version, 1);
    assert_eq!(envelopes[0].position, global[0].position);
}

/// A renamed type and a split event come out as the current types, the split
/// in order and sharing the stored event's place.
pub async fn upcasting_renames_and_splits<S: EventStore + OutboxReader>(store: S) {
    store_raw(
        &store,
        "order-1",
        vec![
            raw("Subtracted", 1, json!({ "amount": 2 })),
            raw("Moved", 1, json!({ "amount": 7 })),
        ],
    )
    .await;
    let events = read_stream(&store, &stream("order-1")).await;
    assert_eq!(
        events[0].decode::<FixtureEvent>().unwrap(),
        [FixtureEvent::Removed { amount: 2 }]
    );
    let split = events[1].clone().into_envelopes::<FixtureEvent>().unwrap();
    let decoded: Vec<_> = split
        .iter()
        .map(|envelope| envelope.event.clone())
        .collect();
    assert_eq!(
        decoded,
        [
            FixtureEvent::Removed { amount: 7 },
            FixtureEvent::Added {
                amount: 7,
                note: String::new()
            }
        ]
    );
    assert!(
        split
            .iter()
            .all(|envelope| envelope.version == 2 && envelope.event_id == events[1].event_id)
    );
}

/// A version with no step towards the code's version is an error naming the
/// stream, version, type and the missing step.
pub async fn missing_upcaster_step_is_a_typed_error<S: EventStore + OutboxReader>(store: S) {
    store_raw(
        &store,
        "order-1",
        vec![raw("Added", 2, json!({ "amount": 1, "note": "" }))],
    )
    .await;
    store_raw(
        &store,
        "order-1",
        vec![raw("Tagged", 1, json!({ "tag": "x" }))],
    )
    .await;
    let events = read_stream(&store, &stream("order-1")).await;
    match events[1].decode::<FixtureEvent>().unwrap_err() {
        Error::MissingUpcaster {
            stream,
            version,
            event_type,
            event_version,
            known_version,
        } => {
            assert_eq!(stream.as_str(), "order-1");
            assert_eq!(version, 2);
            assert_eq!(
                (event_type.as_str(), event_version, known_version),
                ("Tagged", 2, 3)
            );
        }
        other => panic!("expected a missing upcaster, got {other:?}"),
    }
}

/// A type the code does not know, or a version newer than it knows, is an
/// error naming the stream, version and type.
pub async fn unknown_event_type_is_a_typed_error<S: EventStore + OutboxReader>(store: S) {
    store_raw(
        &store,
        "order-1",
        vec![
            raw("Refunded", 1, json!({})),
            raw("Added", 9, json!({ "amount": 1 })),
        ],
    )
    .await;
    let events = read_stream(&store, &stream("order-1")).await;
    for (event, expected_type, expected_version) in
        [(&events[0], "Refunded", 1), (&events[1], "Added", 9)]
    {
        match event.decode::<FixtureEvent>().unwrap_err() {
            Error::UnknownEventType {
                stream,
                version,
                event_type,
                event_version,
            } => {
                assert_eq!(stream.as_str(), "order-1");
                assert_eq!(version, event.version);
                assert_eq!(
                    (event_type.as_str(), event_version),
                    (expected_type, expected_version)
                );
            }
            other => panic!("expected an unknown type, got {other:?}"),
        }
    }
}

/// A payload that does not fit the type is an error naming the stream,
/// version and type, with the decoder's message.
pub async fn undecodable_payload_is_a_typed_error<S: EventStore + OutboxReader>(store: S) {
    store_raw(
        &store,
        "order-1",
        vec![raw("Removed", 1, json!({ "amount": "not a number" }))],
    )
    .await;
    let events = read_stream(&store, &stream("order-1")).await;
    let error = events[0].decode::<FixtureEvent>().unwrap_err();
    match &error {
        Error::Decode {
            stream,
            version,
            event_type,
            event_version,
            source,
        } => {
            assert_eq!(stream.as_str(), "order-1");
            assert_eq!(
                (*version, event_type.as_str(), *event_version),
                (1, "Removed", 1)
            );
            assert!(source.to_string().contains("invalid type"), "{source}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(error.to_string().contains("order-1"), "{error}");
}
