//! The headers every relayed message carries, and how they are written.

use std::fmt::{self, Write as _};

use rdkafka::message::{Header, OwnedHeaders};

use annals::OutboxRecord;
use uuid::Uuid;

/// The names of the headers annals writes on every message.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HeaderName;

impl HeaderName {
    /// The message id (UUID); consumers deduplicate on it.
    pub const MESSAGE_ID: &'static str = "annals-message-id";
    /// The message's type name.
    pub const TYPE: &'static str = "annals-type";
    /// The message's schema version.
    pub const TYPE_VERSION: &'static str = "annals-type-version";
    /// The stream of the event that caused it.
    pub const STREAM_ID: &'static str = "annals-stream-id";
    /// The version of that event in its stream.
    pub const STREAM_VERSION: &'static str = "annals-stream-version";
    /// The correlation id.
    pub const CORRELATION_ID: &'static str = "annals-correlation-id";
    /// The causation id.
    pub const CAUSATION_ID: &'static str = "annals-causation-id";
    /// The id of the command that caused it.
    pub const COMMAND_ID: &'static str = "annals-command-id";
    /// The tenant.
    pub const TENANT: &'static str = "annals-tenant";
    /// The user.
    pub const USER: &'static str = "annals-user";
    /// The W3C trace context, under its standard name.
    pub const TRACEPARENT: &'static str = "traceparent";
    /// The payload's media type, `application/json`.
    pub const CONTENT_TYPE: &'static str = "content-type";
    /// The outbox position the message was relayed from, `commit/sequence`;
    /// the relay finds the last one it published in each partition's tail.
    pub const OUTBOX_POSITION: &'static str = "annals-outbox-position";
    /// The name of the relay that published it; a relay recovering after a
    /// crash trusts only the outbox positions its own name wrote.
    pub const RELAY: &'static str = "annals-relay";
    /// The prefix of the metadata's free-form headers.
    pub const HEADER_PREFIX: &'static str = "annals-header-";

    /// The prefix of the headers a consumer adds when it dead-letters a
    /// record; a replay removes every header with it.
    pub const DEAD_LETTER_PREFIX: &'static str = "annals-dlq-";
    /// Why the record was dead-lettered, one of the
    /// [`DeadLetterReason`](crate::DeadLetterReason) codes.
    pub const DEAD_LETTER_REASON: &'static str = "annals-dlq-reason";
    /// The last error, as text.
    pub const DEAD_LETTER_ERROR: &'static str = "annals-dlq-error";
    /// How many attempts failed (0 for records that were never handled).
    pub const DEAD_LETTER_ATTEMPTS: &'static str = "annals-dlq-attempts";
    /// The topic the record was consumed from.
    pub const DEAD_LETTER_ORIGINAL_TOPIC: &'static str = "annals-dlq-original-topic";
    /// The partition it was consumed from.
    pub const DEAD_LETTER_ORIGINAL_PARTITION: &'static str = "annals-dlq-original-partition";
    /// Its offset there.
    pub const DEAD_LETTER_ORIGINAL_OFFSET: &'static str = "annals-dlq-original-offset";
    /// When its first attempt failed (or it was refused), RFC 3339.
    pub const DEAD_LETTER_FIRST_FAILURE: &'static str = "annals-dlq-first-failure";
    /// The consumer (group) that gave up on it.
    pub const DEAD_LETTER_CONSUMER: &'static str = "annals-dlq-consumer";
    /// On a dead letter cut to fit its topic: what of the original record
    /// it lacks, `payload`, `key` and `headers`, comma-separated. The
    /// payload and the key keep their first bytes; of the headers, those
    /// that did not fit are left out whole and the others kept in order.
    /// The original stays at the offset the origin headers name.
    pub const DEAD_LETTER_CUT: &'static str = "annals-dlq-cut";
    /// On a cut dead letter: the original payload's size in bytes.
    pub const DEAD_LETTER_ORIGINAL_PAYLOAD_BYTES: &'static str =
        "annals-dlq-original-payload-bytes";
    /// On a cut dead letter: the original key's size in bytes.
    pub const DEAD_LETTER_ORIGINAL_KEY_BYTES: &'static str = "annals-dlq-original-key-bytes";
    /// On a cut dead letter: the size of the original headers (names and
    /// values) in bytes.
    pub const DEAD_LETTER_ORIGINAL_HEADERS_BYTES: &'static str =
        "annals-dlq-original-headers-bytes";
}

