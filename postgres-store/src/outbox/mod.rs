//! The outbox as relays read it: shards by the key's hash, leases as
//! session advisory locks, checkpoints fenced by the lease, pruning and
//! parking.

mod shard_index;

use std::sync::Arc;
use std::time::Duration;

use annals::{
    AppendSignal, Error, GlobalPosition, InFlight, OutboxBacklog, OutboxReader, OutboxRecord,
    OutboxShard, OutboxSource,
};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use crate::database::Database;
use crate::error::backend;
use crate::horizon::read_below;
use crate::lease::PgLease;
use crate::types::{JsonText, bigint, integer_version, position_params};
use crate::{PgEventStore, rows};

/// The outbox of a [`PgEventStore`]'s schema as relays see it: the
/// [`OutboxSource`] of `annals-kafka`'s relay. Cheap to clone; shares the
/// store's pool.
///
/// - Outbox rows carry the hash of their key (`annals::key_hash`), so that a
///   shard is read, counted and pruned alone, in the outbox's gap-free
///   `(tx_id, position)` order ([`PgOutbox::create_shard_indexes`] gives
///   each shard an index of its own).
/// - One relay per shard holds its [`PgLease`], a session advisory lock on
///   a connection of its own, noticed lost within
///   [`PgLease::LOSS_BOUND`] when that session dies, and dropped by the
///   server within [`PgLease::SERVER_DROP_BOUND`] of its holder going
///   silent.
/// - Checkpoints (`relay:{name}:{index}/{count}` in `checkpoints`) are
///   written on the lease's connection and only forward, so that a relay
///   that lost its lease cannot write one
///   ([`annals::Error::LeaseLost`]); so is whether the shard's last holder
///   may still have records in flight (`relay_in_flight`), which tells the
///   next holder whether to wait before publishing.
/// - Records the broker refused for good are kept in `outbox_parked` with
///   the reason.
///
/// ```no_run
/// use annals::{GlobalPosition, OutboxReader, OutboxShard, OutboxSource};
/// use annals_postgres::PgOutbox;
///
/// # async fn run(store: annals_postgres::PgEventStore) -> Result<(), annals::Error> {
/// let outbox = PgOutbox::new(&store);
/// let shard = OutboxShard::new(0, 4)?;
/// // Waits while another relay named "orders" holds the shard.
/// let lease = outbox.acquire("orders", shard).await?;
/// let after = outbox.checkpoint("orders", shard).await?.unwrap_or(GlobalPosition::START);
/// let records = outbox.read_outbox(shard, after, 500).await?;
/// if let Some(last) = records.last() {
///     // ... publish the records, then, once the broker acked them all:
///     outbox.save_checkpoint(&lease, "orders", shard, last.position).await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgOutbox {
    db: Arc<Database>,
}

impl PgOutbox {
    /// The outbox in `store`'s schema, sharing its pool. The tables are
    /// created by the store's migrations.
    pub fn new(store: &PgEventStore) -> Self {
        PgOutbox {
            db: Arc::clone(store.database()),
        }
    }
}

/// The lease's name: one per schema, relay and shard.
fn lease_key(schema: &str, relay: &str, shard: OutboxShard) -> String {
    format!(
        "annals.relay.{schema}.{relay}.{}/{}",
        shard.index(),
        shard.count()
    )
}

/// The name of the relay's checkpoint of `shard` in the checkpoints table.
fn checkpoint_name(relay: &str, shard: OutboxShard) -> String {
    format!("relay:{relay}:{}/{}", shard.index(), shard.count())
}

impl PgOutbox {
    /// Refuses to write with `lease` for another relay or shard than its
    /// own, or once lost.
    fn check(&self, lease: &PgLease, relay: &str, shard: OutboxShard) -> Result<(), Error> {
        if lease.key() != lease_key(self.db.schema.as_str(), relay, shard) {
            return Err(Error::Config(format!(
                "the lease of {} cannot write for relay `{relay}` shard {shard}",
                lease.holder()
            )));
        }
        if !lease.holds() {
            return Err(lease_lost(relay, shard));
        }
        Ok(())
    }
}

fn lease_lost(relay: &str, shard: OutboxShard) -> Error {
    Error::LeaseLost {
        relay: relay.to_owned(),
        shard,
    }
}

impl OutboxReader for PgOutbox {
    async fn read_outbox(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.db.sql.relay.shard(shard);
        let rows = read_below(&self.db, &sql.read, &sql.held_back, after, limit).await?;
        let mut records: Vec<OutboxRecord> = Vec::with_capacity(rows.len());
        for row in &rows {
            let previous = records.last().map(|record| &record.message.stream);
            records.push(rows::outbox_record(row, previous)?);
        }
        Ok(records)
    }
}

impl OutboxSource for PgOutbox {
    type Lease = PgLease;

    async fn acquire(&self, relay: &str, shard: OutboxShard) -> Result<PgLease, Error> {
        let key = lease_key(self.db.schema.as_str(), relay, shard);
        PgLease::acquire(&self.db, key, format!("relay `{relay}` shard {shard}")).await
    }

