//! The messages of the suite, filling an outbox with them, and the raw
//! limit of reading and deleting an outbox.

use std::error::Error as StdError;
use std::time::Instant;

use annals::chrono::Utc;
use annals::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, Metadata, NewEvent, OutboxMessage,
    OutboxRecord, Payload, StreamId,
};
use annals_postgres::{PgEventStore, Xid8};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_postgres::types::{FromSql, Type};
use uuid::Uuid;

use super::{APPEND_BATCH, DEADLINE, DELETE_BATCH, KEYS, MESSAGES, READ_PAGE, render};
use crate::database::Database;

/// The payload of every drained message.
#[derive(Debug, Serialize)]
struct BenchTick<'a> {
    n: u64,
    account: &'a str,
}

/// The `n`th message of a run to `topic`: one of [`KEYS`] keys, a small
/// JSON payload and a correlation id, as an integration event has.
pub(super) fn message(topic: &str, n: u64) -> Result<OutboxMessage, String> {
    let account = format!("account-{}", n % KEYS);
    Ok(OutboxMessage {
        message_id: Uuid::now_v7(),
        topic: topic.to_owned(),
        payload: Payload::encode(&BenchTick {
            n,
            account: &account,
        })
        .map_err(|error| error.to_string())?,
        stream: StreamId::new(&account).map_err(|error| error.to_string())?,
        key: account,
        event_type: "BenchTick".into(),
        event_version: 1,
        stream_version: n / KEYS + 1,
        metadata: Metadata {
            correlation_id: Some(Uuid::now_v7()),
            ..Metadata::default()
        },
    })
}

/// The `n`th message as the relay reads it back: what the raw producer
/// sends, so that it carries the same headers.
pub(super) fn record(topic: &str, n: u64) -> Result<OutboxRecord, String> {
    Ok(OutboxRecord {
        position: GlobalPosition::new(1_000 + n / APPEND_BATCH, n + 1),
        recorded_at: Utc::now(),
        message: message(topic, n)?,
    })
}

/// Appends `count` messages to `topic` to the outbox of `store`,
/// [`APPEND_BATCH`] to an append (each with one event), two appends at a
/// time.
pub(super) async fn fill(store: &PgEventStore, topic: &str, count: u64) -> Result<(), String> {
    let started = Instant::now();
    let run = fastrand::u32(..);
    futures::stream::iter((0..count.div_ceil(APPEND_BATCH)).map(|batch| {
        let store = store.clone();
        async move {
            let stream = StreamId::new(format!("relay-fill-{run:08x}-{batch}"))
                .map_err(|error| error.to_string())?;
            let event = NewEvent::raw(
                "BenchFilled",
                1,
                Payload::encode(&batch).map_err(|error| error.to_string())?,
                Metadata::default(),
            );
            let mut request = AppendRequest::new(stream, ExpectedVersion::NoStream).event(event);
            for n in batch * APPEND_BATCH..((batch + 1) * APPEND_BATCH).min(count) {
                request = request.outbox_message(message(topic, n)?);
            }
            store
                .append(request)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        }
    }))
    .buffer_unordered(2)
    .try_collect::<()>()
    .await?;
    eprintln!(
        "filled an outbox with {count} messages in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Messages per second one connection reads from an outbox of
/// [`MESSAGES`] rows, in pages of [`READ_PAGE`] ordered by (tx_id,
/// position) after the last one read, while another deletes what was read
/// in batches of [`DELETE_BATCH`] by position; until all are deleted.
pub(super) async fn raw_read_delete(database: &Database) -> Result<f64, String> {
    let schema = database.new_schema("relay_raw");
    let store = PgEventStore::connect(
        database
            .config(&schema)
            .map_err(|error| error.to_string())?,
    )
    .await
    .map_err(|error| error.to_string())?;
    fill(&store, "annals-bench-relay-raw", MESSAGES).await?;
    drop(store);

    let text = |error: tokio_postgres::Error| error.to_string();
    let reader = database.connect().await.map_err(text)?;
    let deleter = database.connect().await.map_err(text)?;
    let select = reader
        .prepare(&render(
            include_str!("../../../sql/outbox_read_page.sql"),
            &schema,
        ))
        .await
        .map_err(text)?;
    let delete = deleter
        .prepare(&render(
            include_str!("../../../sql/outbox_delete.sql"),
            &schema,
        ))
        .await
        .map_err(text)?;

    let started = Instant::now();
    let (pages, mut taken) = tokio::sync::mpsc::channel::<Vec<i64>>(8);
    let deleting = tokio::spawn(async move {
        let mut pending: Vec<i64> = Vec::with_capacity(DELETE_BATCH + READ_PAGE);
        let mut deleted = 0;
        loop {
            let page = taken.recv().await;
            let last = page.is_none();
            pending.extend(page.into_iter().flatten());
            if pending.len() >= DELETE_BATCH || (last && !pending.is_empty()) {
                deleted += deleter.execute(&delete, &[&pending]).await?;
                pending.clear();
            }
            if last {
                return Ok::<u64, tokio_postgres::Error>(deleted);
            }
        }
    });
    let (mut after, mut read, mut bytes) = ((Xid8(0), 0_i64), 0_u64, 0_usize);
    loop {
        let rows = reader
            .query(&select, &[&after.0, &after.1, &(READ_PAGE as i64)])
            .await
            .map_err(text)?;
        let Some(last) = rows.last() else { break };
        after = (
            last.try_get(0).map_err(text)?,
            last.try_get(1).map_err(text)?,
        );
        let mut positions = Vec::with_capacity(rows.len());
        for row in &rows {
            positions.push(row.try_get::<_, i64>(1).map_err(text)?);
            // Take every column off the wire, as a relay does.
            for column in 0..row.len() {
                bytes += row.try_get::<_, Raw<'_>>(column).map_err(text)?.0.len();
            }
        }
        read += rows.len() as u64;
        if pages.send(positions).await.is_err() {
            break;
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("the raw reader read {read} rows in {DEADLINE:?}"));
        }
    }
    drop(pages);
    let deleted = deleting
        .await
        .map_err(|error| error.to_string())?
        .map_err(text)?;
    let elapsed = started.elapsed();
    std::hint::black_box(bytes);
    if read != MESSAGES || deleted != MESSAGES {
        return Err(format!(
            "the raw reader read {read} and deleted {deleted} of {MESSAGES} rows"
        ));
    }
    eprintln!("raw Postgres: read and deleted {MESSAGES} outbox rows in {elapsed:?}");
    Ok(MESSAGES as f64 / elapsed.as_secs_f64())
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// Any column's value as the bytes that came over the wire.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
