//! Events with their identity, position and metadata: what is written, what
//! is read back raw, and what readers get typed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::upcast::{Origin, decode_stored};
use crate::{DomainEvent, Error, GlobalPosition, Payload, StreamId};

/// Who asked for an event and why: carried from a command to its events, to
/// the integration messages they produce and to the commands those cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by everything one request caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the command or event that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The id of the command that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// The tenant the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The user who issued the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The W3C trace context of the command, so traces span services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Anything else, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Metadata {
    /// Metadata caused by `cause`: same correlation id (or the cause's id when
    /// it has none), the cause as causation, same tenant, user and trace.
    pub fn caused_by(cause_id: Uuid, cause: &Metadata) -> Metadata {
        Metadata {
            correlation_id: Some(cause.correlation_id.unwrap_or(cause_id)),
            causation_id: Some(cause_id),
            command_id: None,
            tenant: cause.tenant.clone(),
            user: cause.user.clone(),
            traceparent: cause.traceparent.clone(),
            headers: BTreeMap::new(),
        }
    }
}

/// An event to append: its id, stored type, payload and metadata.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// A unique id, UUID v7 unless given.
    pub event_id: Uuid,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub event_version: u32,
    /// The JSON payload.
    pub payload: Payload,
    /// Correlation, causation and the rest.
    pub metadata: Metadata,
}

impl NewEvent {
    /// Encodes a domain event with a new UUID v7 id.
    pub fn new<E: DomainEvent>(event: &E, metadata: Metadata) -> Result<Self, Error> {
        let event_type = event.event_type();
        let payload = event.encode().map_err(|source| Error::Encode {
            what: format!("event {event_type}"),
            source,
        })?;
        Ok(NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.name.to_owned(),
            event_version: event_type.version,
            payload,
            metadata,
        })
    }

    /// An event from its stored parts, for imports, tests and tools.
    pub fn raw(
        event_type: impl Into<String>,
        event_version: u32,
        payload: Payload,
        metadata: Metadata,
    ) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            event_version,
            payload,
            metadata,
        }
    }

    /// Replaces the event id (e.g. with a deterministic one).
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }
}

/// An event as stored: raw payload, with its place in its stream and in the
/// global stream.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// The event's unique id.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version in that stream (the first event is 1).
    pub version: u64,
    /// Its position in the global stream.
    pub position: GlobalPosition,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub event_version: u32,
    /// The stored JSON payload.
    pub payload: Payload,
    /// Its metadata.
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// Decodes the payload into `E`, upcasting first where `E` needs it.
    ///
    /// Usually one event; several when an upcaster splits it, none when one
    /// drops it. Errors name the stream, version and type.
    pub fn decode<E: DomainEvent>(&self) -> Result<Vec<E>, Error> {
        decode_stored(
            Origin {
                stream: &self.stream,
                version: self.version,
            },
            &self.event_type,
            self.event_version,
            self.payload.get(),
        )
    }

    /// Decodes into typed envelopes that keep this event's id, place and
    /// metadata, leaving the record as it is.
    pub fn to_envelopes<E: DomainEvent>(&self) -> Result<Vec<Envelope<E>>, Error> {
        Ok(self
            .decode::<E>()?
            .into_iter()
            .map(|event| Envelope {
                event_id: self.event_id,
                stream: self.stream.clone(),
                version: self.version,
                position: self.position,
                recorded_at: self.recorded_at,
                metadata: self.metadata.clone(),
                event,
            })
            .collect())
    }

    /// Decodes into typed envelopes that keep this event's id, place and
    /// metadata.
    pub fn into_envelopes<E: DomainEvent>(self) -> Result<Vec<Envelope<E>>, Error> {
        let mut events = self.decode::<E>()?;
        if events.len() == 1 {
            let event = events.pop().expect("one event");
            return Ok(vec![Envelope::from_parts(self, event)]);
        }
        Ok(events
            .into_iter()
            .map(|event| Envelope::from_parts(self.clone(), event))
            .collect())
    }
}

/// A typed event with its identity, place and metadata.
///
/// Events produced by one upcasting split share the stored event's id,
/// version and position.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// The stored event's id.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version in that stream.
    pub version: u64,
    /// Its position in the global stream.
    pub position: GlobalPosition,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Its metadata.
    pub metadata: Metadata,
    /// The event.
    pub event: E,
}

impl<E> Envelope<E> {
    fn from_parts(record: RecordedEvent, event: E) -> Self {
        Envelope {
            event_id: record.event_id,
            stream: record.stream,
            version: record.version,
            position: record.position,
            recorded_at: record.recorded_at,
            metadata: record.metadata,
            event,
        }
    }
}