/// The media type of every payload annals writes.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";

/// The headers of the message relayed from `record`: every header of
/// [`HeaderName`] that the record has a value for, except
/// [`HeaderName::RELAY`], which only a relay writes (see
/// [`relayed_headers`]).
///
/// ```
/// # use annals::{GlobalPosition, Metadata, OutboxMessage, OutboxRecord, Payload, StreamId};
/// # use annals_kafka::rdkafka::message::Headers;
/// # let record = OutboxRecord {
/// #     position: GlobalPosition::new(7, 3),
/// #     recorded_at: annals::chrono::Utc::now(),
/// #     message: OutboxMessage {
/// #         message_id: uuid::Uuid::nil(),
/// #         topic: "orders".into(),
/// #         key: "order-1".into(),
/// #         event_type: "OrderPlaced".into(),
/// #         event_version: 1,
/// #         payload: Payload::encode(&1).unwrap(),
/// #         stream: StreamId::new("order-1").unwrap(),
/// #         stream_version: 1,
/// #         metadata: Metadata::default(),
/// #     },
/// # };
/// use annals_kafka::{HeaderName, outbox_headers};
///
/// let headers = outbox_headers(&record);
/// let position = headers
///     .iter()
///     .find(|header| header.key == HeaderName::OUTBOX_POSITION)
///     .and_then(|header| header.value);
/// assert_eq!(position, Some(&b"7/3"[..]));
/// ```
pub fn outbox_headers(record: &OutboxRecord) -> OwnedHeaders {
    build_headers(record, None)
}

/// The headers the relay named `relay` publishes `record` with:
/// [`outbox_headers`] and [`HeaderName::RELAY`], by which a relay recovering
/// after a crash recognises what it published itself.
pub fn relayed_headers(record: &OutboxRecord, relay: &str) -> OwnedHeaders {
    build_headers(record, Some(relay))
}

/// Writes the headers straight into librdkafka's list (which copies each
/// value): every message of a drain passes here, so no intermediate list
/// or string per header is built.
fn build_headers(record: &OutboxRecord, relay: Option<&str>) -> OwnedHeaders {
    let message = &record.message;
    let metadata = &message.metadata;
    let ids = [
        (HeaderName::CORRELATION_ID, metadata.correlation_id),
        (HeaderName::CAUSATION_ID, metadata.causation_id),
        (HeaderName::COMMAND_ID, metadata.command_id),
    ];
    let texts = [
        (HeaderName::TENANT, metadata.tenant.as_deref()),
        (HeaderName::USER, metadata.user.as_deref()),
        (HeaderName::TRACEPARENT, metadata.traceparent.as_deref()),
    ];
    let count = 7
        + ids.iter().filter(|(_, id)| id.is_some()).count()
        + texts.iter().filter(|(_, text)| text.is_some()).count()
        + metadata.headers.len()
        + usize::from(relay.is_some());
    let mut uuid = Uuid::encode_buffer();
    // Numbers and prefixed names are written here, one at a time.
    let mut scratch = String::with_capacity(48);
    let mut headers = OwnedHeaders::new_with_capacity(count);
    headers = add(
        headers,
        HeaderName::MESSAGE_ID,
        message.message_id.hyphenated().encode_lower(&mut uuid),
    );
    headers = add(headers, HeaderName::TYPE, &message.event_type);
    headers = add(
        headers,
        HeaderName::TYPE_VERSION,
        formatted(&mut scratch, message.event_version),
    );
    headers = add(headers, HeaderName::STREAM_ID, message.stream.as_str());
    headers = add(
        headers,
        HeaderName::STREAM_VERSION,
        formatted(&mut scratch, message.stream_version),
    );
    headers = add(headers, HeaderName::CONTENT_TYPE, JSON_CONTENT_TYPE);
    headers = add(
        headers,
        HeaderName::OUTBOX_POSITION,
        formatted(&mut scratch, record.position),
    );
    for (name, id) in ids {
        if let Some(id) = id {
            headers = add(headers, name, id.hyphenated().encode_lower(&mut uuid));
        }
    }
    for (name, text) in texts {
        if let Some(text) = text {
            headers = add(headers, name, text);
        }
    }
    for (name, value) in &metadata.headers {
        scratch.clear();
        scratch.push_str(HeaderName::HEADER_PREFIX);
        scratch.push_str(name);
        headers = headers.insert(Header {
            key: scratch.as_str(),
            value: Some(value.as_str()),
        });
    }
    if let Some(relay) = relay {
        headers = add(headers, HeaderName::RELAY, relay);
    }
    headers
}