    fn is_held(&self, lease: &PgLease) -> bool {
        lease.holds()
    }

    /// [`PgLease::LOSS_BOUND`].
    fn lease_loss_bound(&self) -> Duration {
        PgLease::LOSS_BOUND
    }

    async fn in_flight(&self, relay: &str, shard: OutboxShard) -> Result<InFlight, Error> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.relay.in_flight)
            .await
            .map_err(backend)?;
        let row = client
            .query_one(&statement, &[&checkpoint_name(relay, shard)])
            .await
            .map_err(backend)?;
        let possible: Option<bool> = row.try_get(0).map_err(backend)?;
        let checkpointed: bool = row.try_get(1).map_err(backend)?;
        Ok(match (possible, checkpointed) {
            (Some(true), _) | (None, true) => InFlight::Possible,
            (Some(false), _) => InFlight::Nothing,
            (None, false) => InFlight::NeverLed,
        })
    }

    async fn set_in_flight(
        &self,
        lease: &PgLease,
        relay: &str,
        shard: OutboxShard,
        possible: bool,
    ) -> Result<(), Error> {
        self.check(lease, relay, shard)?;
        // On the lease's own connection, as the checkpoint: a holder whose
        // session died cannot clear what the next holder must wait for.
        let written = lease
            .client()
            .execute(
                &self.db.sql.relay.set_in_flight,
                &[&checkpoint_name(relay, shard), &possible],
            )
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(_) if !lease.holds() => Err(lease_lost(relay, shard)),
            Err(error) => Err(backend(error)),
        }
    }

    async fn checkpoint(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> Result<Option<GlobalPosition>, Error> {
        self.db.checkpoint(&checkpoint_name(relay, shard)).await
    }

    async fn save_checkpoint(
        &self,
        lease: &PgLease,
        relay: &str,
        shard: OutboxShard,
        position: GlobalPosition,
    ) -> Result<(), Error> {
        self.check(lease, relay, shard)?;
        let (commit, sequence) = position_params(position);
        let name = checkpoint_name(relay, shard);
        // On the lease's own connection: once its session is gone (and with
        // it the lock another relay may now hold) this cannot write.
        let saved = lease
            .client()
            .execute(
                &self.db.sql.relay.save_checkpoint,
                &[&name, &commit, &sequence],
            )
            .await;
        match saved {
            Ok(_) => Ok(()),
            Err(_) if !lease.holds() => Err(lease_lost(relay, shard)),
            Err(error) => Err(backend(error)),
        }
    }

    async fn prune(
        &self,
        shard: OutboxShard,
        through: GlobalPosition,
        limit: usize,
    ) -> Result<u64, Error> {
        if limit == 0 {
            return Ok(0);
        }
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.relay.shard(shard).prune)
            .await
            .map_err(backend)?;
        let (commit, sequence) = position_params(through);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .execute(&statement, &[&commit, &sequence, &limit])
            .await
            .map_err(backend)
    }

    async fn park(&self, relay: &str, record: &OutboxRecord, reason: &str) -> Result<(), Error> {
        let message = &record.message;
        let event_version = integer_version(
            message.event_version,
            &format_args!("message {}", message.message_id),
        )?;
        let metadata =
            serde_json::to_string(&message.metadata).map_err(|source| Error::Encode {
                what: format!("the metadata of message {}", message.message_id),
                source,
            })?;
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.relay.park)
            .await
            .map_err(backend)?;
        let (commit, sequence) = position_params(record.position);
        let stream_version = bigint(message.stream_version);
        let params: [&(dyn ToSql + Sync); 14] = [
            &relay,
            &commit,
            &sequence,
            &record.recorded_at,
            &message.message_id,
            &message.topic,
            &message.key,
            &message.event_type,
            &event_version,
            &JsonText(message.payload.get()),
            &message.stream.as_str(),
            &stream_version,
            &JsonText(metadata.as_str()),
            &reason,
        ];
        client.execute(&statement, &params).await.map_err(backend)?;
        Ok(())
    }

    async fn parked(&self, relay: &str) -> Result<Vec<(OutboxRecord, String)>, Error> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.relay.parked)
            .await
            .map_err(backend)?;
        let rows = client.query(&statement, &[&relay]).await.map_err(backend)?;
        rows.iter()
            .map(|row| {
                let reason: String = row.try_get(12).map_err(backend)?;
                Ok((rows::outbox_record(row, None)?, reason))
            })
            .collect()
    }

    async fn backlog(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
    ) -> Result<OutboxBacklog, Error> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.relay.shard(shard).backlog)
            .await
            .map_err(backend)?;
        let (commit, sequence) = position_params(after);
        let row = client
            .query_one(&statement, &[&commit, &sequence])
            .await
            .map_err(backend)?;
        let messages: i64 = row.try_get(0).map_err(backend)?;
        let oldest: Option<DateTime<Utc>> = row.try_get(1).map_err(backend)?;
        Ok(OutboxBacklog {
            messages: u64::try_from(messages).unwrap_or_default(),
            oldest,
        })
    }

    fn outbox_signal(&self) -> AppendSignal {
        self.db.notifications.subscribe()
    }
}
