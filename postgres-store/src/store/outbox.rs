//! Reading the outbox in the same gap-free order as the global stream.

use annals::{GlobalPosition, OutboxReader, OutboxRecord, OutboxShard};

use super::relay::for_shard;

use super::{PgEventStore, rows};

impl OutboxReader for PgEventStore {
    async fn read_outbox(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, annals::Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = if shard == OutboxShard::ALL {
            let sql = &self.inner.sql;
            self.page(&sql.read_outbox, &sql.held_back_outbox, after, limit)
                .await?
        } else {
            let sql = &self.inner.sql.relay;
            self.page(
                &for_shard(&sql.read_shard, shard),
                &for_shard(&sql.held_back_shard, shard),
                after,
                limit,
            )
            .await?
        };
        records(&rows)
    }
}

/// The records of `rows` in the columns of `read_outbox.sql`.
pub(super) fn records(rows: &[tokio_postgres::Row]) -> Result<Vec<OutboxRecord>, annals::Error> {
    let mut records: Vec<OutboxRecord> = Vec::with_capacity(rows.len());
    for row in rows {
        let previous = records.last().map(|record| &record.message.stream);
        records.push(rows::outbox_record(row, previous)?);
    }
    Ok(records)
}
