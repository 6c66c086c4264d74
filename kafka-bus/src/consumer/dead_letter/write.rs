//! Dead letters written: the original record with headers saying why, how
//! often and where from, produced to the dead-letter topic.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::DeadLetterReason;
use crate::{Error, HeaderName, KafkaConfig};

/// The longest error text written to a dead letter's header; longer texts
/// are cut, keeping the start, where the cause usually is.
const MAX_ERROR_LEN: usize = 4096;

/// How long the dead-letter producer may hold a record it cannot deliver
/// before reporting a failure (which the consumer retries).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The dead-letter producer's settings, before [`KafkaConfig`]'s own.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
];

/// What a consumer writes when it gives up on a record.
#[derive(Debug)]
pub(crate) struct Letter<'a> {
    pub(crate) record: &'a OwnedMessage,
    pub(crate) reason: DeadLetterReason,
    pub(crate) error: &'a str,
    pub(crate) attempts: u32,
    pub(crate) first_failure: DateTime<Utc>,
    pub(crate) consumer: &'a str,
}

impl Letter<'_> {
    /// The record's own headers (dead-letter headers of an earlier failure
    /// dropped) followed by the dead-letter headers.
    pub(crate) fn headers(&self) -> OwnedHeaders {
        let mut error = self.error;
        if error.len() > MAX_ERROR_LEN {
            let mut end = MAX_ERROR_LEN;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error = &error[..end];
        }
        let record = self.record;
        let added = [
            (
                HeaderName::DEAD_LETTER_REASON,
                self.reason.code().to_owned(),
            ),
            (HeaderName::DEAD_LETTER_ERROR, error.to_owned()),
            (HeaderName::DEAD_LETTER_ATTEMPTS, self.attempts.to_string()),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_TOPIC,
                record.topic().to_owned(),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_PARTITION,
                record.partition().to_string(),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_OFFSET,
                record.offset().to_string(),
            ),
            (
                HeaderName::DEAD_LETTER_FIRST_FAILURE,
                self.first_failure
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
            (HeaderName::DEAD_LETTER_CONSUMER, self.consumer.to_owned()),
        ];
        let mut headers = OwnedHeaders::new_with_capacity(added.len() + 12);
        if let Some(original) = record.headers() {
            for header in original.iter() {
                if !header.key.starts_with(HeaderName::DEAD_LETTER_PREFIX) {
                    headers = headers.insert(header);
                }
            }
        }
        added.iter().fold(headers, |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
    }
}

/// Where dead letters go: Kafka in a running consumer, a list in the
/// worker's unit tests.
pub(crate) trait DeadLetterSink: Send + Sync + 'static {
    /// Writes `letter`; done only when the broker acknowledged it.
    fn send<'a>(
        &'a self,
        letter: Letter<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;
}

/// Dead letters produced to `<topic><suffix>`, keyed as the original.
pub(crate) struct KafkaDeadLetters {
    producer: FutureProducer,
    suffix: String,
}

impl fmt::Debug for KafkaDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDeadLetters")
            .field("suffix", &self.suffix)
            .finish_non_exhaustive()
    }
}

impl KafkaDeadLetters {
    pub(crate) fn new(config: &KafkaConfig, suffix: &str) -> Result<Self, Error> {
        let producer = config
            .client_config(PRODUCER_DEFAULTS.iter().copied())
            .create()
            .map_err(|error| Error::kafka("creating the dead-letter producer", error))?;
        Ok(KafkaDeadLetters {
            producer,
            suffix: suffix.to_owned(),
        })
    }

    /// The dead-letter topic of `topic`.
    pub(crate) fn topic_for(&self, topic: &str) -> String {
        format!("{topic}{}", self.suffix)
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    fn send<'a>(
        &'a self,
        letter: Letter<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>> {
        Box::pin(async move {
            let topic = self.topic_for(letter.record.topic());
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).headers(letter.headers());
            if let Some(key) = letter.record.key() {
                record = record.key(key);
            }
            if let Some(payload) = letter.record.payload() {
                record = record.payload(payload);
            }
            self.producer
                .send(record, DELIVERY_TIMEOUT)
                .await
                .map(drop)
                .map_err(|(error, _)| {
                    Error::kafka(format!("writing a dead letter to {topic}"), error)
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Timestamp;

    use super::*;
    use crate::DeadLetter;

    fn record(headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{\"a\":1}".to_vec()),
            Some(b"k-1".to_vec()),
            "orders".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(headers),
        )
    }

    #[test]
    fn a_dead_letter_reads_back_with_the_original_headers_and_its_own() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: HeaderName::MESSAGE_ID,
                value: Some("0191b6a4-0000-7000-8000-000000000001"),
            })
            .insert(Header {
                key: "binary",
                value: Some(&[0xff_u8, 0][..]),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            })
            .insert(Header {
                key: HeaderName::DEAD_LETTER_ERROR,
                value: Some("from an earlier failure"),
            });
        let record = record(original);
        let failed_at = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let letter = Letter {
            record: &record,
            reason: DeadLetterReason::HandlerFailed,
            error: &"é".repeat(MAX_ERROR_LEN),
            attempts: 5,
            first_failure: failed_at,
            consumer: "shipping",
        };
        let written = OwnedMessage::new(
            record.payload().map(<[u8]>::to_vec),
            record.key().map(<[u8]>::to_vec),
            "orders.dlq".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(letter.headers()),
        );
        let read = DeadLetter::from_record(&written).unwrap();
        assert_eq!(read.reason, DeadLetterReason::HandlerFailed);
        assert_eq!(read.attempts, 5);
        assert_eq!(read.original.to_string(), "orders[2]@41");
        assert_eq!(read.origin.to_string(), "orders.dlq[0]@7");
        assert_eq!(read.first_failure, failed_at);
        assert_eq!(read.consumer, "shipping");
        assert!(read.error.len() <= MAX_ERROR_LEN && read.error.starts_with('é'));
        assert_eq!(read.key.as_deref(), Some(&b"k-1"[..]));
        assert_eq!(
            read.headers,
            vec![
                (
                    HeaderName::MESSAGE_ID.to_owned(),
                    Some(b"0191b6a4-0000-7000-8000-000000000001".to_vec())
                ),
                ("binary".to_owned(), Some(vec![0xff, 0])),
                ("empty".to_owned(), None),
            ],
            "the earlier dead-letter header is gone, the others kept in order"
        );
        assert_eq!(
            read.message_id().map(|id| id.to_string()).as_deref(),
            Some("0191b6a4-0000-7000-8000-000000000001")
        );
    }

    #[test]
    fn a_record_without_dead_letter_headers_is_refused_by_name() {
        let error = DeadLetter::from_record(&record(OwnedHeaders::new())).unwrap_err();
        assert!(
            matches!(
                error,
                Error::MissingHeader {
                    header: HeaderName::DEAD_LETTER_REASON,
                    ..
                }
            ),
            "{error}"
        );
    }
}
