//! Dead letters written: produced to the dead-letter topic whole, or cut to
//! fit when the topic refuses them for their size, so that no record can
//! hold its partition back by being too large to dead-letter.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::letter::{Letter, LetterRecord};
use crate::{Error, KafkaConfig};

/// How long the dead-letter producer waits for room in its local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// The dead-letter producer's settings, before its [`KafkaConfig`]'s own.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
];

/// librdkafka's `message.max.bytes` when not set.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// What a batch of one record costs beside the record's key, payload and
/// headers, counted generously: a cut letter leaves this much of
/// `message.max.bytes` free.
const BATCH_OVERHEAD: usize = 512;

/// The smallest budget a cut letter is tried with: below it, the
/// dead-letter headers alone may not fit.
const MIN_BUDGET: usize = 2_048;

/// How a dead letter was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    /// With the whole original record.
    Whole,
    /// Cut to fit: the parts named (`payload`, `key`, `headers`) are
    /// shortened or partly left out.
    Cut {
        parts: Vec<&'static str>,
        size: usize,
    },
}

/// Where dead letters go: Kafka in a running consumer, a list in the
/// worker's unit tests.
pub(crate) trait DeadLetterSink: Send + Sync + 'static {
    /// Writes `letter`; done only when the broker acknowledged it.
    fn send<'a>(
        &'a self,
        letter: Letter<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Written, Error>> + Send + 'a>>;
}

/// Produces one dead-letter record; the Kafka producer, or a stand-in with
/// a size limit in unit tests.
trait Produce: Send + Sync {
    fn produce<'a>(
        &'a self,
        topic: &'a str,
        record: &'a LetterRecord<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), KafkaError>> + Send + 'a>>;
}

impl Produce for FutureProducer {
    fn produce<'a>(
        &'a self,
        topic: &'a str,
        record: &'a LetterRecord<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), KafkaError>> + Send + 'a>> {
        Box::pin(async move {
            let mut produced: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).headers(record.headers.clone());
            if let Some(key) = record.key {
                produced = produced.key(key);
            }
            if let Some(payload) = record.payload {
                produced = produced.payload(payload);
            }
            self.send(produced, QUEUE_TIMEOUT)
                .await
                .map(drop)
                .map_err(|(error, _)| error)
        })
    }
}

