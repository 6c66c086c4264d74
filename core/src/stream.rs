//! Stream identity, expected versions and positions in the global stream.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The longest stream id accepted, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 256;

/// The id of an event stream, validated: 1 to [`MAX_STREAM_ID_LEN`] bytes,
/// no control characters, no leading or trailing whitespace.
///
/// Cloning is cheap (the text is shared).
///
/// ```
/// use annals::StreamId;
///
/// let id = StreamId::new("order-42")?;
/// assert_eq!(id.as_str(), "order-42");
/// assert!(StreamId::new("").is_err());
/// assert!(StreamId::new("bad\nid").is_err());
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates and wraps a stream id.
    pub fn new(id: impl AsRef<str>) -> Result<Self, Error> {
        let id = id.as_ref();
        validate_stream_id(id)?;
        Ok(StreamId(Arc::from(id)))
    }

    /// The stream id of the aggregate `id` of type `aggregate_type`:
    /// `"{aggregate_type}-{id}"`.
    ///
    /// The aggregate id and the type each keep the rule of a stream id (not
    /// empty, no control characters, no leading or trailing whitespace), so
    /// that an id refused by [`StreamId::new`] is refused here too, whatever
    /// is put in front of it; the whole stream id must also fit
    /// [`MAX_STREAM_ID_LEN`].
    ///
    /// ```
    /// use annals::StreamId;
    ///
    /// assert_eq!(StreamId::for_aggregate("account", "x")?.as_str(), "account-x");
    /// assert!(StreamId::new(" x").is_err());
    /// assert!(StreamId::for_aggregate("account", " x").is_err());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn for_aggregate(aggregate_type: &str, id: &str) -> Result<Self, Error> {
        if let Some(broken) = broken_rule(aggregate_type) {
            return Err(invalid_stream_id(
                aggregate_type,
                broken.of_aggregate_type(),
            ));
        }
        if let Some(broken) = broken_rule(id) {
            return Err(invalid_stream_id(id, broken.of_aggregate_id()));
        }
        let mut stream = String::with_capacity(aggregate_type.len() + 1 + id.len());
        stream.push_str(aggregate_type);
        stream.push('-');
        stream.push_str(id);
        Self::new(stream)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid_stream_id(id: &str, reason: &'static str) -> Error {
    let mut shown: String = id.chars().take(64).collect();
    if shown.len() < id.len() {
        shown.push('…');
    }
    Error::InvalidStreamId { id: shown, reason }
}

fn validate_stream_id(id: &str) -> Result<(), Error> {
    match broken_rule(id) {
        Some(broken) => Err(invalid_stream_id(id, broken.of_stream_id())),
        None => Ok(()),
    }
}

/// How a text breaks the rule of stream ids, which the parts of an
/// aggregate's stream id keep as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokenRule {
    Empty,
    TooLong,
    Control,
    Whitespace,
}

fn broken_rule(text: &str) -> Option<BrokenRule> {
    if text.is_empty() {
        Some(BrokenRule::Empty)
    } else if text.len() > MAX_STREAM_ID_LEN {
        Some(BrokenRule::TooLong)
    } else if text.chars().any(char::is_control) {
        Some(BrokenRule::Control)
    } else if text.trim() != text {
        Some(BrokenRule::Whitespace)
    } else {
        None
    }
}

impl BrokenRule {
    fn of_stream_id(self) -> &'static str {
        match self {
            BrokenRule::Empty => "it is empty",
            BrokenRule::TooLong => "it is longer than 256 bytes",
            BrokenRule::Control => "it contains a control character",
            BrokenRule::Whitespace => "it starts or ends with whitespace",
        }
    }

    fn of_aggregate_id(self) -> &'static str {
        match self {
            BrokenRule::Empty => "the aggregate id is empty",
            BrokenRule::TooLong => "the aggregate id is longer than 256 bytes",
            BrokenRule::Control => "the aggregate id contains a control character",
            BrokenRule::Whitespace => "the aggregate id starts or ends with whitespace",
        }
    }

    fn of_aggregate_type(self) -> &'static str {
        match self {
            BrokenRule::Empty => "the aggregate type is empty",
            BrokenRule::TooLong => "the aggregate type is longer than 256 bytes",
            BrokenRule::Control => "the aggregate type contains a control character",
            BrokenRule::Whitespace => "the aggregate type starts or ends with whitespace",
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StreamId::new(text).map_err(serde::de::Error::custom)
    }
}

