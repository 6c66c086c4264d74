//! The relay's resolved settings: the builder's choices, the producer's
//! tuned defaults under the user's librdkafka settings, and the consumer
//! that reads partition tails during recovery.

use std::time::Duration;

use annals::OutboxShard;
use rdkafka::ClientConfig;

use crate::{Error, KafkaConfig};

/// The producer settings the relay starts from; every one can be overridden
/// with [`KafkaConfig::with`].
pub(super) const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Exactly once within a producer session: retries cannot duplicate or
    // reorder, and what lands in a partition is a prefix of what was sent.
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // The idempotent producer keeps order with up to 5 requests in flight.
    ("max.in.flight.requests.per.connection", "5"),
    ("compression.type", "lz4"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1000000"),
    ("queue.buffering.max.messages", "200000"),
    // Bounds how long a send may stay unresolved, and with it the takeover
    // grace (see the crate docs on exactly once).
    ("message.timeout.ms", "30000"),
    // Connect to every broker at once. With sparse connections librdkafka
    // connects to a broker it learned from the metadata only once a request
    // needs it, and the first such request of a new client waited about 50
    // ms for it here (tansu 0.6.0 on one machine, every new client): most
    // of a session's start before its first ack, and of a takeover. A relay
    // publishes to the leaders of all its partitions anyway.
    ("enable.sparse.connections", "false"),
];

/// Producer-only settings, left out of the recovery consumer's configuration
/// so that librdkafka does not warn about each of them.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "compression.type",
    "compression.codec",
    "compression.level",
    "linger.ms",
    "queue.buffering.max.ms",
    "batch.num.messages",
    "batch.size",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.send.max.retries",
    "retries",
    "transactional.id",
    "transaction.timeout.ms",
    "partitioner",
    "sticky.partitioning.linger.ms",
    "delivery.report.only.error",
    "dr_msg_cb",
    "queuing.strategy",
];

/// The consumer that reads partition tails. `partition.eof` finds the true
/// end of a partition, which the high watermark does not give on every
/// broker (docs/broker-notes.md). Its fetch wait is chosen while reading.
const TAIL_CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "true"),
    ("auto.offset.reset", "earliest"),
    // Records of aborted transactions are not publications.
    ("isolation.level", "read_committed"),
    // Each recovery starts new consumers: connect them at once (see the
    // producer's setting).
    ("enable.sparse.connections", "false"),
];

/// Everything a shard task needs to know, fixed when the relay starts.
#[derive(Debug)]
pub(super) struct RelaySettings {
    pub(super) name: String,
    pub(super) shards: u32,
    pub(super) batch_size: usize,
    pub(super) max_in_flight: usize,
    pub(super) poll_interval: Duration,
    pub(super) checkpoint_interval: Duration,
    pub(super) prune_batch: usize,
    /// How long a new holder waits when an earlier holder may have records
    /// in flight: the producer's delivery timeout plus the store's lease
    /// loss bound, unless chosen.
    pub(super) takeover_grace: Duration,
    /// How long a session waits after abandoning its own producer: the
    /// delivery timeout, unless a grace was chosen.
    pub(super) settle_grace: Duration,
    /// How long the oldest record of a session may wait for its ack before
    /// the session ends: three quarters of `message.timeout.ms`, so that
    /// librdkafka never times a record out itself (`None` when that timeout
    /// is infinite). A record that librdkafka times out lets the records
    /// queued behind it go out (its idempotent producer keeps the sequence
    /// numbers gap-free, not the messages), and they could land before the
    /// session has seen the failure; ending the session first purges them.
    pub(super) ack_deadline: Option<Duration>,
    pub(super) backoff_min: Duration,
    pub(super) backoff_max: Duration,
    pub(super) unknown_topic_timeout: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) status_interval: Duration,
    pub(super) clock_skew: Duration,
    pub(super) broker_timeout: Duration,
    pub(super) recovery_timeout: Duration,
    pub(super) commit_timeout: Duration,
    pub(super) transactional: bool,
    producer: ClientConfig,
    tail_consumer: ClientConfig,
}

