//! The store as the source of outbox relays: shards by the key's hash,
//! leases as session advisory locks, checkpoints fenced by the lease,
//! pruning and parking.

use std::fmt;
use std::time::Duration;

use annals::{
    AppendSignal, Error, EventStore, GlobalPosition, InFlight, OutboxBacklog, OutboxRecord,
    OutboxShard, OutboxSource,
};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::outbox::records;
use super::read::{bigint, checkpoint as checkpoint_params};
use super::{PgEventStore, rows};
use crate::error::{backend, corrupt, pool};
use crate::lease::SessionLock;
use crate::types::{JsonText, Xid8};

/// The lease of one outbox shard for one relay of a [`PgEventStore`]: a
/// session-level advisory lock held by a connection of its own, outside the
/// pool.
///
/// It holds exactly as long as that session: dropping the lease closes the
/// connection and releases the lock, and a session that dies (the server
/// restarted, the backend was terminated, the network broke) releases it
/// for a standby. Checkpoints are saved on the same connection, so a relay
/// whose session died cannot write one after another relay took over.
///
/// ```no_run
/// use annals::{GlobalPosition, OutboxShard, OutboxSource};
///
/// # async fn run(store: annals_postgres::PgEventStore) -> Result<(), annals::Error> {
/// let shard = OutboxShard::new(0, 4)?;
/// // Waits while another relay named "orders" holds the shard.
/// let lease = store.acquire("orders", shard).await?;
/// let after = store.checkpoint("orders", shard).await?.unwrap_or(GlobalPosition::START);
/// let records = store.read_shard(shard, after, 500).await?;
/// if let Some(last) = records.last() {
///     // ... publish the records, then, once the broker acked them all:
///     store.save_checkpoint(&lease, "orders", shard, last.position).await?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct PgShardLease {
    lock: SessionLock,
    relay: String,
    shard: OutboxShard,
}

impl PgShardLease {
    /// The longest the holder may go on seeing its lease held
    /// ([`OutboxSource::is_held`]) after the server released it, 7 s: the
    /// lease's connection makes a round trip every second and counts the
    /// lease lost (and closes the connection) when one takes over 5 s, and
    /// a second is allowed for the holder's timers and for handing over
    /// what it holds. It assumes the holder's process is not paused for
    /// longer than that second. The relay's default takeover grace adds
    /// this to the producer's delivery timeout.
    pub const LOSS_BOUND: Duration = crate::lease::LOSS_BOUND;

    /// The longest the server keeps the session (and the lease) of a holder
    /// that went silent, a host gone or a network cut, over TCP: its
    /// session has the server send TCP keepalive probes after 2 s without
    /// traffic and drop the connection once 5 s pass without an answer
    /// (`tcp_keepalives_*`, `tcp_user_timeout`), counted from the holder's
    /// last round trip, one a second. A standby then takes the lease within
    /// this, plus its own 250 ms between tries.
    pub const SERVER_DROP_BOUND: Duration = crate::lease::SERVER_DROP_BOUND;

    fn lost(&self) -> Error {
        Error::LeaseLost {
            relay: self.relay.clone(),
            shard: self.shard,
        }
    }

    fn holds(&self) -> bool {
        self.lock.holds()
    }

    /// Refuses to write for another relay or shard than its own, or once
    /// lost.
    fn check(&self, relay: &str, shard: OutboxShard) -> Result<(), Error> {
        if self.relay != relay || self.shard != shard {
            return Err(Error::Config(format!(
                "the lease of relay `{}` shard {} cannot write for relay `{relay}` shard {shard}",
                self.relay, self.shard
            )));
        }
        if !self.holds() {
            return Err(self.lost());
        }
        Ok(())
    }
}

impl fmt::Debug for PgShardLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgShardLease")
            .field("relay", &self.relay)
            .field("shard", &self.shard)
            .field("held", &self.holds())
            .finish()
    }
}

