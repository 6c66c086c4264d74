//! Integration events: messages for other services, written to the outbox in
//! the same transaction as the events that caused them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DomainEvent, Error, GlobalPosition, Metadata, OutboxShard, Payload, StreamId};

/// The longest topic name accepted (Kafka's limit).
pub const MAX_TOPIC_LEN: usize = 249;

/// A message for other services, appended to the outbox with the events
/// that caused it and relayed to the bus afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Unique id; consumers deduplicate on it. By default the id of the
    /// domain event it came from, so that a retried command cannot produce
    /// a second message.
    pub message_id: Uuid,
    /// The topic it goes to.
    pub topic: String,
    /// The partitioning key: messages with the same key keep their order. By
    /// default the aggregate id.
    pub key: String,
    /// The message's type name.
    pub event_type: String,
    /// The message's schema version.
    pub event_version: u32,
    /// The JSON payload.
    pub payload: Payload,
    /// The stream of the event that caused it.
    pub stream: StreamId,
    /// The version of that event in its stream.
    pub stream_version: u64,
    /// Correlation, causation, trace context and headers.
    pub metadata: Metadata,
}

impl OutboxMessage {
    /// Checks the topic and key against what a broker accepts.
    pub(crate) fn validate(&self) -> Result<(), String> {
        validate_topic(&self.topic)?;
        if self.key.len() > 4096 {
            return Err(format!(
                "outbox message {} has a key of {} bytes, over 4096",
                self.message_id,
                self.key.len()
            ));
        }
        validate_type_name(&self.event_type)
            .map_err(|reason| format!("outbox message {}: {reason}", self.message_id))
    }
}

/// An outbox message as stored, with its position in the outbox order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    /// Its position: same order as the global stream, gap-free for readers.
    pub position: GlobalPosition,
    /// When it was written.
    pub recorded_at: DateTime<Utc>,
    /// The message.
    pub message: OutboxMessage,
}

/// What the domain chooses to publish for one of its events: the
/// [`Repository`](crate::Repository) turns it into an [`OutboxMessage`] with
/// the event's id, stream, version and metadata.
///
/// ```
/// use annals::{DomainEvent, IntegrationEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, DomainEvent)]
/// #[event(name = "OrderConfirmed", version = 1)]
/// struct OrderConfirmed { order_id: String, total_cents: u64 }
///
/// let message = IntegrationEvent::new("orders", &OrderConfirmed {
///     order_id: "o-1".into(),
///     total_cents: 1250,
/// })?;
/// assert_eq!(message.event_type, "OrderConfirmed");
/// assert_eq!(message.key, None); // the aggregate id will be used
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationEvent {
    /// The topic it goes to.
    pub topic: String,
    /// The partitioning key; `None` means the aggregate id.
    pub key: Option<String>,
    /// The message's type name.
    pub event_type: String,
    /// The message's schema version.
    pub event_version: u32,
    /// The JSON payload.
    pub payload: Payload,
}

impl IntegrationEvent {
    /// Encodes `event` for `topic`.
    pub fn new<E: DomainEvent>(topic: impl Into<String>, event: &E) -> Result<Self, Error> {
        let event_type = event.event_type();
        let payload = event.encode().map_err(|source| Error::Encode {
            what: format!("integration event {event_type}"),
            source,
        })?;
        Ok(IntegrationEvent {
            topic: topic.into(),
            key: None,
            event_type: event_type.name.to_owned(),
            event_version: event_type.version,
            payload,
        })
    }

    /// Sets the partitioning key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// Reads what was written to the outbox, in order: the one read contract of
/// the outbox, used by relays (one shard each) and by tests that check that
/// messages were written with their events (the whole outbox,
/// [`OutboxShard::ALL`]).
///
/// ```
/// use annals::{GlobalPosition, MemoryEventStore, OutboxReader, OutboxShard};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let store = MemoryEventStore::new();
/// let records = store.read_outbox(OutboxShard::ALL, GlobalPosition::START, 100).await?;
/// assert!(records.is_empty());
/// # Ok(())
/// # }
/// ```
pub trait OutboxReader: Send + Sync {
    /// Up to `limit` records of `shard` after `after`, in position order.
    /// Only records of finished commits are returned, so none can appear
    /// behind a position once it was read.
    fn read_outbox(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, Error>> + Send;
}

/// Checks a topic name against Kafka's rules.
pub(crate) fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic {topic:?} must be 1 to {MAX_TOPIC_LEN} characters"
        ));
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic {topic:?} is reserved"));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic {topic:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Checks a stored type name: 1 to 255 bytes, no control characters.
pub(crate) fn validate_type_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("type name {name:?} must be 1 to 255 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("type name {name:?} contains a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_kafka_rules() {
        assert!(validate_topic("orders.v1_x-y").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("..").is_err());
        assert!(validate_topic("has space").is_err());
        assert!(validate_topic(&"t".repeat(250)).is_err());
    }

    #[test]
    fn type_names_are_checked() {
        assert!(validate_type_name("OrderPlaced").is_ok());
        assert!(validate_type_name("").is_err());
        assert!(validate_type_name("bad\u{7}").is_err());
    }
}
