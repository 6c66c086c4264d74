//! Which producer errors mean "this record will never be accepted".

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The reason to park a record when `error` refuses it for good: too large,
/// an invalid topic or partition, not authorized, refused by a broker
/// policy. `None` for everything else, which is retried in order.
///
/// `UnknownTopicOrPartition` from the broker is not among them: it also
/// happens while a new topic's metadata spreads. The session ends instead,
/// and the next one asks for the topic again, parking its records only when
/// the broker still does not know it after the bounded wait.
pub(super) fn permanent_rejection(error: &KafkaError) -> Option<String> {
    use RDKafkaErrorCode::*;
    let code = error.rdkafka_error_code()?;
    let permanent = matches!(
        code,
        MessageSizeTooLarge
            | InvalidMessageSize
            | MessageBatchTooLarge
            | InvalidTopic
            | UnknownTopic
            | UnknownPartition
            | TopicAuthorizationFailed
            | PolicyViolation
            | InvalidRecord
            | UnsupportedForMessageFormat
            | BadMessage
    );
    permanent.then(|| format!("the broker refused it for good: {error} ({code:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_topic_refusals_are_permanent_and_outages_are_not() {
        let produce = KafkaError::MessageProduction;
        let reason = permanent_rejection(&produce(RDKafkaErrorCode::MessageSizeTooLarge)).unwrap();
        assert!(reason.contains("MessageSizeTooLarge"), "{reason}");
        assert!(permanent_rejection(&produce(RDKafkaErrorCode::InvalidTopic)).is_some());
        for passing in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(
                permanent_rejection(&produce(passing)).is_none(),
                "{passing:?}"
            );
        }
    }
}
