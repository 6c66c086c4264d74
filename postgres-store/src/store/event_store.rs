//! The store's contract: [`EventStore`] on PostgreSQL.

use annals::{
    AppendOutcome, AppendRequest, AppendSignal, Error, EventStore, EventStream, FromSnapshot,
    GlobalBacklog, GlobalPosition, RecordedEvent, Snapshot, StreamId,
};
use futures::{StreamExt, TryStreamExt, stream};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::PgEventStore;
use super::call::Calls;
use super::group::Entry;
use super::read::{events_of, query_opt};
use crate::error::{backend, corrupt};
use crate::horizon::{oldest_blocking, read_below, report};
use crate::rows;
use crate::types::{bigint, position_params};

impl EventStore for PgEventStore {
    /// A lone append goes at once when an append lane is free and nothing
    /// waits; else it waits for the next free lane and goes in a group with
    /// whatever else waits (see `group/`).
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        let (answer, start_lane) = match self.inner.lanes.enter(request) {
            Entry::Alone(request) => {
                // The caller is the lane while its append runs; the lane
                // passes to a task when appends queued meanwhile (also when
                // the caller stops waiting).
                let _lane = self.lane_in_use();
                return self.append_alone(&request).await;
            }
            Entry::Queued { answer, start_lane } => (answer, start_lane),
        };
        if start_lane {
            tokio::spawn(self.clone().run_lane());
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::backend(
                "postgres",
                true,
                "the append's lane ended before it had an outcome",
            ))
        })
    }

    /// One transaction, sent in one round trip with a statement per stream.
    /// A command that ran already is found when its statement fails; the
    /// unit is then tried again without it.
    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, Error> {
        match requests.as_slice() {
            [] => return Ok(Vec::new()),
            [request] => return Ok(vec![self.append_alone(request).await?]),
            _ => {}
        }
        let calls = Calls::new(&requests, &self.inner.db.limits, self.notify_channel())?;
        self.append_unit(&calls).await
    }

    /// The rows come from the server as they are read: the pooled
    /// connection stays with the stream until it ends or is dropped, and
    /// the driver's bounded buffer keeps the server from sending far ahead
    /// of the reader.
    fn read_stream(&self, stream: StreamId, from_version: u64) -> EventStream {
        let db = std::sync::Arc::clone(&self.inner.db);
        let rows = async move {
            let client = db.client().await?;
            let statement = client
                .prepare_cached(&db.sql.read.stream)
                .await
                .map_err(backend)?;
            let from = bigint(from_version);
            let rows = client
                .query_raw(&statement, [&stream.as_str() as &(dyn ToSql + Sync), &from])
                .await
                .map_err(backend)?;
            Ok::<_, Error>(events_of(client, Box::pin(rows), stream))
        };
        Box::pin(stream::once(rows).try_flatten())
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let db = &self.inner.db;
        let read = &db.sql.read;
        let rows = read_below(db, &read.all, &read.held_back_events, after, limit).await?;
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(rows.len());
        for row in &rows {
            let stream = rows::stream_id_column(row, 0, events.last().map(|event| &event.stream))?;
            events.push(rows::recorded_event(row, 1, stream)?);
        }
        Ok(events)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, Error> {
        let db = &self.inner.db;
        let row = query_opt(db, &db.sql.read.stream_version, &[&stream.as_str()]).await?;
        row.map(|row| {
            let version: i64 = row.try_get(0).map_err(backend)?;
            u64::try_from(version).map_err(|_| corrupt(format!("stored version {version}")))
        })
        .transpose()
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        let db = &self.inner.db;
        let row = query_opt(db, &db.sql.read.snapshot, &[&stream.as_str()]).await?;
        row.map(|row| rows::snapshot(&row, stream)).transpose()
    }

    /// The newest snapshot and the events after it, from one statement: its
    /// first row is the snapshot's, if the stream has one.
    async fn read_from_snapshot(&self, stream: StreamId) -> Result<FromSnapshot, Error> {
        let client = self.inner.db.client().await?;
        let statement = client
            .prepare_cached(&self.inner.db.sql.read.from_snapshot)
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

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, Error> {
        let db = &self.inner.db;
        let row = query_opt(db, &db.sql.read.command_outcome, &[&command_id]).await?;
        row.map(|row| rows::command_outcome(&row)).transpose()
    }

    fn append_signal(&self) -> AppendSignal {
        self.inner.db.notifications.subscribe()
    }

    /// The events after `after` below the horizon, counted up to `limit`,
    /// and the age of the transaction holding the horizon back.
    async fn global_backlog(
        &self,
        after: GlobalPosition,
        limit: u64,
    ) -> Result<GlobalBacklog, Error> {
        let db = &self.inner.db;
        let client = db.client().await?;
        let statement = client
            .prepare_cached(&db.sql.read.backlog)
            .await
            .map_err(backend)?;
        let (commit, sequence) = position_params(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let row = client
            .query_one(&statement, &[&commit, &sequence, &limit])
            .await
            .map_err(backend)?;
        let events: i64 = row.try_get(0).map_err(backend)?;
        let blocking = oldest_blocking(&client, &db.sql.horizon.oldest_blocking_transaction)
            .await
            .map_err(backend)?;
        report(blocking.as_ref(), db.horizon.warning);
        Ok(GlobalBacklog::new(
            u64::try_from(events).unwrap_or_default(),
            events >= limit,
            blocking.map(|transaction| transaction.age),
        ))
    }
}
