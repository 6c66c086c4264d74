//! Outbox messages are written in the append's transaction.

use uuid::Uuid;

use super::{added, stream};
use crate::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, Metadata, OutboxMessage,
    OutboxReader, OutboxShard, Payload, StreamId,
};

/// An outbox message caused by version `version` of `stream`.
pub fn message(stream: &StreamId, version: u64, key: &str) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::now_v7(),
        topic: "orders.v1".into(),
        key: key.into(),
        event_type: "OrderPlaced".into(),
        event_version: 1,
        payload: Payload::encode(&serde_json::json!({ "version": version })).unwrap(),
        stream: stream.clone(),
        stream_version: version,
        metadata: Metadata {
            correlation_id: Some(Uuid::now_v7()),
            headers: [("origin".to_owned(), "conformance".to_owned())].into(),
            ..Metadata::default()
        },
    }
}

/// Messages come back with everything they were written with, in order.
pub async fn outbox_messages_are_written_with_their_events<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    let messages = vec![message(&id, 1, "order-1"), message(&id, 2, "order-1")];
    let outcome = store
        .append(
            AppendRequest::new(id.clone(), ExpectedVersion::NoStream)
                .events([added(1), added(2)])
                .outbox_message(messages[0].clone())
                .outbox_message(messages[1].clone()),
        )
        .await
        .unwrap();
    let records = store
        .read_outbox(OutboxShard::ALL, GlobalPosition::START, 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    for (record, written) in records.iter().zip(&messages) {
        let read = &record.message;
        assert_eq!(read.message_id, written.message_id);
        assert_eq!((&read.topic, &read.key), (&written.topic, &written.key));
        assert_eq!(
            (&read.event_type, read.event_version),
            (&written.event_type, written.event_version)
        );
        assert_eq!(
            read.payload.to_value().unwrap(),
            written.payload.to_value().unwrap()
        );
        assert_eq!(
            (&read.stream, read.stream_version),
            (&written.stream, written.stream_version)
        );
        assert_eq!(read.metadata, written.metadata);
        assert_eq!(
            record.position.commit, outcome.last_position.commit,
            "same commit as the events"
        );
    }
    assert!(records[0].position < records[1].position);
    let after_first = store
        .read_outbox(OutboxShard::ALL, records[0].position, 10)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].message.message_id, messages[1].message_id);
}

/// A refused append writes no message.
pub async fn outbox_is_not_written_on_conflict<S: EventStore + OutboxReader>(store: S) {
    let id = stream("order-1");
    store
        .append(AppendRequest::new(id.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    for _ in 0..3 {
        let refused = AppendRequest::new(id.clone(), ExpectedVersion::NoStream)
            .event(added(2))
            .outbox_message(message(&id, 2, "k"));
        assert!(store.append(refused).await.unwrap_err().is_conflict());
    }
    assert!(
        store
            .read_outbox(OutboxShard::ALL, GlobalPosition::START, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Messages of later commits come later, whatever the stream; concurrent
/// writers included.
pub async fn outbox_follows_commit_order<S: EventStore + OutboxReader>(store: S) {
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = stream(&format!("order-{writer}"));
            for version in 1..=10u64 {
                store
                    .append(
                        AppendRequest::new(id.clone(), ExpectedVersion::Exact(version - 1))
                            .event(added(1))
                            .outbox_message(message(&id, version, id.as_str())),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut records = Vec::new();
    let mut checkpoint = GlobalPosition::START;
    loop {
        let page = store
            .read_outbox(OutboxShard::ALL, checkpoint, 7)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        checkpoint = last.position;
        records.extend(page);
    }
    assert_eq!(records.len(), 40);
    for pair in records.windows(2) {
        assert!(pair[0].position < pair[1].position);
    }
    for writer in 0..4 {
        let key = format!("order-{writer}");
        let versions: Vec<u64> = records
            .iter()
            .filter(|record| record.message.key == key)
            .map(|record| record.message.stream_version)
            .collect();
        assert_eq!(versions, (1..=10).collect::<Vec<_>>(), "order per key");
    }
}