/// What the builder chose; `None` means "derive it".
#[derive(Debug, Clone)]
pub(super) struct Choices {
    pub(super) name: String,
    pub(super) shards: u32,
    pub(super) batch_size: usize,
    pub(super) max_in_flight: usize,
    pub(super) poll_interval: Duration,
    pub(super) checkpoint_interval: Duration,
    pub(super) prune_batch: usize,
    pub(super) takeover_grace: Option<Duration>,
    pub(super) backoff: (Duration, Duration),
    pub(super) unknown_topic_timeout: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) status_interval: Duration,
    pub(super) clock_skew: Duration,
    pub(super) transactional: bool,
}

impl Default for Choices {
    fn default() -> Self {
        Choices {
            name: "annals-relay".to_owned(),
            shards: 1,
            batch_size: 10_000,
            max_in_flight: 50_000,
            poll_interval: Duration::from_millis(500),
            checkpoint_interval: Duration::from_millis(100),
            prune_batch: 5_000,
            takeover_grace: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
            unknown_topic_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            status_interval: Duration::from_secs(1),
            clock_skew: Duration::from_secs(300),
            transactional: false,
        }
    }
}

impl RelaySettings {
    /// Checks the choices and resolves the client configurations, for a
    /// store whose leases are noticed lost within `lease_loss_bound`.
    pub(super) fn resolve(
        choices: Choices,
        kafka: &KafkaConfig,
        lease_loss_bound: Duration,
    ) -> Result<Self, Error> {
        let invalid = |what: &str| Err(Error::Config(format!("outbox relay: {what}")));
        if choices.name.trim().is_empty() {
            return invalid("the name is empty");
        }
        if choices.shards == 0 {
            return invalid("at least one shard is needed");
        }
        if choices.batch_size == 0 || choices.prune_batch == 0 {
            return invalid("batch sizes must be at least 1");
        }
        if choices.max_in_flight < choices.batch_size {
            return invalid("max_in_flight must be at least the batch size");
        }
        if choices.backoff.0.is_zero() || choices.backoff.0 > choices.backoff.1 {
            return invalid("the backoff needs 0 < min <= max");
        }
        if kafka.settings().contains_key("transactional.id") {
            return invalid(
                "set `transactional.id` through OutboxRelayBuilder::transactional, which gives \
                 every shard an id of its own",
            );
        }
        let producer = kafka.client_config(PRODUCER_DEFAULTS.iter().copied());
        let message_timeout = millis_setting(&producer, "message.timeout.ms")?;
        if message_timeout.is_zero() && choices.takeover_grace.is_none() {
            // The grace follows the timeout, and a producer that never gives
            // up on a record leaves no wait after which it is known gone.
            return invalid(
                "`message.timeout.ms=0` (never time out) leaves no takeover grace to derive: \
                 choose one with OutboxRelayBuilder::takeover_grace",
            );
        }
        if producer.get("enable.idempotence") != Some("true") {
            tracing::warn!(
                relay = %choices.name,
                "enable.idempotence is off: a retry inside a producer session may duplicate or \
                 reorder records, and the relay no longer publishes exactly once"
            );
        }
        let mut tail_consumer = ClientConfig::new();
        for (key, value) in TAIL_CONSUMER_DEFAULTS {
            tail_consumer.set(*key, *value);
        }
        tail_consumer.set("bootstrap.servers", kafka.brokers());
        for (key, value) in kafka.settings() {
            if !PRODUCER_ONLY.contains(&key.as_str()) {
                tail_consumer.set(key, value);
            }
        }
        if let Some(grace) = choices.takeover_grace
            && grace < message_timeout + lease_loss_bound
        {
            tracing::warn!(
                relay = %choices.name, ?grace, ?message_timeout, ?lease_loss_bound,
                "the takeover grace is shorter than message.timeout.ms and the store's lease loss \
                 bound together: a relay taking over from one that crashed or lost its lease may \
                 publish some records twice"
            );
        }
        Ok(RelaySettings {
            takeover_grace: choices
                .takeover_grace
                .unwrap_or(message_timeout + lease_loss_bound),
            settle_grace: choices.takeover_grace.unwrap_or(message_timeout),
            ack_deadline: (!message_timeout.is_zero()).then(|| message_timeout * 3 / 4),
            broker_timeout: Duration::from_secs(10),
            recovery_timeout: Duration::from_secs(120),
            commit_timeout: Duration::from_secs(60),
            name: choices.name,
            shards: choices.shards,
            batch_size: choices.batch_size,
            max_in_flight: choices.max_in_flight,
            poll_interval: choices.poll_interval,
            checkpoint_interval: choices.checkpoint_interval,
            prune_batch: choices.prune_batch,
            backoff_min: choices.backoff.0,
            backoff_max: choices.backoff.1,
            unknown_topic_timeout: choices.unknown_topic_timeout,
            shutdown_timeout: choices.shutdown_timeout,
            status_interval: choices.status_interval,
            clock_skew: choices.clock_skew,
            transactional: choices.transactional,
            producer,
            tail_consumer,
        })
    }

