//! Reading the outbox in the same gap-free order as the global stream.

use annals::{GlobalPosition, OutboxRecord};

use super::{PgEventStore, rows};

impl PgEventStore {
    pub(super) async fn outbox_records(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, annals::Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let rows = self
            .page(&sql.read_outbox, &sql.held_back_outbox, after, limit)
            .await?;
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