/// Whether the producer or the broker refused a record for its size.
fn refused_for_size(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

/// Writes `letter` to `topic`: whole, and when that is refused for its size,
/// cut to fit `max_message_bytes` (the producer's limit), then to half of
/// that each time the broker still refuses it (its topic may allow less),
/// down to [`MIN_BUDGET`].
async fn write(
    producer: &dyn Produce,
    topic: &str,
    letter: &Letter<'_>,
    max_message_bytes: usize,
) -> Result<Written, KafkaError> {
    let whole = letter.whole();
    let refused = match producer.produce(topic, &whole).await {
        Ok(()) => return Ok(Written::Whole),
        Err(error) if refused_for_size(&error) => error,
        Err(error) => return Err(error),
    };
    let limit = max_message_bytes.saturating_sub(BATCH_OVERHEAD);
    let mut budget = if whole.size() > limit {
        limit
    } else {
        // The client took it and the broker did not: its limit is lower.
        whole.size() / 2
    };
    let mut last = refused;
    while budget >= MIN_BUDGET {
        let cut = letter.cut(budget);
        match producer.produce(topic, &cut).await {
            Ok(()) => {
                return Ok(Written::Cut {
                    size: cut.size(),
                    parts: cut.cut,
                });
            }
            Err(error) if refused_for_size(&error) => last = error,
            Err(error) => return Err(error),
        }
        budget /= 2;
    }
    Err(last)
}

/// Dead letters produced to `<topic><suffix>`, keyed as the original.
pub(crate) struct KafkaDeadLetters {
    producer: FutureProducer,
    suffix: String,
    max_message_bytes: usize,
}

impl fmt::Debug for KafkaDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDeadLetters")
            .field("suffix", &self.suffix)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl KafkaDeadLetters {
    pub(crate) fn new(config: &KafkaConfig, suffix: &str) -> Result<Self, Error> {
        let client = config.client_config(PRODUCER_DEFAULTS.iter().copied());
        let max_message_bytes = match client.get("message.max.bytes") {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(value) => value.parse().map_err(|_| {
                Error::Config(format!(
                    "`message.max.bytes` of the dead-letter producer must be a number of bytes, \
                     not {value:?}"
                ))
            })?,
        };
        let producer = client
            .create()
            .map_err(|error| Error::kafka("creating the dead-letter producer", error))?;
        Ok(KafkaDeadLetters {
            producer,
            suffix: suffix.to_owned(),
            max_message_bytes,
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
    ) -> Pin<Box<dyn Future<Output = Result<Written, Error>> + Send + 'a>> {
        Box::pin(async move {
            let topic = self.topic_for(letter.record.topic());
            write(&self.producer, &topic, &letter, self.max_message_bytes)
                .await
                .map_err(|error| Error::kafka(format!("writing a dead letter to {topic}"), error))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    use super::*;
    use crate::consumer::dead_letter::letter::MAX_ERROR_LEN;
    use crate::{DeadLetter, DeadLetterReason, HeaderName};

    fn record(payload: Vec<u8>, key: Vec<u8>, headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload),
            Some(key),
            "orders".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(headers),
        )
    }

    fn letter<'a>(record: &'a OwnedMessage, error: &'a str) -> Letter<'a> {
        Letter {
            record,
            reason: DeadLetterReason::InvalidPayload,
            error,
            attempts: 0,
            first_failure: DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
                .unwrap()
                .with_timezone(&Utc),
            consumer: "shipping",
        }
    }

    /// What a written letter reads back as.
    fn read_back(written: &LetterRecord<'_>) -> DeadLetter {
        let message = OwnedMessage::new(
            written.payload.map(<[u8]>::to_vec),
            written.key.map(<[u8]>::to_vec),
            "orders.dlq".into(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(written.headers.clone()),
        );
        DeadLetter::from_record(&message).unwrap()
    }

    /// A topic that takes records up to `limit` bytes and keeps them.
    struct Limited {
        limit: usize,
        kept: Mutex<Vec<DeadLetter>>,
        tries: Mutex<Vec<usize>>,
    }

    impl Limited {
        fn new(limit: usize) -> Self {
            Limited {
                limit,
                kept: Mutex::default(),
                tries: Mutex::default(),
            }
        }
    }

    impl Produce for Limited {
        fn produce<'a>(
            &'a self,
            _topic: &'a str,
            record: &'a LetterRecord<'a>,
        ) -> Pin<Box<dyn Future<Output = Result<(), KafkaError>> + Send + 'a>> {
            self.tries.lock().unwrap().push(record.size());
            let result = if record.size() > self.limit {
                Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge,
                ))
            } else {
                self.kept.lock().unwrap().push(read_back(record));
                Ok(())
            };
            Box::pin(async move { result })
        }
    }

    fn headers(pairs: &[(&str, &[u8])]) -> OwnedHeaders {
        pairs
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(*value),
                })
            })
    }

    fn write_now(topic: &Limited, letter: &Letter<'_>, max: usize) -> Result<Written, KafkaError> {
        futures::executor::block_on(write(topic, "orders.dlq", letter, max))
    }

    #[test]
    fn a_letter_that_fits_is_written_whole() {
        let original = record(
            b"{\"a\":1}".to_vec(),
            b"k-1".to_vec(),
            headers(&[(HeaderName::MESSAGE_ID, b"id-1")]),
        );
        let topic = Limited::new(10_000);
        let written = write_now(&topic, &letter(&original, "bad"), 1_000_000).unwrap();
        assert_eq!(written, Written::Whole);
        let kept = topic.kept.lock().unwrap();
        assert_eq!(kept[0].cut, None);
        assert_eq!(kept[0].payload.as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn a_payload_over_the_limit_is_cut_with_its_size_and_origin() {
        let payload = vec![b'x'; 2 * 1024 * 1024];
        let original = record(
            payload.clone(),
            b"k-1".to_vec(),
            headers(&[
                (HeaderName::MESSAGE_ID, b"id-1"),
                (HeaderName::TYPE, b"Ping"),
            ]),
        );
        let topic = Limited::new(1_000_000);
        let written = write_now(&topic, &letter(&original, "not JSON"), 1_000_000).unwrap();
        let Written::Cut { parts, size } = written else {
            panic!("cut: {written:?}")
        };
        assert_eq!(parts, ["payload"]);
        assert!(size <= 1_000_000 - BATCH_OVERHEAD, "{size}");
        let kept = topic.kept.lock().unwrap();
        let letter = &kept[0];
        let cut = letter.cut.as_ref().expect("marked as cut");
        assert!(cut.payload && !cut.key && !cut.headers, "{cut:?}");
        assert_eq!(cut.original_payload_bytes, payload.len() as u64);
        assert_eq!(cut.original_key_bytes, 3);
        let kept_payload = letter.payload.as_deref().unwrap();
        assert!(kept_payload.len() > 900_000 && payload.starts_with(kept_payload));
        assert_eq!(letter.original.to_string(), "orders[2]@41");
        assert_eq!(letter.key.as_deref(), Some(&b"k-1"[..]));
        assert_eq!(letter.header(HeaderName::TYPE), Some("Ping"));
        assert_eq!(letter.error, "not JSON");
        assert_eq!(letter.reason, DeadLetterReason::InvalidPayload);
    }

    #[test]
    fn a_broker_with_a_lower_limit_gets_smaller_letters_until_one_fits() {
        let original = record(
            vec![b'x'; 300_000],
            b"k-1".to_vec(),
            headers(&[(HeaderName::MESSAGE_ID, b"id-1")]),
        );
        let topic = Limited::new(50_000);
        let written = write_now(&topic, &letter(&original, "boom"), 1_000_000).unwrap();
        assert!(matches!(written, Written::Cut { .. }), "{written:?}");
        let tries = topic.tries.lock().unwrap();
        assert!(tries.windows(2).all(|pair| pair[1] < pair[0]), "{tries:?}");
        assert!(*tries.last().unwrap() <= 50_000);
        assert_eq!(topic.kept.lock().unwrap().len(), 1);
    }

    #[test]
    fn huge_keys_and_headers_are_cut_too() {
        let huge = vec![b'h'; 3_000_000];
        let original = record(
            b"{}".to_vec(),
            vec![b'k'; 2_000_000],
            headers(&[
                (HeaderName::MESSAGE_ID, b"id-1"),
                ("foreign-blob", &huge),
                (HeaderName::TYPE, b"Ping"),
            ]),
        );
        let long_error = "e".repeat(10 * MAX_ERROR_LEN);
        let topic = Limited::new(1_000_000);
        write_now(&topic, &letter(&original, &long_error), 1_000_000).unwrap();
        let kept = topic.kept.lock().unwrap();
        let letter = &kept[0];
        let cut = letter.cut.as_ref().unwrap();
        assert!(cut.key && cut.headers && !cut.payload, "{cut:?}");
        assert_eq!(cut.original_key_bytes, 2_000_000);
        assert!(cut.original_headers_bytes > 3_000_000);
        assert_eq!(letter.header(HeaderName::MESSAGE_ID), Some("id-1"));
        assert_eq!(letter.header(HeaderName::TYPE), Some("Ping"));
        assert_eq!(letter.header("foreign-blob"), None, "left out whole");
        assert_eq!(letter.payload.as_deref(), Some(&b"{}"[..]));
        assert!(letter.error.len() <= MAX_ERROR_LEN);
    }

    #[test]
    fn a_topic_that_refuses_even_the_smallest_letter_is_an_error() {
        let original = record(vec![b'x'; 10_000], b"k".to_vec(), OwnedHeaders::new());
        let topic = Limited::new(100);
        let error = write_now(&topic, &letter(&original, "boom"), 1_000_000).unwrap_err();
        assert!(refused_for_size(&error), "{error}");
        assert!(topic.kept.lock().unwrap().is_empty());
    }

    #[test]
    fn other_failures_are_not_cut_around() {
        struct Down;
        impl Produce for Down {
            fn produce<'a>(
                &'a self,
                _: &'a str,
                _: &'a LetterRecord<'a>,
            ) -> Pin<Box<dyn Future<Output = Result<(), KafkaError>> + Send + 'a>> {
                Box::pin(async {
                    Err(KafkaError::MessageProduction(
                        RDKafkaErrorCode::MessageTimedOut,
                    ))
                })
            }
        }
        let original = record(vec![b'x'; 2_000_000], b"k".to_vec(), OwnedHeaders::new());
        let error = futures::executor::block_on(write(
            &Down,
            "orders.dlq",
            &letter(&original, "boom"),
            1_000_000,
        ))
        .unwrap_err();
        assert_eq!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::MessageTimedOut)
        );
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
        let record = record(b"{\"a\":1}".to_vec(), b"k-1".to_vec(), original);
        let long_error = "é".repeat(MAX_ERROR_LEN);
        let mut letter = letter(&record, &long_error);
        letter.reason = DeadLetterReason::HandlerFailed;
        letter.attempts = 5;
        let read = read_back(&letter.whole());
        assert_eq!(read.reason, DeadLetterReason::HandlerFailed);
        assert_eq!(read.attempts, 5);
        assert_eq!(read.original.to_string(), "orders[2]@41");
        assert_eq!(read.origin.to_string(), "orders.dlq[0]@7");
        assert_eq!(read.first_failure, letter.first_failure);
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
        assert_eq!(read.cut, None);
    }

    #[test]
    fn a_record_without_dead_letter_headers_is_refused_by_name() {
        let record = record(b"{}".to_vec(), b"k".to_vec(), OwnedHeaders::new());
        let error = DeadLetter::from_record(&record).unwrap_err();
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