/// What a writer expects the stream's version to be when it appends.
///
/// Versions count events: a stream's first event has version 1 and a stream
/// without events is at version 0, so `Exact(0)` and `NoStream` mean the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist, at any version.
    StreamExists,
    /// The stream must be at exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (`None`: no stream) satisfies
    /// this expectation.
    pub fn accepts(self, actual: Option<u64>) -> bool {
        let current = actual.unwrap_or(0);
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(version) => current == version,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// A position in the global stream: the pair (commit, sequence).
///
/// Positions are totally ordered, first by `commit` (the Postgres store uses
/// the writing transaction's id, the in-memory store a commit counter) and
/// then by `sequence` (the event's insertion number). Readers of the global
/// stream keep the position of the last event they processed as their
/// checkpoint; [`GlobalPosition::START`] is before every event.
///
/// The text form is `commit/sequence`:
///
/// ```
/// use annals::GlobalPosition;
///
/// let position: GlobalPosition = "812/4051".parse()?;
/// assert_eq!(position, GlobalPosition::new(812, 4051));
/// assert!(GlobalPosition::START < position);
/// assert_eq!(position.to_string(), "812/4051");
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct GlobalPosition {
    /// Orders commits: every event of a later commit comes after every event
    /// of an earlier one.
    pub commit: u64,
    /// Orders events within one commit.
    pub sequence: u64,
}

impl GlobalPosition {
    /// Before every event.
    pub const START: GlobalPosition = GlobalPosition {
        commit: 0,
        sequence: 0,
    };

    /// A position from its two parts.
    pub const fn new(commit: u64, sequence: u64) -> Self {
        GlobalPosition { commit, sequence }
    }
}

impl fmt::Display for GlobalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.commit, self.sequence)
    }
}

impl FromStr for GlobalPosition {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::Config(format!(
                "invalid global position {s:?}: expected `commit/sequence`"
            ))
        };
        let (commit, sequence) = s.split_once('/').ok_or_else(invalid)?;
        Ok(GlobalPosition {
            commit: commit.parse().map_err(|_| invalid())?,
            sequence: sequence.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_validated() {
        assert!(StreamId::new("a").is_ok());
        assert!(StreamId::new("x".repeat(256)).is_ok());
        for bad in [
            "",
            " lead",
            "trail ",
            "tab\there",
            "nul\0",
            &"x".repeat(257),
        ] {
            let error = StreamId::new(bad).unwrap_err();
            assert!(matches!(error, Error::InvalidStreamId { .. }), "{bad:?}");
        }
        assert!(StreamId::for_aggregate("order", "").is_err());
        assert_eq!(
            StreamId::for_aggregate("order", "7").unwrap().as_str(),
            "order-7"
        );
    }

    #[test]
    fn aggregate_ids_keep_the_rule_of_stream_ids() {
        for id in ["", " x", "x ", "\tx", "a\nb", "nul\0", &"x".repeat(257)] {
            assert!(StreamId::new(id).is_err(), "{id:?}");
            let error = StreamId::for_aggregate("account", id).unwrap_err();
            assert!(
                matches!(error, Error::InvalidStreamId { reason, .. } if reason.contains("aggregate id")),
                "{id:?}: {error}"
            );
        }
        for id in ["x", "a b", "ü-7", &"x".repeat(200)] {
            assert!(StreamId::new(id).is_ok(), "{id:?}");
            assert!(StreamId::for_aggregate("account", id).is_ok(), "{id:?}");
        }
        assert!(StreamId::for_aggregate(" account", "x").is_err());
        assert!(StreamId::for_aggregate("", "x").is_err());
        // Both parts fit, the whole does not.
        assert!(StreamId::for_aggregate("account", &"x".repeat(250)).is_err());
    }

    #[test]
    fn stream_id_deserialization_validates() {
        let ok: StreamId = serde_json::from_str("\"order-1\"").unwrap();
        assert_eq!(ok.as_str(), "order-1");
        assert!(serde_json::from_str::<StreamId>("\"\"").is_err());
    }

    #[test]
    fn expected_version_semantics() {
        use ExpectedVersion::*;
        assert!(Any.accepts(None) && Any.accepts(Some(3)));
        assert!(NoStream.accepts(None) && !NoStream.accepts(Some(1)));
        assert!(StreamExists.accepts(Some(1)) && !StreamExists.accepts(None));
        assert!(Exact(0).accepts(None) && Exact(2).accepts(Some(2)));
        assert!(!Exact(2).accepts(Some(3)));
    }

    #[test]
    fn positions_order_by_commit_then_sequence() {
        assert!(GlobalPosition::new(1, 9) < GlobalPosition::new(2, 3));
        assert!(GlobalPosition::new(2, 3) < GlobalPosition::new(2, 4));
        assert!("x/1".parse::<GlobalPosition>().is_err());
        assert!("1".parse::<GlobalPosition>().is_err());
    }
}
