//! A dead letter as a record: the original key, payload and headers, and the
//! dead-letter headers saying why, how often and where from; cut to a size
//! when the dead-letter topic refuses it whole.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};

use super::DeadLetterReason;
use crate::HeaderName;

/// The longest error text written to a dead letter's header; longer texts
/// are cut, keeping the start, where the cause usually is.
pub(super) const MAX_ERROR_LEN: usize = 4096;

/// What a header costs beside its name and value: the varints of the
/// record format, counted generously.
const HEADER_OVERHEAD: usize = 8;

/// The part of a cut letter's budget kept for the dead-letter headers'
/// error text when even they do not fit: what remains of the cause.
const MIN_ERROR_LEN: usize = 256;

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

/// A dead letter ready to produce.
#[derive(Debug)]
pub(crate) struct LetterRecord<'a> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: Option<&'a [u8]>,
    pub(crate) headers: OwnedHeaders,
    /// What was cut, in the `annals-dlq-cut` header's words; empty when
    /// whole.
    pub(crate) cut: Vec<&'static str>,
}

impl LetterRecord<'_> {
    /// What the record weighs against `message.max.bytes`: key, payload and
    /// headers.
    pub(crate) fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|header| header_size(header.key, header.value.map_or(0, <[u8]>::len)))
            .sum();
        self.key.map_or(0, <[u8]>::len) + self.payload.map_or(0, <[u8]>::len) + headers
    }
}

fn header_size(name: &str, value: usize) -> usize {
    name.len() + value + HEADER_OVERHEAD
}

/// The start of `text`, at most `max` bytes, cut at a character boundary.
fn text_prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl<'a> Letter<'a> {
    /// The dead letter with everything of the original record.
    pub(crate) fn whole(&self) -> LetterRecord<'a> {
        let own = self.own_headers(MAX_ERROR_LEN);
        let headers = self
            .original_headers()
            .map(|(key, value)| Header { key, value })
            .chain(own.iter().map(|(key, value)| Header {
                key,
                value: Some(value.as_bytes()),
            }))
            .fold(
                OwnedHeaders::new_with_capacity(own.len() + 12),
                |headers, header| headers.insert(header),
            );
        LetterRecord {
            key: self.record.key(),
            payload: self.record.payload(),
            headers,
            cut: Vec::new(),
        }
    }

    /// The dead letter in at most `budget` bytes of key, payload and
    /// headers: the dead-letter headers first (the error text shortened if
    /// even they do not fit), then the key (at most half of what is left),
    /// then the original headers that fit, in order, then as much of the
    /// payload as fits. The headers name what was cut and the original
    /// sizes.
    pub(crate) fn cut(&self, budget: usize) -> LetterRecord<'a> {
        let record = self.record;
        let key = record.key().unwrap_or_default();
        let payload = record.payload().unwrap_or_default();
        let originals: Vec<(&str, Option<&[u8]>)> = self.original_headers().collect();
        let original_headers_size: usize = originals
            .iter()
            .map(|(name, value)| header_size(name, value.map_or(0, <[u8]>::len)))
            .sum();
        let sizes = [
            (
                HeaderName::DEAD_LETTER_ORIGINAL_PAYLOAD_BYTES,
                payload.len().to_string(),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_KEY_BYTES,
                key.len().to_string(),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_HEADERS_BYTES,
                original_headers_size.to_string(),
            ),
        ];
        // The cut header at its longest, so that its final value fits.
        let fixed: usize = sizes
            .iter()
            .map(|(name, value)| header_size(name, value.len()))
            .sum::<usize>()
            + header_size(HeaderName::DEAD_LETTER_CUT, "payload,key,headers".len());
        let mut own = self.own_headers(MAX_ERROR_LEN);
        let own_size = |own: &[(&str, Cow<'_, str>)]| -> usize {
            own.iter()
                .map(|(name, value)| header_size(name, value.len()))
                .sum::<usize>()
        };
        let mut left = budget.saturating_sub(fixed);
        if own_size(&own) > left {
            let without_error = own_size(&own) - self.error_text(MAX_ERROR_LEN).len();
            let room = left.saturating_sub(without_error).max(MIN_ERROR_LEN);
            own = self.own_headers(room);
        }
        left = left.saturating_sub(own_size(&own));

        let kept_key = key.len().min(left / 2);
        left -= kept_key;
        let header_count = originals.len();
        let mut kept_headers = Vec::with_capacity(header_count);
        for (name, value) in originals {
            let size = header_size(name, value.map_or(0, <[u8]>::len));
            if size <= left {
                left -= size;
                kept_headers.push(Header { key: name, value });
            }
        }
        let kept_payload = payload.len().min(left);
        let cut: Vec<&'static str> = [
            ("payload", kept_payload < payload.len()),
            ("key", kept_key < key.len()),
            ("headers", kept_headers.len() < header_count),
        ]
        .into_iter()
        .filter_map(|(part, cut)| cut.then_some(part))
        .collect();
        let cut_text = cut.join(",");
        let headers = kept_headers
            .into_iter()
            .chain(own.iter().map(|(key, value)| Header {
                key,
                value: Some(value.as_bytes()),
            }))
            .chain(
                [(HeaderName::DEAD_LETTER_CUT, cut_text.as_str())]
                    .into_iter()
                    .chain(sizes.iter().map(|(name, value)| (*name, value.as_str())))
                    .map(|(key, value)| Header {
                        key,
                        value: Some(value.as_bytes()),
                    }),
            )
            .fold(OwnedHeaders::new(), |headers, header| {
                headers.insert(header)
            });
        LetterRecord {
            key: record.key().map(|key| &key[..kept_key]),
            payload: record.payload().map(|payload| &payload[..kept_payload]),
            headers,
            cut,
        }
    }

    /// The record's own headers, dead-letter headers of an earlier failure
    /// dropped.
    fn original_headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        self.record
            .headers()
            .into_iter()
            .flat_map(|headers| headers.iter())
            .filter(|header| !header.key.starts_with(HeaderName::DEAD_LETTER_PREFIX))
            .map(|header| (header.key, header.value))
    }

    fn error_text(&self, max: usize) -> &'a str {
        text_prefix(self.error, max)
    }

    /// The dead-letter headers, the error text at most `max_error` bytes.
    fn own_headers(&self, max_error: usize) -> Vec<(&'static str, Cow<'a, str>)> {
        let record = self.record;
        vec![
            (
                HeaderName::DEAD_LETTER_REASON,
                Cow::Borrowed(self.reason.code()),
            ),
            (
                HeaderName::DEAD_LETTER_ERROR,
                Cow::Borrowed(self.error_text(max_error)),
            ),
            (
                HeaderName::DEAD_LETTER_ATTEMPTS,
                Cow::Owned(self.attempts.to_string()),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_TOPIC,
                Cow::Owned(record.topic().to_owned()),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_PARTITION,
                Cow::Owned(record.partition().to_string()),
            ),
            (
                HeaderName::DEAD_LETTER_ORIGINAL_OFFSET,
                Cow::Owned(record.offset().to_string()),
            ),
            (
                HeaderName::DEAD_LETTER_FIRST_FAILURE,
                Cow::Owned(
                    self.first_failure
                        .to_rfc3339_opts(SecondsFormat::Millis, true),
                ),
            ),
            (
                HeaderName::DEAD_LETTER_CONSUMER,
                Cow::Borrowed(self.consumer),
            ),
        ]
    }
}
