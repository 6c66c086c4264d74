//! Configuring and starting a relay.

use std::sync::Arc;
use std::time::Duration;

use annals::{OutboxShard, OutboxSource};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;
use tokio::sync::watch;

use super::drained::waiting_count;
use super::handle::RelayHandle;
use super::metrics::ShardMetrics;
use super::settings::{Choices, RelaySettings};
use super::shard::{self, ShardContext, StopSignal};
use super::status::StatusCell;
use crate::{Error, KafkaConfig};

/// The outbox relay: publishes the integration events of an outbox to Kafka,
/// in order per key, each exactly once (see the crate docs for the
/// argument), and prunes what it published.
///
/// Start one with [`OutboxRelay::builder`] in every instance of the service:
/// for each shard, one relay publishes and the others stand by until its
/// lease is released.
///
/// ```
/// use annals::MemoryEventStore;
/// use annals_kafka::{KafkaConfig, OutboxRelay};
///
/// # async fn run() -> Result<(), annals_kafka::Error> {
/// let store = MemoryEventStore::new();
/// let relay = OutboxRelay::builder(store, KafkaConfig::new("127.0.0.1:9092")?)
///     .name("orders-relay")
///     .shards(4)
///     .start()?;
///
/// let status = relay.status();
/// println!("{} waiting, oldest for {:?}", status.backlog(), status.lag());
///
/// relay.stop().await; // flushes what is in flight and saves the checkpoint
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct OutboxRelay;

impl OutboxRelay {
    /// A relay of `source`'s outbox to the brokers of `kafka`.
    pub fn builder<S: OutboxSource>(source: S, kafka: KafkaConfig) -> OutboxRelayBuilder<S> {
        OutboxRelayBuilder {
            source,
            kafka,
            choices: Choices::default(),
        }
    }
}

/// Settings of an [`OutboxRelay`]; [`OutboxRelayBuilder::start`] starts it.
///
/// Producer settings (`linger.ms`, `compression.type`, `acks`, ...) are
/// librdkafka settings given through [`KafkaConfig::with`]; they override
/// the relay's defaults: `enable.idempotence=true`, `acks=all`,
/// `compression.type=lz4`, `linger.ms=5`, `batch.num.messages=10000`,
/// `batch.size=1000000`, `max.in.flight.requests.per.connection=5`,
/// `message.timeout.ms=30000`, `enable.sparse.connections=false` (a new
/// producer connects to every broker at once instead of when a request
/// first needs one).
#[derive(Debug)]
#[must_use = "a relay does nothing until started"]
pub struct OutboxRelayBuilder<S> {
    source: S,
    kafka: KafkaConfig,
    choices: Choices,
}

