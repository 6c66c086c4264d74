//! The one error type of `annals-kafka`.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a consumed record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordOrigin {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

impl fmt::Display for RecordOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// Everything that can go wrong between the outbox, the broker and the
/// consumers.
///
/// [`Error::is_retriable`] tells a passing fault (broker or database
/// unreachable, leader moving) from a permanent one (a message the broker
/// refuses, a record that does not decode): relays and consumers retry the
/// first with backoff and park or dead-letter the second.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot be used.
    #[error("invalid Kafka configuration: {0}")]
    Config(String),

    /// The Kafka client or broker failed.
    #[error("Kafka: {context}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },

    /// The store failed.
    #[error(transparent)]
    Store(#[from] annals::Error),

    /// A consumed record lacks a header annals needs.
    #[error("record {origin} has no `{header}` header")]
    MissingHeader {
        /// Where the record came from.
        origin: RecordOrigin,
        /// The missing header.
        header: &'static str,
    },

    /// A consumed record has a header annals cannot read.
    #[error("record {origin} has an invalid `{header}` header: {reason}")]
    InvalidHeader {
        /// Where the record came from.
        origin: RecordOrigin,
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A consumer did not stop cleanly: the time given ran out (it goes on
    /// stopping in the background), or its polling thread ended early.
    #[error("consumer `{consumer}` did not stop cleanly: {reason}")]
    Stop {
        /// The consumer's name.
        consumer: String,
        /// What went wrong.
        reason: String,
    },

    /// A consumed record whose payload is not JSON: not UTF-8 (which JSON
    /// text must be), or not parseable.
    #[error("record {origin} has a payload that is not JSON")]
    InvalidPayload {
        /// Where the record came from.
        origin: RecordOrigin,
        /// Why: the UTF-8 decoder's or the parser's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    /// Whether the same operation may succeed later: broker or database
    /// unreachable, timeouts, leadership moving.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } => {
                source.rdkafka_error_code().is_none_or(is_retriable_code)
            }
            Error::Store(error) => error.is_retriable(),
            _ => false,
        }
    }
}

/// Whether a broker or client error code describes a passing condition.
pub(crate) fn is_retriable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | Resolve
            | MessageTimedOut
            | QueueFull
            | OperationTimedOut
            | TimedOutQueue
            | RequestTimedOut
            | NetworkException
            | NotLeaderForPartition
            | LeaderNotAvailable
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | NotCoordinator
            | CoordinatorNotAvailable
            | CoordinatorLoadInProgress
            | RebalanceInProgress
            | UnknownMemberId
            | KafkaStorageError
            | FencedLeaderEpoch
            | UnknownLeaderEpoch
            | OffsetNotAvailable
            | PreferredLeaderNotAvailable
            | ThrottlingQuotaExceeded
            | BrokerNotAvailable
            | WaitingForCoordinator
            | ReplicaNotAvailable
            | InProgress
            | Retry
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_retriable_and_oversized_messages_are_not() {
        let down = Error::kafka(
            "produce",
            KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown),
        );
        assert!(down.is_retriable());
        let large = Error::kafka(
            "produce",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(!large.is_retriable());
    }
}
