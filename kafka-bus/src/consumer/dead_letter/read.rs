//! Dead letters read back from a dead-letter topic.

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use uuid::Uuid;

use super::DeadLetterReason;
use crate::error::RecordOrigin;
use crate::{Error, HeaderName};

/// A record read from a dead-letter topic: the original record (key,
/// payload, headers) and what the consumer that gave up on it recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Where the dead letter itself is.
    pub origin: RecordOrigin,
    /// Where the original record was consumed from.
    pub original: RecordOrigin,
    /// Why it was given up on.
    pub reason: DeadLetterReason,
    /// The last error, as text.
    pub error: String,
    /// How many attempts failed (0 when it was refused unhandled).
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: DateTime<Utc>,
    /// The consumer that gave up on it.
    pub consumer: String,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original payload.
    pub payload: Option<Vec<u8>>,
    /// The original headers, in order, without the dead-letter ones.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// What this dead letter lacks of the original record, when the
    /// dead-letter topic refused it whole; `None` when it is whole.
    pub cut: Option<DeadLetterCut>,
}

/// What a dead letter lacks of its original record: it was cut to fit the
/// dead-letter topic (see [`HeaderName::DEAD_LETTER_CUT`]). The original
/// stays where [`DeadLetter::original`] says, as long as that topic keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterCut {
    /// The payload is shortened: it keeps the original's first bytes.
    pub payload: bool,
    /// The key is shortened: it keeps the original's first bytes.
    pub key: bool,
    /// Some original headers are left out (whole ones; those kept are in
    /// their order).
    pub headers: bool,
    /// The original payload's size in bytes.
    pub original_payload_bytes: u64,
    /// The original key's size in bytes.
    pub original_key_bytes: u64,
    /// The original headers' size (names and values) in bytes.
    pub original_headers_bytes: u64,
}

impl DeadLetter {
    /// Reads a record of a dead-letter topic. Fails, naming the header, when
    /// it lacks one of the dead-letter headers or one cannot be parsed.
    pub fn from_record<M: Message>(record: &M) -> Result<Self, Error> {
        let origin = RecordOrigin {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
        };
        let mut headers = Vec::new();
        let mut letter_headers = Vec::new();
        if let Some(read) = record.headers() {
            for header in read.iter() {
                let value = header.value.map(<[u8]>::to_vec);
                if header.key.starts_with(HeaderName::DEAD_LETTER_PREFIX) {
                    letter_headers.push((header.key.to_owned(), value));
                } else {
                    headers.push((header.key.to_owned(), value));
                }
            }
        }
        let text = |name: &'static str| -> Result<String, Error> {
            let value = letter_headers
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.as_deref())
                .ok_or_else(|| Error::MissingHeader {
                    origin: origin.clone(),
                    header: name,
                })?;
            String::from_utf8(value.to_vec()).map_err(|_| Error::InvalidHeader {
                origin: origin.clone(),
                header: name,
                reason: "not UTF-8".into(),
            })
        };
        let invalid = |name: &'static str, reason: String| Error::InvalidHeader {
            origin: origin.clone(),
            header: name,
            reason,
        };
        let number = |name: &'static str| -> Result<i64, Error> {
            let value = text(name)?;
            value
                .parse()
                .map_err(|error| invalid(name, format!("{value:?}: {error}")))
        };
        let reason_code = text(HeaderName::DEAD_LETTER_REASON)?;
        let reason = DeadLetterReason::from_code(&reason_code).ok_or_else(|| {
            invalid(
                HeaderName::DEAD_LETTER_REASON,
                format!("unknown reason {reason_code:?}"),
            )
        })?;
        let first_failure = text(HeaderName::DEAD_LETTER_FIRST_FAILURE)?;
        let first_failure = DateTime::parse_from_rfc3339(&first_failure)
            .map_err(|error| {
                invalid(
                    HeaderName::DEAD_LETTER_FIRST_FAILURE,
                    format!("{first_failure:?}: {error}"),
                )
            })?
            .with_timezone(&Utc);
        let cut = match letter_headers
            .iter()
            .any(|(key, _)| key == HeaderName::DEAD_LETTER_CUT)
        {
            false => None,
            true => {
                let parts = text(HeaderName::DEAD_LETTER_CUT)?;
                let parts: Vec<&str> = parts.split(',').filter(|part| !part.is_empty()).collect();
                if let Some(unknown) = parts
                    .iter()
                    .find(|part| !["payload", "key", "headers"].contains(part))
                {
                    return Err(invalid(
                        HeaderName::DEAD_LETTER_CUT,
                        format!("unknown part {unknown:?}"),
                    ));
                }
                let bytes = |name: &'static str| -> Result<u64, Error> {
                    let value = number(name)?;
                    u64::try_from(value).map_err(|error| invalid(name, error.to_string()))
                };
                Some(DeadLetterCut {
                    payload: parts.contains(&"payload"),
                    key: parts.contains(&"key"),
                    headers: parts.contains(&"headers"),
                    original_payload_bytes: bytes(HeaderName::DEAD_LETTER_ORIGINAL_PAYLOAD_BYTES)?,
                    original_key_bytes: bytes(HeaderName::DEAD_LETTER_ORIGINAL_KEY_BYTES)?,
                    original_headers_bytes: bytes(HeaderName::DEAD_LETTER_ORIGINAL_HEADERS_BYTES)?,
                })
            }
        };
        let partition = number(HeaderName::DEAD_LETTER_ORIGINAL_PARTITION)?;
        let attempts = number(HeaderName::DEAD_LETTER_ATTEMPTS)?;
        Ok(DeadLetter {
            original: RecordOrigin {
                topic: text(HeaderName::DEAD_LETTER_ORIGINAL_TOPIC)?,
                partition: i32::try_from(partition).map_err(|error| {
                    invalid(
                        HeaderName::DEAD_LETTER_ORIGINAL_PARTITION,
                        error.to_string(),
                    )
                })?,
                offset: number(HeaderName::DEAD_LETTER_ORIGINAL_OFFSET)?,
            },
            reason,
            error: text(HeaderName::DEAD_LETTER_ERROR)?,
            attempts: u32::try_from(attempts)
                .map_err(|error| invalid(HeaderName::DEAD_LETTER_ATTEMPTS, error.to_string()))?,
            first_failure,
            consumer: text(HeaderName::DEAD_LETTER_CONSUMER)?,
            key: record.key().map(<[u8]>::to_vec),
            payload: record.payload().map(<[u8]>::to_vec),
            headers,
            cut,
            origin,
        })
    }

    /// The text of the original header `name`, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok())
    }

    /// The original message id, when the record had a readable one.
    pub fn message_id(&self) -> Option<Uuid> {
        self.header(HeaderName::MESSAGE_ID)?.parse().ok()
    }

    /// The original headers, ready to produce again.
    pub(crate) fn original_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(
            OwnedHeaders::new_with_capacity(self.headers.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            },
        )
    }
}
