//! Dead letters: records a consumer gave up on, written to a dead-letter
//! topic with why, how often and where from, and read back for replays.

mod letter;
mod read;
mod write;

use std::fmt;

use crate::Error;

pub(crate) use letter::Letter;
pub use read::{DeadLetter, DeadLetterCut};
pub(crate) use write::{DeadLetterSink, KafkaDeadLetters, Written};

/// Why a record went to the dead-letter topic, written as its
/// [`code`](DeadLetterReason::code) in the `annals-dlq-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The handler failed every attempt (`handler-failed`).
    HandlerFailed,
    /// A header annals needs is missing: message id, type or type version
    /// (`missing-header`).
    MissingHeader,
    /// A header annals reads cannot be parsed (`invalid-header`).
    InvalidHeader,
    /// The payload is not JSON (`invalid-payload`).
    InvalidPayload,
    /// No handler is registered for the type, or the handler's event type
    /// does not know it (`unknown-type`).
    UnknownType,
    /// The payload does not decode into the handler's event type, or an
    /// upcaster refused it (`undecodable`).
    Undecodable,
}

impl DeadLetterReason {
    const ALL: [DeadLetterReason; 6] = [
        DeadLetterReason::HandlerFailed,
        DeadLetterReason::MissingHeader,
        DeadLetterReason::InvalidHeader,
        DeadLetterReason::InvalidPayload,
        DeadLetterReason::UnknownType,
        DeadLetterReason::Undecodable,
    ];

    /// The code written to the `annals-dlq-reason` header.
    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::HandlerFailed => "handler-failed",
            DeadLetterReason::MissingHeader => "missing-header",
            DeadLetterReason::InvalidHeader => "invalid-header",
            DeadLetterReason::InvalidPayload => "invalid-payload",
            DeadLetterReason::UnknownType => "unknown-type",
            DeadLetterReason::Undecodable => "undecodable",
        }
    }

    /// The reason with this code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// Why a record could not be read as an annals message.
    pub(crate) fn of_unreadable(error: &Error) -> Self {
        match error {
            Error::MissingHeader { .. } => DeadLetterReason::MissingHeader,
            Error::InvalidPayload { .. } => DeadLetterReason::InvalidPayload,
            _ => DeadLetterReason::InvalidHeader,
        }
    }

    /// Why a readable message could not be decoded.
    pub(crate) fn of_undecodable(error: &annals::Error) -> Self {
        match error {
            annals::Error::UnknownEventType { .. } => DeadLetterReason::UnknownType,
            _ => DeadLetterReason::Undecodable,
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip() {
        for reason in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(DeadLetterReason::from_code("other"), None);
    }
}
