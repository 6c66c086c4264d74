//! Reading streams, the global stream, snapshots and command outcomes.

use std::time::Duration;

use annals::{
    AppendOutcome, EventStream, FromSnapshot, GlobalPosition, RecordedEvent, Snapshot, StreamId,
};
use deadpool_postgres::Object;
use futures::{StreamExt, TryStreamExt, stream};
use tokio_postgres::RowStream;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PgEventStore, rows};
use crate::error::{backend, pool};
use crate::types::Xid8;

/// `u64` positions and versions as the `bigint` columns hold them: values
/// past `i64::MAX` cannot be stored, so they read as "after everything".
pub(super) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A checkpoint as the statement parameters `($1, $2)`.
pub(super) fn checkpoint(after: GlobalPosition) -> (Xid8, i64) {
    (Xid8(after.commit), bigint(after.sequence))
}

impl PgEventStore {
    /// The rows come from the server as they are read: the pooled connection
    /// stays with the stream until it ends or is dropped, and the driver's
    /// bounded buffer keeps the server from sending far ahead of the reader.
    pub(super) fn stream_events(&self, stream: StreamId, from_version: u64) -> EventStream {
        let store = self.clone();
        let rows = async move {
            let client = store.inner.pool.get().await.map_err(pool)?;
            let statement = client
                .prepare_cached(&store.inner.sql.read_stream)
                .await
                .map_err(backend)?;
            let from = bigint(from_version);
            let rows = client
                .query_raw(&statement, [&stream.as_str() as &(dyn ToSql + Sync), &from])
                .await
                .map_err(backend)?;
            Ok::<_, annals::Error>(events_of(client, Box::pin(rows), stream))
        };
        Box::pin(stream::once(rows).try_flatten())
    }

    /// The newest snapshot and the events after it, from one statement: its
    /// first row is the snapshot's, if the stream has one.
    pub(super) async fn events_from_snapshot(
        &self,
        stream: StreamId,
    ) -> Result<FromSnapshot, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.read_from_snapshot)
            .await
            .map_err(backend)?;
        let mut rows = Box::pin(
            client
                .query_raw(&statement, [&stream.as_str() as &(dyn ToSql + Sync)])
                .await
                .map_err(backend)?,
        );
        let Some(row) = rows.next().await.transpose().map_err(backend)? else {
            // Neither snapshot nor events; the rows are over (and a row
            // stream must not be polled again after its end).
            return Ok(FromSnapshot {
                snapshot: None,
                events: Box::pin(stream::empty()),
            });
        };
        let state_version: Option<i32> =
            row.try_get(rows::SNAPSHOT_STATE_VERSION).map_err(backend)?;
        let (snapshot, first_event) = match state_version {
            Some(_) => (Some(rows::snapshot_row(&row, &stream)?), None),
            None => (None, Some(rows::recorded_event(&row, 0, stream.clone()))),
        };
        let events = stream::iter(first_event).chain(events_of(client, rows, stream));
        Ok(FromSnapshot {
            snapshot,
            events: Box::pin(events),
        })
    }

    pub(super) async fn global_events(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, annals::Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let rows = self
            .page(&sql.read_all, &sql.held_back_events, after, limit)
            .await?;
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(rows.len());
        for row in &rows {
            let stream = rows::stream_id_column(row, 0, events.last().map(|event| &event.stream))?;
            events.push(rows::recorded_event(row, 1, stream)?);
        }
        Ok(events)
    }

    pub(super) async fn version_of(&self, stream: &StreamId) -> Result<Option<u64>, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.stream_version)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&statement, &[&stream.as_str()])
            .await
            .map_err(backend)?;
        row.map(|row| {
            let version: i64 = row.try_get(0).map_err(backend)?;
            u64::try_from(version)
                .map_err(|_| crate::error::corrupt(format!("stored version {version}")))
        })
        .transpose()
    }

    pub(super) async fn snapshot_of(
        &self,
        stream: &StreamId,
    ) -> Result<Option<Snapshot>, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.load_snapshot)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&statement, &[&stream.as_str()])
            .await
            .map_err(backend)?;
        row.map(|row| rows::snapshot(&row, stream)).transpose()
    }

    pub(super) async fn outcome_of(
        &self,
        command_id: Uuid,
    ) -> Result<Option<AppendOutcome>, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.command_outcome)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&statement, &[&command_id])
            .await
            .map_err(backend)?;
        row.map(|row| rows::command_outcome(&row)).transpose()
    }
}

impl PgEventStore {
    /// A page of the global stream or the outbox after `after`: `page` with
    /// the parameters `(tx_id, position, limit)`; `held_back` takes none.
    /// When the page is short and the store may wait
    /// (`Config::with_horizon_wait`), waits for the transactions that hide
    /// rows committed already (`held_back` names the youngest of those), and
    /// reads once more.
    pub(super) async fn page(
        &self,
        page: &str,
        held_back: &str,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<tokio_postgres::Row>, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client.prepare_cached(page).await.map_err(backend)?;
        let (commit, sequence) = checkpoint(after);
        let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 3] = [&commit, &sequence, &limit_param];
        let rows = client.query(&statement, &params).await.map_err(backend)?;
        let wait = self.inner.horizon_wait;
        if rows.len() >= limit || wait.is_zero() {
            return Ok(rows);
        }
        let held_back = client.prepare_cached(held_back).await.map_err(backend)?;
        let youngest: Option<Xid8> = client
            .query_one(&held_back, &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        let Some(Xid8(youngest)) = youngest else {
            // Nothing is hidden now: the horizon moved between the two
            // statements, so what was hidden is readable.
            return client.query(&statement, &params).await.map_err(backend);
        };
        let deadline = tokio::time::Instant::now() + wait;
        let horizon = client
            .prepare_cached(self.inner.sql.horizon)
            .await
            .map_err(backend)?;
        let mut pause = Duration::from_millis(1);
        loop {
            let Xid8(now) = client
                .query_one(&horizon, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(backend)?;
            if now > youngest {
                break;
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(rows);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        client.query(&statement, &params).await.map_err(backend)
    }
}

/// The events of `rows`, holding on to the connection they are read from.
fn events_of(
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