/// The advisory lock's name: one per schema, relay and shard.
fn lease_name(schema: &str, relay: &str, shard: OutboxShard) -> String {
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

/// The shard filter with the shard's numbers written in (a modulo by a
/// parameter could use no index), which a partial index of the shard
/// ([`PgEventStore::create_shard_indexes`]) serves.
fn shard_predicate(shard: OutboxShard) -> String {
    format!(
        "(key_hash::bigint & 4294967295) % {} = {}",
        shard.count(),
        shard.index()
    )
}

/// `template` (a statement of `sql/relay/` with a `{shard_index}` line) for
/// `shard`.
fn for_shard(template: &str, shard: OutboxShard) -> String {
    let line = match shard.count() {
        1 => String::new(),
        _ => format!("AND {}", shard_predicate(shard)),
    };
    template.replace("{shard_index}", &line)
}

/// The name of the partial index of `shard`'s rows.
fn shard_index_name(shard: OutboxShard) -> String {
    format!("outbox_shard_{}_{}_idx", shard.count(), shard.index())
}

impl PgEventStore {
    /// Creates, where missing, a partial index on `(tx_id, position)` for
    /// each of `count` outbox shards, so that a relay with that many shards
    /// reads, counts and prunes its shard's rows without walking the
    /// others'. Without them sharding works the same, but every shard
    /// scans the whole outbox index: with 4 shards on 2 cores a drain took
    /// longer than with one.
    ///
    /// Run it once where the schema is managed (a deployment step, or at
    /// start before the relay), not from every instance at once: the
    /// indexes are built `CONCURRENTLY`, appends go on meanwhile, and two
    /// builds on the same table wait for each other. An index a failed
    /// build left invalid is dropped and built again. Each index costs
    /// appends of outbox messages one more index entry; indexes of a shard
    /// count no longer used can be dropped (`outbox_shard_<count>_<index>_idx`).
    /// A count of 1 needs none.
    ///
    /// ```no_run
    /// # async fn run(store: annals_postgres::PgEventStore) -> Result<(), annals::Error> {
    /// store.create_shard_indexes(4).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_shard_indexes(&self, count: u32) -> Result<(), Error> {
        // Checks the count as a relay's shards would.
        OutboxShard::new(0, count)?;
        if count == 1 {
            return Ok(());
        }
        let client = self.inner.pool.get().await.map_err(pool)?;
        let schema = self.inner.schema.quoted();
        for index in 0..count {
            let shard = OutboxShard::new(index, count)?;
            let name = shard_index_name(shard);
            let valid: Option<bool> = client
                .query_one(
                    "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))",
                    &[&format!("{schema}.\"{name}\"")],
                )
                .await
                .and_then(|row| row.try_get(0))
                .map_err(backend)?;
            match valid {
                Some(true) => continue,
                Some(false) => {
                    tracing::warn!(index = %name, "dropping an invalid shard index to build it again");
                    client
                        .batch_execute(&format!(
                            "DROP INDEX CONCURRENTLY IF EXISTS {schema}.\"{name}\""
                        ))
                        .await
                        .map_err(backend)?;
                }
                None => {}
            }
            client
                .batch_execute(&format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{name}\" ON {schema}.outbox (tx_id, position) WHERE {}",
                    shard_predicate(shard)
                ))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Takes the session advisory lock named `key` on a connection of its
    /// own, opened with the store's settings; waits while another session
    /// holds it.
    pub(crate) async fn session_lock(&self, key: &str) -> Result<SessionLock, Error> {
        SessionLock::acquire(&self.inner.listen_config, self.inner.tls.clone(), key).await
    }

    /// The checkpoint `name` of the checkpoints table, `None` when there is
    /// none: the relays' and the projections'.
    pub(crate) async fn named_checkpoint(
        &self,
        name: &str,
    ) -> Result<Option<GlobalPosition>, Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.relay.checkpoint)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&statement, &[&name])
            .await
            .map_err(backend)?;
        row.map(|row| {
            let Xid8(commit) = row.try_get(0).map_err(backend)?;
            let position: i64 = row.try_get(1).map_err(backend)?;
            let sequence = u64::try_from(position)
                .map_err(|_| corrupt(format!("stored checkpoint position {position}")))?;
            Ok(GlobalPosition::new(commit, sequence))
        })
        .transpose()
    }
}