fn add(headers: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    headers.insert(Header {
        key,
        value: Some(value),
    })
}

/// `value` as text, in `scratch`.
fn formatted(scratch: &mut String, value: impl fmt::Display) -> &str {
    scratch.clear();
    write!(scratch, "{value}").expect("writing to a String cannot fail");
    scratch.as_str()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use annals::{GlobalPosition, Metadata, OutboxMessage, Payload, StreamId};
    use rdkafka::message::Headers;

    use super::*;

    fn record(metadata: Metadata) -> OutboxRecord {
        OutboxRecord {
            position: GlobalPosition::new(42, 7),
            recorded_at: chrono::Utc::now(),
            message: OutboxMessage {
                message_id: Uuid::from_u128(1),
                topic: "orders".into(),
                key: "order-1".into(),
                event_type: "OrderPlaced".into(),
                event_version: 3,
                payload: Payload::encode(&1).unwrap(),
                stream: StreamId::new("order-1").unwrap(),
                stream_version: 12,
                metadata,
            },
        }
    }

    fn pairs(headers: &OwnedHeaders) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|header| {
                let value = header.value.expect("every header has a value");
                (
                    header.key.to_owned(),
                    String::from_utf8(value.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn expected(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn every_header_is_written_once_in_order() {
        let metadata = Metadata {
            correlation_id: Some(Uuid::from_u128(2)),
            causation_id: Some(Uuid::from_u128(3)),
            command_id: Some(Uuid::from_u128(4)),
            tenant: Some("acme".into()),
            user: Some("ada".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            headers: BTreeMap::from([("region".into(), "eu".into()), ("a".into(), "b".into())]),
        };
        let record = record(metadata);
        let full = [
            (
                HeaderName::MESSAGE_ID,
                "00000000-0000-0000-0000-000000000001",
            ),
            (HeaderName::TYPE, "OrderPlaced"),
            (HeaderName::TYPE_VERSION, "3"),
            (HeaderName::STREAM_ID, "order-1"),
            (HeaderName::STREAM_VERSION, "12"),
            (HeaderName::CONTENT_TYPE, "application/json"),
            (HeaderName::OUTBOX_POSITION, "42/7"),
            (
                HeaderName::CORRELATION_ID,
                "00000000-0000-0000-0000-000000000002",
            ),
            (
                HeaderName::CAUSATION_ID,
                "00000000-0000-0000-0000-000000000003",
            ),
            (
                HeaderName::COMMAND_ID,
                "00000000-0000-0000-0000-000000000004",
            ),
            (HeaderName::TENANT, "acme"),
            (HeaderName::USER, "ada"),
            (
                HeaderName::TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("annals-header-a", "b"),
            ("annals-header-region", "eu"),
        ];
        assert_eq!(pairs(&outbox_headers(&record)), expected(&full));
        let mut relayed = full.to_vec();
        relayed.push((HeaderName::RELAY, "orders-relay"));
        assert_eq!(
            pairs(&relayed_headers(&record, "orders-relay")),
            expected(&relayed)
        );
    }

    #[test]
    fn absent_metadata_writes_no_header() {
        let record = record(Metadata::default());
        let names: Vec<String> = pairs(&outbox_headers(&record))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            [
                HeaderName::MESSAGE_ID,
                HeaderName::TYPE,
                HeaderName::TYPE_VERSION,
                HeaderName::STREAM_ID,
                HeaderName::STREAM_VERSION,
                HeaderName::CONTENT_TYPE,
                HeaderName::OUTBOX_POSITION,
            ]
        );
    }
}