    /// The producer configuration of `shard`'s sessions.
    pub(super) fn producer_config(&self, shard: OutboxShard) -> ClientConfig {
        let mut config = self.producer.clone();
        if self.transactional {
            config.set("transactional.id", self.transactional_id(shard));
        }
        config
    }

    /// The transactional id of `shard`: stable per relay name and shard, so
    /// that a new session fences the sessions before it.
    pub(super) fn transactional_id(&self, shard: OutboxShard) -> String {
        format!("{}.shard-{}-of-{}", self.name, shard.index(), shard.count())
    }

    /// The configuration of the consumer that reads partition tails.
    pub(super) fn tail_consumer_config(&self) -> ClientConfig {
        let mut config = self.tail_consumer.clone();
        config.set(
            "group.id",
            format!("{}.tail-reader.{:016x}", self.name, fastrand::u64(..)),
        );
        config
    }
}

fn millis_setting(config: &ClientConfig, key: &str) -> Result<Duration, Error> {
    let value = config.get(key).unwrap_or_default();
    value.parse().map(Duration::from_millis).map_err(|_| {
        Error::Config(format!(
            "outbox relay: `{key}` must be a whole number of milliseconds, not {value:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_follows_the_message_timeout_unless_chosen() {
        let kafka = KafkaConfig::new("h:1")
            .unwrap()
            .with("message.timeout.ms", "4000")
            .with("linger.ms", "20");
        let settings =
            RelaySettings::resolve(Choices::default(), &kafka, Duration::from_secs(6)).unwrap();
        assert_eq!(
            settings.takeover_grace,
            Duration::from_secs(10),
            "the delivery timeout and the lease loss bound"
        );
        assert_eq!(settings.settle_grace, Duration::from_secs(4));
        assert_eq!(settings.ack_deadline, Some(Duration::from_secs(3)));
        let producer = settings.producer_config(OutboxShard::ALL);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("transactional.id"), None);
        let consumer = settings.tail_consumer_config();
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(consumer.get("enable.partition.eof"), Some("true"));
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));

        let chosen = Choices {
            takeover_grace: Some(Duration::ZERO),
            transactional: true,
            ..Choices::default()
        };
        let settings = RelaySettings::resolve(chosen, &kafka, Duration::from_secs(6)).unwrap();
        assert_eq!(settings.takeover_grace, Duration::ZERO);
        assert_eq!(settings.settle_grace, Duration::ZERO);
        let shard = OutboxShard::new(1, 3).unwrap();
        assert_eq!(
            settings.producer_config(shard).get("transactional.id"),
            Some("annals-relay.shard-1-of-3")
        );
        let endless = kafka.clone().with("message.timeout.ms", "0");
        assert!(
            RelaySettings::resolve(Choices::default(), &endless, Duration::ZERO).is_err(),
            "no grace to derive from an endless timeout"
        );
        let chosen = Choices {
            takeover_grace: Some(Duration::from_secs(60)),
            ..Choices::default()
        };
        let settings = RelaySettings::resolve(chosen, &endless, Duration::ZERO).unwrap();
        assert_eq!(
            settings.ack_deadline, None,
            "librdkafka never times records out"
        );
    }

    #[test]
    fn unusable_choices_are_refused() {
        let kafka = KafkaConfig::new("h:1").unwrap();
        let refused =
            |choices: Choices| RelaySettings::resolve(choices, &kafka, Duration::ZERO).is_err();
        assert!(refused(Choices {
            shards: 0,
            ..Choices::default()
        }));
        assert!(refused(Choices {
            batch_size: 0,
            ..Choices::default()
        }));
        assert!(refused(Choices {
            max_in_flight: 10,
            ..Choices::default()
        }));
        let with_id = kafka.with("transactional.id", "x");
        assert!(RelaySettings::resolve(Choices::default(), &with_id, Duration::ZERO).is_err());
    }
}
