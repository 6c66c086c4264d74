//! Setting a consumer up: its name, topics, handlers and policies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use annals::{DomainEvent, Inbox};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tokio::sync::oneshot;

use super::context::RuntimeContext;
use super::dead_letter::KafkaDeadLetters;
use super::handler::{FnHandler, Handler, HandlerFuture, ReceivedEvent};
use super::monitor::Monitor;
use super::policy::{FailurePolicy, UnknownTypes};
use super::poller::{self, Control};
use super::prune;
use super::routes::Routes;
use super::running::Consumer;
use super::runtime::{Options, Runtime};
use crate::{Error, KafkaConfig};

/// The consumer's librdkafka settings before [`KafkaConfig`]'s own, which
/// win. Offsets are committed by the runtime, never automatically. The
/// session timeout is short because a group join takes half of it against
/// the test broker (docs/broker-notes.md) and a member that died should
/// lose its partitions quickly; heartbeats every 500 ms keep a live one in.
/// The poll interval bounds how long a rebalance waits for a member that
/// stopped polling without leaving; the polling thread polls at least every
/// 100 ms except while draining a revoked partition (the drain timeout).
/// Statistics every second carry the fetch high watermarks that the lag is
/// computed from.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("max.poll.interval.ms", "30000"),
    ("statistics.interval.ms", "1000"),
    ("fetch.wait.max.ms", "100"),
    ("enable.partition.eof", "false"),
];

/// Builds a [`Consumer`]; from [`Consumer::builder`].
///
/// A name, at least one topic and at least one handler are required. The
/// name is the consumer group's id (unless `group.id` is set in the
/// [`KafkaConfig`]) and the consumer's key in the inbox: two services
/// reading the same topic need two names.
pub struct ConsumerBuilder<I: Inbox> {
    config: KafkaConfig,
    dead_letter_config: Option<KafkaConfig>,
    inbox: I,
    name: Option<String>,
    topics: Vec<String>,
    routes: Routes<I::Tx>,
    problems: Vec<String>,
    options: Options,
}