impl OutboxSource for PgEventStore {
    type Lease = PgShardLease;

    async fn acquire(&self, relay: &str, shard: OutboxShard) -> Result<PgShardLease, Error> {
        let name = lease_name(self.inner.schema.as_str(), relay, shard);
        Ok(PgShardLease {
            lock: self.session_lock(&name).await?,
            relay: relay.to_owned(),
            shard,
        })
    }

    fn is_held(&self, lease: &PgShardLease) -> bool {
        lease.holds()
    }

    /// [`PgShardLease::LOSS_BOUND`].
    fn lease_loss_bound(&self) -> Duration {
        PgShardLease::LOSS_BOUND
    }

    async fn in_flight(&self, relay: &str, shard: OutboxShard) -> Result<InFlight, Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.relay.in_flight)
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
        lease: &PgShardLease,
        relay: &str,
        shard: OutboxShard,
        possible: bool,
    ) -> Result<(), Error> {
        lease.check(relay, shard)?;
        // On the lease's own connection, as the checkpoint: a holder whose
        // session died cannot clear what the next holder must wait for.
        let written = lease
            .lock
            .client()
            .execute(
                &self.inner.sql.relay.set_in_flight,
                &[&checkpoint_name(relay, shard), &possible],
            )
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(_) if !lease.holds() => Err(lease.lost()),
            Err(error) => Err(backend(error)),
        }
    }

    async fn read_shard(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, Error> {
        if shard == OutboxShard::ALL {
            return self.outbox_records(after, limit).await;
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql.relay;
        let rows = self
            .page(
                &for_shard(&sql.read_shard, shard),
                &for_shard(&sql.held_back_shard, shard),
                after,
                limit,
            )
            .await?;
        records(&rows)
    }

    async fn checkpoint(
        &self,
        relay: &str,
        shard: OutboxShard,
    ) -> Result<Option<GlobalPosition>, Error> {
        self.named_checkpoint(&checkpoint_name(relay, shard)).await
    }

    async fn save_checkpoint(
        &self,
        lease: &PgShardLease,
        relay: &str,
        shard: OutboxShard,
        position: GlobalPosition,
    ) -> Result<(), Error> {
        lease.check(relay, shard)?;
        let (commit, sequence) = checkpoint_params(position);
        let name = checkpoint_name(relay, shard);
        // On the lease's own connection: once its session is gone (and with
        // it the lock another relay may now hold) this cannot write.
        let saved = lease
            .lock
            .client()
            .execute(
                &self.inner.sql.relay.save_checkpoint,
                &[&name, &commit, &sequence],
            )
            .await;
        match saved {
            Ok(_) => Ok(()),
            Err(_) if !lease.holds() => Err(lease.lost()),
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
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&for_shard(&self.inner.sql.relay.prune, shard))
            .await
            .map_err(backend)?;
        let (commit, sequence) = checkpoint_params(through);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        client
            .execute(&statement, &[&commit, &sequence, &limit])
            .await
            .map_err(backend)
    }

    async fn park(&self, relay: &str, record: &OutboxRecord, reason: &str) -> Result<(), Error> {
        let message = &record.message;
        let event_version = i32::try_from(message.event_version).map_err(|_| {
            Error::Config(format!(
                "message {} has schema version {}, larger than {}",
                message.message_id,
                message.event_version,
                i32::MAX
            ))
        })?;
        let metadata =
            serde_json::to_string(&message.metadata).map_err(|source| Error::Encode {
                what: format!("the metadata of message {}", message.message_id),
                source,
            })?;
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.relay.park)
            .await
            .map_err(backend)?;
        let (commit, sequence) = checkpoint_params(record.position);
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
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.relay.parked)
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
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&for_shard(&self.inner.sql.relay.backlog, shard))
            .await
            .map_err(backend)?;
        let (commit, sequence) = checkpoint_params(after);
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
        self.append_signal()
    }
}
