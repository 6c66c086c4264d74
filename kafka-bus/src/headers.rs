//! The headers every relayed message carries, and how they are written.

use std::borrow::Cow;

use rdkafka::message::{Header, OwnedHeaders};

use annals::OutboxRecord;

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
}

/// The media type of every payload annals writes.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json";

/// The headers of the message relayed from `record`.
pub fn outbox_headers(record: &OutboxRecord) -> OwnedHeaders {
    let message = &record.message;
    let metadata = &message.metadata;
    let mut pairs: Vec<(Cow<'static, str>, String)> = vec![
        (
            HeaderName::MESSAGE_ID.into(),
            message.message_id.to_string(),
        ),
        (HeaderName::TYPE.into(), message.event_type.clone()),
        (
            HeaderName::TYPE_VERSION.into(),
            message.event_version.to_string(),
        ),
        (HeaderName::STREAM_ID.into(), message.stream.to_string()),
        (
            HeaderName::STREAM_VERSION.into(),
            message.stream_version.to_string(),
        ),
        (
            HeaderName::CONTENT_TYPE.into(),
            JSON_CONTENT_TYPE.to_owned(),
        ),
        (
            HeaderName::OUTBOX_POSITION.into(),
            record.position.to_string(),
        ),
    ];
    let optional = [
        (
            HeaderName::CORRELATION_ID,
            metadata.correlation_id.map(|id| id.to_string()),
        ),
        (
            HeaderName::CAUSATION_ID,
            metadata.causation_id.map(|id| id.to_string()),
        ),
        (
            HeaderName::COMMAND_ID,
            metadata.command_id.map(|id| id.to_string()),
        ),
        (HeaderName::TENANT, metadata.tenant.clone()),
        (HeaderName::USER, metadata.user.clone()),
        (HeaderName::TRACEPARENT, metadata.traceparent.clone()),
    ];
    pairs.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| Some((Cow::Borrowed(name), value?))),
    );
    pairs.extend(metadata.headers.iter().map(|(name, value)| {
        (
            Cow::Owned(format!("{}{name}", HeaderName::HEADER_PREFIX)),
            value.clone(),
        )
    }));
    pairs.iter().fold(
        OwnedHeaders::new_with_capacity(pairs.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key: key.as_ref(),
                value: Some(value.as_bytes()),
            })
        },
    )
}
