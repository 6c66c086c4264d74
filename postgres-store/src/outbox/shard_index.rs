//! The partial indexes that let each outbox shard be read without walking
//! the other shards' rows.

use annals::{Error, OutboxShard};

use super::PgOutbox;
use crate::error::backend;

/// The name of the partial index of `shard`'s rows.
fn index_name(shard: OutboxShard) -> String {
    format!("outbox_shard_{}_{}_idx", shard.count(), shard.index())
}

impl PgOutbox {
    /// Creates, where missing, a partial index on `(tx_id, position)` for
    /// each of `count` outbox shards, so that a relay with that many shards
    /// reads, counts and prunes its shard's rows without walking the
    /// others'. Without them sharding works the same, but every shard
    /// scans the whole outbox index.
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
    /// annals_postgres::PgOutbox::new(&store).create_shard_indexes(4).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_shard_indexes(&self, count: u32) -> Result<(), Error> {
        // Checks the count as a relay's shards would.
        OutboxShard::new(0, count)?;
        if count == 1 {
            return Ok(());
        }
        let client = self.db.client().await?;
        let relay = &self.db.sql.relay;
        let schema = self.db.schema.quoted();
        for index in 0..count {
            let shard = OutboxShard::new(index, count)?;
            let name = index_name(shard);
            let valid: Option<bool> = client
                .query_one(&relay.shard_index_valid, &[&format!("{schema}.\"{name}\"")])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(backend)?;
            match valid {
                Some(true) => continue,
                Some(false) => {
                    tracing::warn!(index = %name, "dropping an invalid shard index to build it again");
                    client
                        .batch_execute(&relay.drop_shard_index(&name))
                        .await
                        .map_err(backend)?;
                }
                None => {}
            }
            client
                .batch_execute(&relay.create_shard_index(shard, &name))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }
}