impl<I: Inbox + fmt::Debug> fmt::Debug for ConsumerBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("config", &self.config)
            .field("dead_letter_config", &self.dead_letter_config)
            .field("inbox", &self.inbox)
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<I: Inbox> ConsumerBuilder<I> {
    pub(crate) fn new(config: KafkaConfig, inbox: I) -> Self {
        ConsumerBuilder {
            config,
            dead_letter_config: None,
            inbox,
            name: None,
            topics: Vec::new(),
            routes: Routes::default(),
            problems: Vec::new(),
            options: Options::default(),
        }
    }

    /// Sets the name: the group id and the key of its claims in the inbox.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a topic to read.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Handles events of type `E` with a closure that gets the inbox's
    /// transaction and the event; it returns a boxed future
    /// (`Box::pin(async move { .. })`) because the future borrows both.
    ///
    /// Every type name `E` decodes, directly or through its upcasters, is
    /// routed to it; a type routed to two handlers makes
    /// [`ConsumerBuilder::start`] fail.
    pub fn on<E, F>(self, handler: F) -> Self
    where
        E: DomainEvent,
        F: for<'a> Fn(&'a mut I::Tx, &'a ReceivedEvent<E>) -> HandlerFuture<'a>
            + Send
            + Sync
            + 'static,
    {
        self.handler(FnHandler::new(handler))
    }

    /// Handles the events of `H::Event` with `handler` (see [`Handler`]).
    pub fn handler<H: Handler<I::Tx>>(mut self, handler: H) -> Self {
        if let Err(problem) = self.routes.add(handler) {
            self.problems.push(problem);
        }
        self
    }

    /// Sets how failing handlers are retried and what follows (default:
    /// 5 attempts, 100 ms doubling to 10 s, then the dead-letter topic).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.options.failure = policy;
        self
    }

    /// Sets what happens to records of types no handler is registered for
    /// (default: the dead-letter topic).
    pub fn unknown_types(mut self, unknown: UnknownTypes) -> Self {
        self.options.unknown_types = unknown;
        self
    }

    /// Sets the suffix of dead-letter topics: records of `orders` go to
    /// `orders<suffix>` (default `.dlq`). Create those topics with the
    /// others, unless the cluster creates topics on first use.
    /// [`ConsumerBuilder::start`] refuses a suffix that makes a name Kafka
    /// does not allow (more than 249 characters, or others than ASCII
    /// letters, digits, `.`, `_` and `-`).
    pub fn dead_letter_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.options.dead_letter_suffix = suffix.into();
        self
    }

    /// Sets where and how dead letters are produced (default: the
    /// consumer's own [`KafkaConfig`]), e.g. another cluster, or a
    /// `message.max.bytes` as large as the dead-letter topics take.
    ///
    /// A record the dead-letter producer or topic refuses for its size is
    /// written cut to fit (see [`DeadLetterCut`](crate::DeadLetterCut)), so
    /// that the partition goes on.
    pub fn dead_letter_config(mut self, config: KafkaConfig) -> Self {
        self.dead_letter_config = Some(config);
        self
    }

    /// Sets how many records may wait for each partition's worker (default
    /// 1,000); when the queue is full the partition is paused, and resumed
    /// when the queue is half empty.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.options.queue_capacity = capacity.max(1);
        self
    }

    /// Sets how many waiting records of a partition are handled in one
    /// inbox transaction (default 100; 1 for a transaction per record).
    /// When a batch fails, its records are retried one by one, so a failing
    /// record never holds back the others.
    pub fn max_batch(mut self, records: usize) -> Self {
        self.options.max_batch = records.max(1);
        self
    }

    /// Sets how many records a partition may keep behind blocked keys
    /// before it stops taking new ones (default 10,000).
    pub fn max_kept(mut self, records: usize) -> Self {
        self.options.max_kept = records.max(1);
        self
    }

    /// Sets how often settled offsets are committed (default 200 ms).
    /// Offsets are also committed when partitions are revoked and when the
    /// consumer stops.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.options.commit_interval = interval;
        self
    }

    /// Sets how long a revoked partition's worker may take to finish the
    /// record in hand before it is abandoned uncommitted (default 10 s; keep
    /// it well below `max.poll.interval.ms`, 30 s by default).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.options.drain_timeout = timeout;
        self
    }

    /// Sets how long stopping waits for the group to be left (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.options.close_timeout = timeout;
        self
    }

    /// Sets how long inbox claims are kept (default 7 days) and how often
    /// older ones are pruned (default hourly). Keep claims longer than the
    /// broker may deliver a record again: a record delivered after its claim
    /// was pruned is handled again.
    pub fn inbox_retention(mut self, retention: Duration, prune_every: Duration) -> Self {
        self.options.inbox_retention = Some(retention);
        self.options.prune_interval = prune_every;
        self
    }

    /// Never prunes the inbox (another process does, or nothing should).
    pub fn without_pruning(mut self) -> Self {
        self.options.inbox_retention = None;
        self
    }

    /// Joins the group and starts consuming, in the current Tokio runtime.
    ///
    /// Fails when a setting is invalid (no name, no topic, no handler, two
    /// handlers for one type, an unusable librdkafka setting) or when not
    /// called inside a Tokio runtime.
    pub fn start(self) -> Result<Consumer, Error> {
        let tokio = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("a consumer must be started inside a Tokio runtime".into())
        })?;
        let name = self
            .name
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| Error::Config("a consumer needs a name".into()))?;
        if self.topics.is_empty() {
            return Err(Error::Config(format!("consumer `{name}` reads no topic")));
        }
        if let Some(problem) = self.problems.first() {
            return Err(Error::Config(format!("consumer `{name}`: {problem}")));
        }
        if self.routes.is_empty() {
            return Err(Error::Config(format!("consumer `{name}` has no handler")));
        }
        for topic in &self.topics {
            // A pattern (librdkafka's `^regex`) names its topics only when
            // they are found: its suffix alone is checked.
            let topic = if topic.starts_with('^') { "t" } else { topic };
            let dead_letters = format!("{topic}{}", self.options.dead_letter_suffix);
            check_topic_name(&dead_letters).map_err(|problem| {
                Error::Config(format!(
                    "consumer `{name}`: the dead-letter topic {dead_letters:?} of {topic:?} \
                     cannot exist: {problem}"
                ))
            })?;
        }
        let monitor = Arc::new(Monitor::new(&name));
        let dead_letters = KafkaDeadLetters::new(
            self.dead_letter_config.as_ref().unwrap_or(&self.config),
            &self.options.dead_letter_suffix,
        )?;
        let runtime = Arc::new(Runtime {
            name: name.clone(),
            inbox: self.inbox.clone(),
            routes: self.routes,
            options: self.options.clone(),
            dead_letters: Arc::new(dead_letters),
            monitor: Arc::clone(&monitor),
        });
        let defaults = [("group.id", name.as_str())]
            .into_iter()
            .chain(CONSUMER_DEFAULTS.iter().copied());
        let consumer: BaseConsumer<RuntimeContext<I>> = self
            .config
            .client_config(defaults)
            .create_with_context(RuntimeContext::new(runtime, tokio))
            .map_err(|error| Error::kafka(format!("creating consumer `{name}`"), error))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| Error::kafka(format!("subscribing to {topics:?}"), error))?;
        let control = Arc::new(Control::default());
        let (stopped, on_stopped) = oneshot::channel();
        poller::spawn(consumer, Arc::clone(&control), stopped).map_err(|error| {
            Error::Config(format!(
                "cannot start the polling thread of `{name}`: {error}"
            ))
        })?;
        let pruning = self.options.inbox_retention.map(|retention| {
            prune::spawn(
                self.inbox,
                Arc::clone(&monitor),
                retention,
                self.options.prune_interval,
            )
        });
        Ok(Consumer::new(monitor, control, on_stopped, pruning))
    }
}

/// Why Kafka would refuse `topic` as a topic name, if it would: at most 249
/// characters, ASCII letters, digits, `.`, `_` and `-`, not `.` or `..`.
fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic == "." || topic == ".." {
        return Err("not a topic name".into());
    }
    if topic.len() > 249 {
        return Err(format!("{} characters, more than 249", topic.len()));
    }
    match topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!("{c:?} is not allowed in a topic name")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_topic_name;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for good in ["orders.dlq", "a", "A-b_c.9", &"t".repeat(249)] {
            assert!(check_topic_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "orders dlq",
            "orders/dlq",
            "ü",
            &"t".repeat(250),
        ] {
            assert!(check_topic_name(bad).is_err(), "{bad}");
        }
    }
}
