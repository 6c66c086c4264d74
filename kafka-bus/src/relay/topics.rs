//! The partition count of each topic a session publishes to, and which
//! topics do not exist.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::producer::ProducerSession;

/// Where a topic stands for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TopicState {
    /// It exists with this many partitions.
    Partitions(u32),
    /// The broker refuses it for good (does not exist with auto-creation
    /// off, invalid name, not authorized); records for it are parked.
    Refused(String),
}

/// Partition counts, read once per topic and session: a session keeps the
/// count it started with, so every record of a key goes to one partition
/// for the whole session even if partitions are added meanwhile.
#[derive(Debug)]
pub(super) struct Topics {
    known: HashMap<String, (TopicState, Instant)>,
    unknown_topic_timeout: Duration,
    request_timeout: Duration,
}

impl Topics {
    pub(super) fn new(unknown_topic_timeout: Duration, request_timeout: Duration) -> Self {
        Topics {
            known: HashMap::new(),
            unknown_topic_timeout,
            request_timeout,
        }
    }

    /// The state of `topic`, asking the broker when it is not known yet.
    ///
    /// A topic the broker does not know is asked for again until
    /// `unknown_topic_timeout` passes (auto-creation and metadata propagation
    /// take a moment); after that it counts as refused for the same time
    /// again, so that records for it are parked quickly but a topic created
    /// later is noticed. Errors are those of reaching the broker: the session
    /// ends and retries.
    pub(super) async fn state(
        &mut self,
        producer: &ProducerSession,
        topic: &str,
    ) -> Result<TopicState, KafkaError> {
        if let Some((state, since)) = self.known.get(topic) {
            let refusal_expired = matches!(state, TopicState::Refused(_))
                && since.elapsed() > self.unknown_topic_timeout;
            if !refusal_expired {
                return Ok(state.clone());
            }
        }
        let state = self.ask(producer, topic).await?;
        self.known
            .insert(topic.to_owned(), (state.clone(), Instant::now()));
        Ok(state)
    }

    async fn ask(&self, producer: &ProducerSession, topic: &str) -> Result<TopicState, KafkaError> {
        let deadline = Instant::now() + self.unknown_topic_timeout;
        loop {
            let metadata = producer.topic_metadata(topic, self.request_timeout).await?;
            let found = metadata.topics().iter().find(|found| found.name() == topic);
            let answer = match found {
                None => Answer::Unknown,
                Some(found) => match found.error().map(RDKafkaErrorCode::from) {
                    None if !found.partitions().is_empty() => {
                        Answer::Known(TopicState::Partitions(found.partitions().len() as u32))
                    }
                    None => Answer::Unknown,
                    Some(code) => classify(topic, code),
                },
            };
            match answer {
                Answer::Known(state) => return Ok(state),
                Answer::Unknown if Instant::now() >= deadline => {
                    return Ok(TopicState::Refused(format!(
                        "topic `{topic}` does not exist (the broker did not know it for {:?}; \
                         is automatic topic creation off?)",
                        self.unknown_topic_timeout
                    )));
                }
                Answer::Unknown => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

enum Answer {
    Known(TopicState),
    /// Does not exist (yet), or has no leader yet: ask again.
    Unknown,
}

fn classify(topic: &str, code: RDKafkaErrorCode) -> Answer {
    use RDKafkaErrorCode::*;
    match code {
        InvalidTopic => Answer::Known(TopicState::Refused(format!(
            "topic `{topic}` is not a valid topic name for the broker ({code})"
        ))),
        TopicAuthorizationFailed => Answer::Known(TopicState::Refused(format!(
            "not authorized to write to topic `{topic}` ({code})"
        ))),
        _ => Answer::Unknown,
    }
}
