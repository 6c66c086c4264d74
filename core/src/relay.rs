//! What an outbox relay needs from the store: shards, leases, checkpoints,
//! what a shard's last holder may have left in flight, pruning and parking.
//! `annals-kafka` relays through this trait; `annals-postgres` and the
//! in-memory store implement it.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{AppendSignal, Error, GlobalPosition, OutboxReader, OutboxRecord};

/// One of `count` shards of the outbox. Messages go to shards by a stable
/// hash of their key ([`key_hash`]), so all messages of a key are in one
/// shard and keep their order there, while shards are relayed in parallel.
///
/// Change the shard count only with every relay stopped and the outbox
/// drained: a key may move to another shard.
///
/// ```
/// use annals::OutboxShard;
///
/// let shards = OutboxShard::split(4)?;
/// let owners: Vec<_> = shards.iter().filter(|shard| shard.contains("order-7")).collect();
/// assert_eq!(owners.len(), 1);
/// assert!(OutboxShard::ALL.contains("anything"));
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutboxShard {
    index: u32,
    count: u32,
}

impl OutboxShard {
    /// The whole outbox as one shard.
    pub const ALL: OutboxShard = OutboxShard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, Error> {
        if count == 0 || index >= count {
            return Err(Error::Config(format!(
                "outbox shard {index} of {count}: the index must be below a count of at least 1"
            )));
        }
        Ok(OutboxShard { index, count })
    }

    /// All `count` shards.
    pub fn split(count: u32) -> Result<Vec<Self>, Error> {
        (0..count.max(1))
            .map(|index| Self::new(index, count))
            .collect()
    }

    /// The shard's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether messages with `key` belong to this shard.
    pub fn contains(&self, key: &str) -> bool {
        key_hash(key) % self.count == self.index
    }
}

impl fmt::Display for OutboxShard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The stable hash that assigns keys to shards: 32-bit FNV-1a of the key's
/// UTF-8 bytes, the same in every process and release. Stores may keep it
/// beside the message so that a shard is read with an index.
pub fn key_hash(key: &str) -> u32 {
    key.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// What waits in one shard of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxBacklog {
    /// Messages after the relay's checkpoint.
    pub messages: u64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
}

/// What the store knows of records the last holder of a shard's lease may
/// still have in flight to the broker: whether a new holder must wait for
/// them to land (or fail) before it looks at what is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InFlight {
    /// No relay of this name has led the shard: nothing can be in flight.
    NeverLed,
    /// The last holder stopped with every record it sent acknowledged.
    Nothing,
    /// The last holder may have records in flight: it crashed, lost its
    /// lease or stopped without everything acknowledged (or is still
    /// leading, for a caller without the lease).
    Possible,
}

