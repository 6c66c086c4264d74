//! A consumed record, read back into an annals message.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::Headers;
use uuid::Uuid;

use annals::{DomainEvent, GlobalPosition, Metadata, Payload, StreamId};

use crate::Error;
use crate::error::RecordOrigin;
use crate::headers::{HeaderName, JSON_CONTENT_TYPE};

/// A record consumed from Kafka, with the headers annals writes read back:
/// what a handler receives.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    /// The message id; the inbox deduplicates on it.
    pub message_id: Uuid,
    /// The message's type name.
    pub event_type: String,
    /// The message's schema version.
    pub event_version: u32,
    /// The JSON payload.
    pub payload: Payload,
    /// The partitioning key, if any.
    pub key: Option<String>,
    /// The stream of the event that caused it, when the producer says.
    pub stream: Option<StreamId>,
    /// The version of that event, when the producer says.
    pub stream_version: Option<u64>,
    /// The outbox position it was relayed from, when relayed by annals.
    pub outbox_position: Option<GlobalPosition>,
    /// Correlation, causation, tenant, user, trace context and headers.
    pub metadata: Metadata,
    /// Where it was read.
    pub origin: RecordOrigin,
    /// The record's timestamp, when it has one.
    pub timestamp: Option<DateTime<Utc>>,
}

impl IncomingMessage {
    /// Reads a consumed record. Records without a message id, type or type
    /// version, with unreadable headers or a payload that is not JSON are
    /// refused with an error naming the record.
    pub fn from_record<M: Message>(record: &M) -> Result<Self, Error> {
        let origin = RecordOrigin {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
        };
        let headers = read_headers(record, &origin)?;
        let required = |name: &'static str| {
            headers.get(name).ok_or_else(|| Error::MissingHeader {
                origin: origin.clone(),
                header: name,
            })
        };
        let message_id = parse(
            &origin,
            HeaderName::MESSAGE_ID,
            required(HeaderName::MESSAGE_ID)?,
        )?;
        let event_type = required(HeaderName::TYPE)?.clone();
        let event_version = parse(
            &origin,
            HeaderName::TYPE_VERSION,
            required(HeaderName::TYPE_VERSION)?,
        )?;
        if let Some(content_type) = headers.get(HeaderName::CONTENT_TYPE)
            && !content_type.starts_with(JSON_CONTENT_TYPE)
        {
            return Err(Error::InvalidHeader {
                origin,
                header: HeaderName::CONTENT_TYPE,
                reason: format!("`{content_type}` is not {JSON_CONTENT_TYPE}"),
            });
        }
        let invalid_payload =
            |source: Box<dyn std::error::Error + Send + Sync>| Error::InvalidPayload {
                origin: origin.clone(),
                source,
            };
        let payload_text = std::str::from_utf8(record.payload().unwrap_or(b"null"))
            .map_err(|error| invalid_payload(Box::new(error)))?;
        let payload = Payload::from_json(payload_text.to_owned())
            .map_err(|error| invalid_payload(Box::new(error)))?;
        let metadata = Metadata {
            correlation_id: optional(&headers, &origin, HeaderName::CORRELATION_ID)?,
            causation_id: optional(&headers, &origin, HeaderName::CAUSATION_ID)?,
            command_id: optional(&headers, &origin, HeaderName::COMMAND_ID)?,
            tenant: headers.get(HeaderName::TENANT).cloned(),
            user: headers.get(HeaderName::USER).cloned(),
            traceparent: headers.get(HeaderName::TRACEPARENT).cloned(),
            headers: headers
                .iter()
                .filter_map(|(name, value)| {
                    let name = name.strip_prefix(HeaderName::HEADER_PREFIX)?;
                    Some((name.to_owned(), value.clone()))
                })
                .collect(),
        };
        let key = record
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned());
        Ok(IncomingMessage {
            message_id,
            event_type,
            event_version,
            payload,
            key,
            stream: optional(&headers, &origin, HeaderName::STREAM_ID)?,
            stream_version: optional(&headers, &origin, HeaderName::STREAM_VERSION)?,
            outbox_position: optional(&headers, &origin, HeaderName::OUTBOX_POSITION)?,
            metadata,
            timestamp: record
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis),
            origin,
        })
    }

    /// Decodes the payload into `E`, through `E`'s upcasters.
    pub fn decode<E: DomainEvent>(&self) -> Result<Vec<E>, annals::Error> {
        annals::decode_payload(&self.event_type, self.event_version, self.payload.get())
    }
}

