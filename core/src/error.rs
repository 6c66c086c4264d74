//! The one error type of the `annals` crate.

use std::time::Duration;

use crate::{ExpectedVersion, OutboxShard, StreamId};

/// A boxed error from a backend or a user callback.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in an event store, a repository or a codec.
///
/// How a caller should react:
///
/// - [`Error::Conflict`] (see [`Error::is_conflict`]): another writer appended
///   first. Reload the aggregate and decide again; the
///   [`Repository`](crate::Repository) does this for you per its
///   [`RetryPolicy`](crate::RetryPolicy).
/// - [`Error::is_retriable`]: the same call may succeed unchanged later (lost
///   connection, serialization failure, server restarting). Retry with
///   backoff. Appends that carry a command id are safe to retry even when the
///   outcome of the failed attempt is unknown.
/// - everything else is a bug in the input or the code and retrying will not
///   help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the expected version.
    #[error("version conflict on stream `{stream}`: expected {expected}, actual {}", display_actual(*.actual))]
    Conflict {
        /// The stream written to.
        stream: StreamId,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was refused; `None` when the
        /// stream does not exist.
        actual: Option<u64>,
    },

    /// A stream id that cannot be stored.
    #[error("invalid stream id {id:?}: {reason}")]
    InvalidStreamId {
        /// The refused id (possibly truncated).
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// An append request, event or message that breaks a rule or a limit.
    #[error("invalid append to stream `{stream}`: {reason}")]
    InvalidAppend {
        /// The stream written to.
        stream: StreamId,
        /// What is wrong, naming the event or message.
        reason: String,
    },

    /// An event or snapshot payload larger than the configured limit.
    #[error(
        "payload of {what} on stream `{stream}` is {size} bytes, over the limit of {limit} bytes"
    )]
    PayloadTooLarge {
        /// The stream written to.
        stream: StreamId,
        /// Which payload (event type and index, snapshot, outbox message).
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A stored event whose type (or version of that type) the reading code
    /// does not know.
    #[error(
        "unknown event type `{event_type}` version {event_version} at `{stream}` version {version}"
    )]
    UnknownEventType {
        /// The stream the event belongs to.
        stream: StreamId,
        /// Its version in that stream.
        version: u64,
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        event_version: u32,
    },

    /// A stored event at an old schema version with no upcaster to take it
    /// further.
    #[error(
        "no upcaster from `{event_type}` version {event_version} (the code knows version {known_version}) at `{stream}` version {version}"
    )]
    MissingUpcaster {
        /// The stream the event belongs to.
        stream: StreamId,
        /// Its version in that stream.
        version: u64,
        /// The type name at the missing step.
        event_type: String,
        /// The schema version at the missing step.
        event_version: u32,
        /// The version the code decodes.
        known_version: u32,
    },

    /// An upcaster refused a payload.
    #[error(
        "upcasting `{event_type}` version {event_version} at `{stream}` version {version} failed"
    )]
    Upcast {
        /// The stream the event belongs to.
        stream: StreamId,
        /// Its version in that stream.
        version: u64,
        /// The type name given to the failing step.
        event_type: String,
        /// The schema version given to the failing step.
        event_version: u32,
        /// What the upcaster reported.
        #[source]
        source: BoxError,
    },

    /// A stored payload that does not decode into the event type.
    #[error("cannot decode `{event_type}` version {event_version} at `{stream}` version {version}")]
    Decode {
        /// The stream the event belongs to.
        stream: StreamId,
        /// Its version in that stream.
        version: u64,
        /// The stored type name.
        event_type: String,
        /// The schema version decoded.
        event_version: u32,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// An event, state or message that cannot be serialised.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// A configuration value that cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A relay's lease of an outbox shard no longer holds (its session with
    /// the store ended, so another relay may have taken the shard over);
    /// nothing was written. Stop publishing the shard and acquire its lease
    /// again: retrying the call with the lost lease cannot succeed.
    #[error("relay `{relay}` no longer holds the lease of outbox shard {shard}")]
    LeaseLost {
        /// The relay's name.
        relay: String,
        /// The shard whose lease was lost.
        shard: OutboxShard,
    },

    /// A projection's own code failed outside its event handler: its
    /// `setup`, `promote` or `reset`.
    #[error("projection `{projection}` failed in {step}: {cause}")]
    Projection {
        /// The projection's name.
        projection: String,
        /// The step that failed, e.g. `setup`.
        step: &'static str,
        /// What the projection's code returned.
        cause: BoxError,
    },

    /// A background worker did not do what was waited for in time (reach a
    /// condition, stop). The worker goes on; wait again or abort it.
    #[error("worker `{worker}` did not {what} within {waited:?}; its status then: {status}")]
    Timeout {
        /// The worker's name.
        worker: String,
        /// What was waited for.
        what: String,
        /// How long was waited.
        waited: Duration,
        /// The worker's last status, formatted.
        status: String,
    },

    /// A background worker ended: a task of it panicked, or it ended
    /// before a condition waited for held. Its status says why; start it
    /// again once the cause is fixed.
    #[error("worker `{worker}` ended: {reason}")]
    WorkerEnded {
        /// The worker's name.
        worker: String,
        /// Why, with its last status.
        reason: String,
    },

    /// The storage backend failed.
    #[error("{backend} backend error{}", if *.retriable { " (retriable)" } else { "" })]
    Backend {
        /// Name of the backend, e.g. `postgres`.
        backend: &'static str,
        /// Whether the same call may succeed later.
        retriable: bool,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

fn display_actual(actual: Option<u64>) -> String {
    match actual {
        Some(version) => version.to_string(),
        None => "no stream".to_owned(),
    }
}

impl Error {
    /// True for [`Error::Conflict`]: reload and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True for [`Error::LeaseLost`]: stop relaying the shard and acquire it
    /// again.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Error::LeaseLost { .. })
    }

    /// True when the same call may succeed if repeated unchanged: a lost
    /// connection, a serialization failure or a restarting server.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                retriable: true,
                ..
            }
        )
    }

    /// Wraps a backend error.
    pub fn backend(backend: &'static str, retriable: bool, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            retriable,
            source: source.into(),
        }
    }

    pub(crate) fn invalid_append(stream: &StreamId, reason: impl Into<String>) -> Self {
        Error::InvalidAppend {
            stream: stream.clone(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_names_stream_and_versions() {
        let error = Error::Conflict {
            stream: StreamId::new("order-1").unwrap(),
            expected: ExpectedVersion::Exact(3),
            actual: Some(5),
        };
        assert_eq!(
            error.to_string(),
            "version conflict on stream `order-1`: expected version 3, actual 5"
        );
        assert!(error.is_conflict());
        assert!(!error.is_retriable());
    }

    #[test]
    fn backend_errors_carry_retriability() {
        let error = Error::backend("postgres", true, "connection reset");
        assert!(error.is_retriable());
        assert_eq!(error.to_string(), "postgres backend error (retriable)");
    }
}