/// The outbox as a relay sees it.
///
/// One relay at a time publishes a shard: it holds the shard's lease, reads
/// the shard after its checkpoint ([`OutboxReader::read_outbox`]),
/// publishes, saves the checkpoint (only while holding the lease) and prunes
/// what is behind it. Before it sends anything it records that records may
/// be in flight ([`OutboxSource::set_in_flight`]), and when it stops with
/// everything acknowledged, that nothing is; so that the next holder waits
/// for an earlier holder's records only when there may be some.
///
/// One round of a relay, against any source:
///
/// ```
/// use annals::{
///     AppendRequest, EventStore, ExpectedVersion, GlobalPosition, InFlight, MemoryEventStore,
///     Metadata, NewEvent, OutboxMessage, OutboxReader, OutboxShard, OutboxSource, Payload,
///     StreamId,
/// };
///
/// /// Publishes what waits in `shard` after the relay's checkpoint; returns how many.
/// async fn relay_once<S: OutboxSource>(source: &S, shard: OutboxShard) -> Result<usize, annals::Error> {
///     let lease = source.acquire("billing-relay", shard).await?;
///     if source.in_flight("billing-relay", shard).await? == InFlight::Possible {
///         // ... wait until what the last holder sent has landed or failed,
///         // then look at what the broker holds already ...
///     }
///     source.set_in_flight(&lease, "billing-relay", shard, true).await?;
///     let after = source.checkpoint("billing-relay", shard).await?.unwrap_or(GlobalPosition::START);
///     let records = source.read_outbox(shard, after, 100).await?;
///     if let Some(last) = records.last() {
///         // ... publish `records` in order and wait for the broker's acks ...
///         source.save_checkpoint(&lease, "billing-relay", shard, last.position).await?;
///         source.prune(shard, last.position, 1_000).await?;
///     }
///     source.set_in_flight(&lease, "billing-relay", shard, false).await?;
///     Ok(records.len())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryEventStore::new();
/// let stream = StreamId::new("invoice-1")?;
/// let message = OutboxMessage {
///     message_id: uuid::Uuid::now_v7(),
///     topic: "billing".into(),
///     key: "invoice-1".into(),
///     event_type: "InvoiceIssued".into(),
///     event_version: 1,
///     payload: Payload::encode(&serde_json::json!({ "cents": 1200 }))?,
///     stream: stream.clone(),
///     stream_version: 1,
///     metadata: Metadata::default(),
/// };
/// let event = NewEvent::raw("InvoiceIssued", 1, message.payload.clone(), Metadata::default());
/// store
///     .append(AppendRequest::new(stream, ExpectedVersion::NoStream).event(event).outbox_message(message))
///     .await?;
///
/// assert_eq!(relay_once(&store, OutboxShard::ALL).await?, 1);
/// assert_eq!(relay_once(&store, OutboxShard::ALL).await?, 0, "published once");
/// # Ok(())
/// # }
/// ```
pub trait OutboxSource: OutboxReader + Clone + 'static {
    /// Proof of being the active relay of a shard; released when dropped.
    type Lease: Send + Sync + 'static;

    /// Waits until this relay holds the lease of `shard` for `relay`.
    fn acquire(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> impl Future<Output = Result<Self::Lease, Error>> + Send;

    /// Whether `lease` still holds, as far as its holder knows: after the
    /// store released it (its session died, say), this may say so only
    /// [`lease_loss_bound`](OutboxSource::lease_loss_bound) later.
    fn is_held(&self, lease: &Self::Lease) -> bool;

    /// The longest a holder may still see [`is_held`](OutboxSource::is_held)
    /// true after the store released its lease and could give it to another
    /// relay: the time the holder takes to notice. A relay taking over from
    /// a holder that may have records in flight waits this long on top of
    /// its producer's delivery timeout. Zero where the lease is released
    /// only by its holder.
    fn lease_loss_bound(&self) -> Duration;

    /// What the last holder of `shard`'s lease for `relay` may have left in
    /// flight, as recorded with [`set_in_flight`](OutboxSource::set_in_flight).
    /// A shard with a checkpoint and nothing recorded (written by a relay
    /// that did not record it) is [`InFlight::Possible`].
    fn in_flight(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> impl Future<Output = Result<InFlight, Error>> + Send;

    /// Records, durably, whether the holder of `lease` may have records in
    /// flight: `true` before it hands the first one to its producer,
    /// `false` once it stopped with all it sent acknowledged. Fails without
    /// writing when `lease` no longer holds.
    fn set_in_flight(
        &self,
        lease: &Self::Lease,
        relay: &str,
        shard: OutboxShard,
        possible: bool,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The last position `relay` published in `shard`.
    fn checkpoint(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> impl Future<Output = Result<Option<GlobalPosition>, Error>> + Send;

    /// Saves the checkpoint; fails without writing when `lease` no longer
    /// holds.
    fn save_checkpoint(
        &self,
        lease: &Self::Lease,
        relay: &str,
        shard: OutboxShard,
        position: GlobalPosition,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Deletes up to `limit` records of `shard` at or before `through`;
    /// returns how many.
    fn prune(
        &self,
        shard: OutboxShard,
        through: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Keeps a record the broker refused for good, with the reason.
    fn park(
        &self,
        relay: &str,
        record: &OutboxRecord,
        reason: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The records parked by `relay`, oldest first.
    fn parked(
        &self,
        relay: &str,
    ) -> impl Future<Output = Result<Vec<(OutboxRecord, String)>, Error>> + Send;

    /// What waits in `shard` after `after`.
    fn backlog(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
    ) -> impl Future<Output = Result<OutboxBacklog, Error>> + Send;

    /// Wakes when outbox records may have been written.
    fn outbox_signal(&self) -> AppendSignal;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(key_hash(""), 0x811c_9dc5);
        assert_eq!(key_hash("a"), 0xe40c_292c);
        assert_eq!(key_hash("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn every_key_has_exactly_one_shard() {
        let shards = OutboxShard::split(5).unwrap();
        for n in 0..1000 {
            let key = format!("order-{n}");
            assert_eq!(
                shards.iter().filter(|shard| shard.contains(&key)).count(),
                1
            );
        }
        assert!(OutboxShard::new(3, 3).is_err());
        assert!(OutboxShard::new(0, 0).is_err());
    }
}