impl<S: OutboxSource> OutboxRelayBuilder<S> {
    /// The relay's name (default `annals-relay`): its checkpoints, leases
    /// and parked records are kept under it, and it marks what it publishes
    /// with it. Every instance of the same relay uses the same name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.choices.name = name.into();
        self
    }

    /// How many shards the outbox is split into (default 1). Every shard
    /// has its own lease, checkpoint and producer, so shards are published
    /// in parallel, by one relay instance or spread over several.
    ///
    /// Change it only with every instance stopped and the outbox drained:
    /// keys move between shards. On the Postgres store, create the shards'
    /// partial indexes first (`PgOutbox::create_shard_indexes`), or
    /// every shard walks the whole outbox.
    pub fn shards(mut self, count: u32) -> Self {
        self.choices.shards = count;
        self
    }

    /// How many records are read from the outbox at a time (default
    /// 10,000). The next page is read while the current one is sent, so up
    /// to one page more than [`max_in_flight`](Self::max_in_flight) is held
    /// in memory. A page holds only what is there: a relay that keeps up
    /// reads small pages whatever this is, so it bounds catch-ups, not the
    /// latency of a steady flow. A session starts with pages of at most
    /// 500 records, and each full page doubles the next up to this size, so
    /// that publishing starts early when a session begins on a backlog.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.choices.batch_size = records;
        self
    }

    /// How many records of a shard may be sent and not yet acked (default
    /// 50,000); sending the next page waits while that many are in flight.
    pub fn max_in_flight(mut self, records: usize) -> Self {
        self.choices.max_in_flight = records;
        self
    }

    /// How often an idle relay looks at the outbox when no append signal
    /// woke it (default 500 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.choices.poll_interval = interval;
        self
    }

    /// How often the checkpoint is saved while publishing (default 100 ms),
    /// and at once when every record sent is acked with at least a
    /// [`prune_batch`](Self::prune_batch) of them behind the last save (a
    /// drain's end: pruning follows without waiting for the interval).
    /// A crash republishes nothing either way; a longer interval only makes
    /// recovery read further back.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.choices.checkpoint_interval = interval;
        self
    }

    /// How many published records one prune deletes (default 5,000).
    pub fn prune_batch(mut self, records: usize) -> Self {
        self.choices.prune_batch = records;
        self
    }

    /// How long a relay waits after taking a shard's lease from a holder
    /// that may still have records in flight, and after abandoning a
    /// failed producer of its own, before it reads the partitions to see
    /// what is already published (default: after a takeover, the
    /// producer's `message.timeout.ms` plus the store's
    /// [`lease_loss_bound`](annals::OutboxSource::lease_loss_bound), 7 s on
    /// PostgreSQL; after its own producer, `message.timeout.ms`; with
    /// `message.timeout.ms=0`, which never times a record out, it must be
    /// chosen, and is then used for both).
    ///
    /// No wait at all where nothing can be in flight: the first relay of a
    /// shard, and one that follows a relay that stopped with everything
    /// acknowledged ([`RelayHandle::stop`]). The store records which
    /// ([`annals::OutboxSource::in_flight`]).
    ///
    /// The wait lets whatever a previous holder still had in flight land or
    /// fail first: it sends until it notices it lost the lease, and each
    /// record may take its delivery timeout after that. Shorten it only when
    /// a previous holder is known to be gone with its producer, or in
    /// transactional mode on a broker that implements transactions (the new
    /// producer fences the old one there); a grace shorter than the default
    /// is logged as a warning.
    pub fn takeover_grace(mut self, grace: Duration) -> Self {
        self.choices.takeover_grace = Some(grace);
        self
    }

    /// The shortest and longest wait between attempts when the broker or
    /// the store is unreachable (default 100 ms to 10 s, doubling).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.choices.backoff = (min, max);
        self
    }

    /// How long a topic the broker does not know is asked for before its
    /// records are parked (default 10 s); a topic created later is noticed
    /// after the same time again.
    pub fn unknown_topic_timeout(mut self, timeout: Duration) -> Self {
        self.choices.unknown_topic_timeout = timeout;
        self
    }

    /// How long [`RelayHandle::stop`] waits for records in flight (default
    /// 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.choices.shutdown_timeout = timeout;
        self
    }

    /// How often the backlog and lag of the status and the metrics are
    /// measured (default 1 s). Measuring counts the shard's waiting records,
    /// which takes long when many wait: the next measurement comes no
    /// sooner than 20 times as long as the last one took after it, so that
    /// counting takes at most a twentieth of the store's time while a large
    /// backlog drains.
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.choices.status_interval = interval;
        self
    }

    /// The most the store's clock and the relay's clock may differ (default
    /// 5 min). Recovery stops reading a partition backwards at records older
    /// than the oldest pending one by this much.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.choices.clock_skew = skew;
        self
    }

    /// Publishes each batch in a Kafka transaction with a `transactional.id`
    /// per relay name and shard, so that a new producer fences the ones
    /// before it (default off).
    ///
    /// Needs a broker that implements transactions, and consumers that read
    /// with `isolation.level=read_committed`. tansu 0.6.0 accepts the calls
    /// but does not hide aborted records, so there it publishes but fences
    /// nothing.
    pub fn transactional(mut self, on: bool) -> Self {
        self.choices.transactional = on;
        self
    }

    /// Starts one task per shard on the current Tokio runtime.
    ///
    /// Errors: [`Error::Config`] for unusable settings, [`Error::Kafka`]
    /// when librdkafka refuses the producer or consumer settings.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(self) -> Result<RelayHandle, Error> {
        let settings = Arc::new(RelaySettings::resolve(
            self.choices,
            &self.kafka,
            self.source.lease_loss_bound(),
        )?);
        let shards = OutboxShard::split(settings.shards)?;
        // librdkafka checks its settings when a client is created. Closing a
        // client waits for its threads (100 ms was measured), so the two
        // clients are closed on a blocking thread, not on the caller's.
        let producer = settings
            .producer_config(shards[0])
            .create::<BaseProducer>()
            .map_err(|error| Error::kafka("the relay's producer settings", error))?;
        let consumer = settings
            .tail_consumer_config()
            .create::<BaseConsumer>()
            .map_err(|error| Error::kafka("the relay's consumer settings", error))?;
        tokio::task::spawn_blocking(move || drop((producer, consumer)));
        let waiting = waiting_count(self.source.clone(), settings.name.clone(), shards.clone());
        let (stop, stop_receiver) = watch::channel(false);
        let mut statuses = Vec::with_capacity(shards.len());
        let mut tasks = Vec::with_capacity(shards.len());
        for shard in shards {
            let status = StatusCell::new(shard);
            let context = ShardContext {
                source: self.source.clone(),
                settings: Arc::clone(&settings),
                shard,
                status: status.clone(),
                metrics: ShardMetrics::new(&settings.name, shard),
            };
            tasks.push(tokio::spawn(shard::run(
                context,
                StopSignal::new(stop_receiver.clone()),
            )));
            statuses.push(status);
        }
        tracing::info!(relay = %settings.name, shards = settings.shards,
            transactional = settings.transactional, "outbox relay started");
        Ok(RelayHandle::new(
            settings.name.clone(),
            stop,
            tasks,
            statuses,
            waiting,
        ))
    }
}
