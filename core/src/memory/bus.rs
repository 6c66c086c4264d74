//! A message bus in memory: topics as ordered logs, consumer groups with
//! committed offsets, and a relay from a store's outbox.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{
    AppendSignal, Error, EventStore, GlobalPosition, OutboxMessage, OutboxReader, OutboxShard,
};

/// A message as consumers receive it: an outbox message with its place in
/// its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct BusMessage {
    /// The topic.
    pub topic: String,
    /// Its offset in the topic, from 0.
    pub offset: u64,
    /// The position of the outbox record it was published from.
    pub outbox_position: GlobalPosition,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// The message.
    pub message: OutboxMessage,
}

/// An in-process message bus with the delivery contract of the Kafka bus:
/// order per topic (so per key), each published outbox record once, consumer
/// groups that resume from their committed offset (at-least-once delivery;
/// deduplicate by message id for an exactly-once effect).
///
/// ```
/// use annals::MemoryBus;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = MemoryBus::new();
/// let mut consumer = bus.consumer("shipping", "orders");
/// assert!(consumer.poll(10).is_empty());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<BusInner>,
}

#[derive(Default)]
struct BusInner {
    state: Mutex<BusState>,
    published: watch::Sender<u64>,
}

#[derive(Default)]
struct BusState {
    topics: HashMap<String, Vec<BusMessage>>,
    committed: HashMap<(String, String), u64>,
    /// The last outbox position published, per relay name.
    relay_checkpoints: HashMap<String, GlobalPosition>,
    published: u64,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let mut topics: Vec<_> = state
            .topics
            .iter()
            .map(|(topic, messages)| (topic.clone(), messages.len()))
            .collect();
        topics.sort();
        f.debug_struct("MemoryBus")
            .field("topics", &topics)
            .finish()
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BusState> {
        // Every change under the lock is complete before anything can panic.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes outbox records in order and records `checkpoint` for
    /// `relay` in the same step, so that a restarted relay never publishes a
    /// record twice.
    fn publish_from_outbox(&self, relay: &str, records: Vec<crate::OutboxRecord>) -> usize {
        let mut state = self.lock();
        let checkpoint = state
            .relay_checkpoints
            .get(relay)
            .copied()
            .unwrap_or(GlobalPosition::START);
        let now = Utc::now();
        let mut published = 0;
        let mut last = checkpoint;
        for record in records
            .into_iter()
            .filter(|record| record.position > checkpoint)
        {
            let topic = state
                .topics
                .entry(record.message.topic.clone())
                .or_default();
            topic.push(BusMessage {
                topic: record.message.topic.clone(),
                offset: topic.len() as u64,
                outbox_position: record.position,
                published_at: now,
                message: record.message,
            });
            last = record.position;
            published += 1;
        }
        state.relay_checkpoints.insert(relay.to_owned(), last);
        state.published += published as u64;
        let total = state.published;
        drop(state);
        if published > 0 {
            self.inner.published.send_replace(total);
        }
        published
    }

    fn relay_checkpoint(&self, relay: &str) -> GlobalPosition {
        self.lock()
            .relay_checkpoints
            .get(relay)
            .copied()
            .unwrap_or(GlobalPosition::START)
    }

    /// Every message of `topic` from `offset` on.
    pub fn messages(&self, topic: &str, offset: u64) -> Vec<BusMessage> {
        let state = self.lock();
        let Some(messages) = state.topics.get(topic) else {
            return Vec::new();
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(messages.len());
        messages[start..].to_vec()
    }

    /// A consumer of `topic` in consumer group `group`, starting at the
    /// group's committed offset.
    pub fn consumer(&self, group: &str, topic: &str) -> MemoryConsumer {
        let position = self
            .lock()
            .committed
            .get(&(group.to_owned(), topic.to_owned()))
            .copied()
            .unwrap_or(0);
        MemoryConsumer {
            bus: self.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            position,
            published: self.inner.published.subscribe(),
        }
    }

    /// The committed offset of `group` on `topic`: the offset of the next
    /// message it will be given.
    pub fn committed(&self, group: &str, topic: &str) -> u64 {
        self.lock()
            .committed
            .get(&(group.to_owned(), topic.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Reads one topic for one consumer group.
///
/// Messages are delivered from the group's committed offset; a consumer that
/// polls but does not commit gets them again after a restart (a new
/// consumer of the same group).
pub struct MemoryConsumer {
    bus: MemoryBus,
    group: String,
    topic: String,
    position: u64,
    published: watch::Receiver<u64>,
}

impl fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("position", &self.position)
            .finish()
    }
}

impl MemoryConsumer {
    /// Up to `max` messages after the last one polled, without waiting.
    pub fn poll(&mut self, max: usize) -> Vec<BusMessage> {
        let messages: Vec<_> = self
            .bus
            .messages(&self.topic, self.position)
            .into_iter()
            .take(max)
            .collect();
        if let Some(last) = messages.last() {
            self.position = last.offset + 1;
        }
        messages
    }

    /// Waits up to `timeout` for messages, then polls up to `max`.
    pub async fn next_batch(&mut self, max: usize, timeout: Duration) -> Vec<BusMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.published.mark_unchanged();
            let messages = self.poll(max);
            if !messages.is_empty() {
                return messages;
            }
            let changed = tokio::time::timeout_at(deadline, self.published.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Vec::new();
            }
        }
    }

    /// Commits: the group's next message is the one after `message`.
    pub fn commit(&self, message: &BusMessage) {
        let mut state = self.bus.lock();
        let committed = state
            .committed
            .entry((self.group.clone(), self.topic.clone()))
            .or_default();
        *committed = (*committed).max(message.offset + 1);
    }
}

/// Moves outbox records from a store to a [`MemoryBus`], in outbox order,
/// each once: the relay's checkpoint is kept in the bus and advanced in the
/// same step as the publish.
///
/// ```
/// use annals::{MemoryBus, MemoryEventStore, MemoryOutboxRelay};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let store = MemoryEventStore::new();
/// let bus = MemoryBus::new();
/// let relay = MemoryOutboxRelay::new("orders-relay", store, bus.clone());
/// assert_eq!(relay.relay_once().await?, 0); // nothing written yet
/// let running = relay.spawn(); // or run it in the background
/// running.abort();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryOutboxRelay<S> {
    name: String,
    store: S,
    bus: MemoryBus,
    batch_size: usize,
    poll_interval: Duration,
}

impl<S: EventStore + OutboxReader> MemoryOutboxRelay<S> {
    /// A relay named `name` (its checkpoint's key) from `store` to `bus`.
    pub fn new(name: impl Into<String>, store: S, bus: MemoryBus) -> Self {
        MemoryOutboxRelay {
            name: name.into(),
            store,
            bus,
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
        }
    }

    /// Publishes everything in the outbox after the checkpoint; returns how
    /// many messages were published.
    pub async fn relay_once(&self) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let checkpoint = self.bus.relay_checkpoint(&self.name);
            let records = self
                .store
                .read_outbox(OutboxShard::ALL, checkpoint, self.batch_size)
                .await?;
            if records.is_empty() {
                return Ok(total);
            }
            total += self.bus.publish_from_outbox(&self.name, records);
        }
    }

    /// Relays in the background until the task is aborted, waking on appends
    /// and polling as a fallback. Errors are logged and retried.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut signal: AppendSignal = self.store.append_signal();
            loop {
                if let Err(error) = self.relay_once().await {
                    tracing::warn!(relay = %self.name, %error, "memory outbox relay failed; retrying");
                }
                signal.wait(self.poll_interval).await;
            }
        })
    }
}
