//! What the reads of the store share.

use annals::{RecordedEvent, StreamId};
use deadpool_postgres::Object;
use futures::{StreamExt, stream};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, RowStream};

use crate::database::Database;
use crate::error::backend;
use crate::rows;

/// The row `sql` answers with `params`, if any, on a pooled connection.
pub(super) async fn query_opt(
    db: &Database,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, annals::Error> {
    let client = db.client().await?;
    let statement = client.prepare_cached(sql).await.map_err(backend)?;
    client.query_opt(&statement, params).await.map_err(backend)
}

/// The events of `rows`, holding on to the connection they are read from.
pub(super) fn events_of(
    client: Object,
    rows: std::pin::Pin<Box<RowStream>>,
    stream: StreamId,
) -> impl futures::Stream<Item = Result<RecordedEvent, annals::Error>> + Send + 'static {
    stream::unfold(
        (client, rows, stream),
        |(client, mut rows, stream)| async move {
            let row = rows.next().await?;
            let event = row
                .map_err(backend)
                .and_then(|row| rows::recorded_event(&row, 0, stream.clone()));
            Some((event, (client, rows, stream)))
        },
    )
}