fn read_headers<M: Message>(
    record: &M,
    origin: &RecordOrigin,
) -> Result<BTreeMap<String, String>, Error> {
    let mut read = BTreeMap::new();
    let Some(headers) = record.headers() else {
        return Ok(read);
    };
    for header in headers.iter() {
        let Some(value) = header.value else { continue };
        let Ok(value) = std::str::from_utf8(value) else {
            // Headers annals reads are text; foreign binary ones are ignored
            // unless they carry one of its names.
            if header.key.starts_with("annals-") {
                return Err(Error::InvalidHeader {
                    origin: origin.clone(),
                    header: "annals-*",
                    reason: format!("`{}` is not UTF-8", header.key),
                });
            }
            continue;
        };
        read.insert(header.key.to_owned(), value.to_owned());
    }
    Ok(read)
}

fn optional<T: FromStr>(
    headers: &BTreeMap<String, String>,
    origin: &RecordOrigin,
    header: &'static str,
) -> Result<Option<T>, Error>
where
    T::Err: std::fmt::Display,
{
    headers
        .get(header)
        .map(|value| parse(origin, header, value))
        .transpose()
}

fn parse<T: FromStr>(origin: &RecordOrigin, header: &'static str, value: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|error: T::Err| Error::InvalidHeader {
        origin: origin.clone(),
        header,
        reason: format!("{value:?}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use annals::{OutboxMessage, OutboxRecord};
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;
    use crate::outbox_headers;

    fn record() -> OutboxRecord {
        OutboxRecord {
            position: GlobalPosition::new(812, 4051),
            recorded_at: Utc::now(),
            message: OutboxMessage {
                message_id: Uuid::now_v7(),
                topic: "orders".into(),
                key: "o-1".into(),
                event_type: "OrderConfirmed".into(),
                event_version: 2,
                payload: Payload::encode(&serde_json::json!({ "total": 5 })).unwrap(),
                stream: StreamId::new("order-o-1").unwrap(),
                stream_version: 4,
                metadata: Metadata {
                    correlation_id: Some(Uuid::now_v7()),
                    causation_id: Some(Uuid::now_v7()),
                    command_id: Some(Uuid::now_v7()),
                    tenant: Some("acme".into()),
                    user: Some("alice".into()),
                    traceparent: Some(
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                    ),
                    headers: [("channel".to_owned(), "web".to_owned())].into(),
                },
            },
        }
    }

    fn kafka_record(outbox: &OutboxRecord) -> OwnedMessage {
        OwnedMessage::new(
            Some(outbox.message.payload.get().as_bytes().to_vec()),
            Some(outbox.message.key.as_bytes().to_vec()),
            outbox.message.topic.clone(),
            Timestamp::CreateTime(1_700_000_000_000),
            3,
            77,
            Some(outbox_headers(outbox)),
        )
    }

    #[test]
    fn headers_carry_everything_back() {
        let outbox = record();
        let incoming = IncomingMessage::from_record(&kafka_record(&outbox)).unwrap();
        let message = &outbox.message;
        assert_eq!(incoming.message_id, message.message_id);
        assert_eq!(
            (incoming.event_type.as_str(), incoming.event_version),
            ("OrderConfirmed", 2)
        );
        assert_eq!(incoming.payload, message.payload);
        assert_eq!(incoming.key.as_deref(), Some("o-1"));
        assert_eq!(incoming.stream.as_ref(), Some(&message.stream));
        assert_eq!(incoming.stream_version, Some(4));
        assert_eq!(incoming.outbox_position, Some(outbox.position));
        assert_eq!(incoming.metadata, message.metadata);
        assert_eq!(incoming.origin.to_string(), "orders[3]@77");
        assert_eq!(
            incoming.timestamp.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_000)
        );
    }

    #[test]
    fn foreign_or_broken_records_are_refused_with_the_reason() {
        let bare = OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            1,
            None,
        );
        let error = IncomingMessage::from_record(&bare).unwrap_err();
        assert!(
            matches!(
                error,
                Error::MissingHeader {
                    header: HeaderName::MESSAGE_ID,
                    ..
                }
            ),
            "{error}"
        );

        let outbox = record();
        let garbage = OwnedMessage::new(
            Some(b"not json".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            2,
            Some(outbox_headers(&outbox)),
        );
        let error = IncomingMessage::from_record(&garbage).unwrap_err();
        assert!(matches!(error, Error::InvalidPayload { .. }), "{error}");
        assert!(error.to_string().contains("t[0]@2"), "{error}");

        // JSON text is UTF-8: bytes that are not are a payload problem,
        // not one of the content-type header the record carries.
        let binary = OwnedMessage::new(
            Some(vec![0xff, 0xfe, b'{', b'}']),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            3,
            Some(outbox_headers(&outbox)),
        );
        let error = IncomingMessage::from_record(&binary).unwrap_err();
        assert!(matches!(error, Error::InvalidPayload { .. }), "{error}");
        assert_eq!(
            crate::DeadLetterReason::of_unreadable(&error),
            crate::DeadLetterReason::InvalidPayload
        );
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert!(
            cause.is_some_and(|cause| cause.contains("utf-8")),
            "{error:?}"
        );
    }
}
