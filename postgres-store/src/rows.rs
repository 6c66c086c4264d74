//! Rows into the contract's types. Column orders are those of the
//! statements in `sql/`.

use annals::{
    AppendOutcome, GlobalPosition, OutboxMessage, OutboxRecord, Payload, RecordedEvent, Snapshot,
    StreamId,
};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::{backend, corrupt};
use crate::types::{JsonText, Xid8, metadata_from_columns};

fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, annals::Error> {
    row.try_get(index).map_err(backend)
}

fn unsigned(value: i64, what: &str) -> Result<u64, annals::Error> {
    u64::try_from(value).map_err(|_| corrupt(format!("stored {what} {value} is negative")))
}

fn position(row: &Row, tx_id: usize, position: usize) -> Result<GlobalPosition, annals::Error> {
    let Xid8(commit) = column(row, tx_id)?;
    Ok(GlobalPosition::new(
        commit,
        unsigned(column(row, position)?, "position")?,
    ))
}

fn payload(row: &Row, index: usize) -> Result<Payload, annals::Error> {
    let JsonText(text) = column::<JsonText<&str>>(row, index)?;
    Payload::from_json(text.to_owned())
        .map_err(|error| corrupt(format!("stored JSON does not parse: {error}")))
}

fn stream_id(text: &str) -> Result<StreamId, annals::Error> {
    StreamId::new(text).map_err(|error| corrupt(format!("stored stream id: {error}")))
}

/// The stream id in column `index`, sharing the previous row's when it is
/// the same stream (pages of the global stream often are).
pub(crate) fn stream_id_column(
    row: &Row,
    index: usize,
    previous: Option<&StreamId>,
) -> Result<StreamId, annals::Error> {
    let text: &str = column(row, index)?;
    match previous {
        Some(previous) if previous.as_str() == text => Ok(previous.clone()),
        _ => stream_id(text),
    }
}

/// An event from the columns `stream_version, tx_id, position, event_id,
/// event_type, event_version, payload, correlation_id, causation_id,
/// command_id, metadata, recorded_at`, starting at `first`.
pub(crate) fn recorded_event(
    row: &Row,
    first: usize,
    stream: StreamId,
) -> Result<RecordedEvent, annals::Error> {
    let metadata = metadata_from_columns(
        column(row, first + 7)?,
        column(row, first + 8)?,
        column(row, first + 9)?,
        column(row, first + 10)?,
    )
    .map_err(|error| corrupt(format!("stored metadata does not parse: {error}")))?;
    let event_version: i32 = column(row, first + 5)?;
    Ok(RecordedEvent {
        event_id: column(row, first + 3)?,
        stream,
        version: unsigned(column(row, first)?, "stream version")?,
        position: position(row, first + 1, first + 2)?,
        recorded_at: column(row, first + 11)?,
        event_type: column::<&str>(row, first + 4)?.to_owned(),
        event_version: u32::try_from(event_version)
            .map_err(|_| corrupt(format!("stored event version {event_version}")))?,
        payload: payload(row, first + 6)?,
        metadata,
    })
}

/// The outcome from the columns `first_version, last_version, tx_id,
/// last_position`, starting at `first`.
fn outcome_columns(
    row: &Row,
    first: usize,
    stream: StreamId,
    duplicate: bool,
) -> Result<AppendOutcome, annals::Error> {
    Ok(AppendOutcome {
        stream,
        first_version: unsigned(column(row, first)?, "version")?,
        last_version: unsigned(column(row, first + 1)?, "version")?,
        last_position: position(row, first + 2, first + 3)?,
        duplicate,
    })
}

/// The row of an append statement: `is_duplicate, stream_id,
/// first_version, last_version, tx_id, last_position`; the stream is only
/// returned for a duplicate (whose first append may have been to another
/// stream). A lone single-event statement, which can only have written,
/// answers with `stream_version, tx_id, position`
/// (`sql/append/event_written_versioned.sql`), or only `tx_id, position`
/// when the caller knows the `written_version` (`event_written.sql`).
pub(crate) fn append_outcome(
    row: &Row,
    stream: &StreamId,
    written_version: Option<u64>,
) -> Result<AppendOutcome, annals::Error> {
    let written = |version, tx_id| {
        Ok(AppendOutcome {
            stream: stream.clone(),
            first_version: version,
            last_version: version,
            last_position: position(row, tx_id, tx_id + 1)?,
            duplicate: false,
        })
    };
    match row.len() {
        2 => {
            let version = written_version
                .ok_or_else(|| corrupt("an append answered without the version it wrote"))?;
            return written(version, 0);
        }
        3 => return written(unsigned(column(row, 0)?, "version")?, 1),
        _ => {}
    }
    let duplicate: bool = column(row, 0)?;
    let stream = if duplicate {
        stream_id(column(row, 1)?)?
    } else {
        stream.clone()
    };
    outcome_columns(row, 2, stream, duplicate)
}

/// An append the group statement wrote (`grouped` in `sql/append/append.sql`):
/// its stream id and the global position of its event, from the columns
/// `stream_id, tx_id, position`.
pub(crate) fn joined_append(row: &Row) -> Result<(&str, GlobalPosition), annals::Error> {
    Ok((column(row, 0)?, position(row, 1, 2)?))
}

/// A recorded command outcome: `stream_id, first_version, last_version,
/// tx_id, last_position`, as a repeat of the command would get it.
pub(crate) fn command_outcome(row: &Row) -> Result<AppendOutcome, annals::Error> {
    outcome_columns(row, 1, stream_id(column(row, 0)?)?, true)
}

/// A snapshot: `stream_version, state_version, state, taken_at`.
pub(crate) fn snapshot(row: &Row, stream: &StreamId) -> Result<Snapshot, annals::Error> {
    snapshot_columns(row, stream, [0, 1, 2, 3])
}

/// The snapshot's row of `read_from_snapshot.sql`: its version in column 0,
/// `taken_at` in 11, `state_version, state` in 12 and 13.
pub(crate) fn snapshot_row(row: &Row, stream: &StreamId) -> Result<Snapshot, annals::Error> {
    snapshot_columns(row, stream, [0, SNAPSHOT_STATE_VERSION, 13, 11])
}

/// In `read_from_snapshot.sql`, the column that is not NULL in the
/// snapshot's row only.
pub(crate) const SNAPSHOT_STATE_VERSION: usize = 12;

/// A snapshot from the columns `[version, state_version, state, taken_at]`.
fn snapshot_columns(
    row: &Row,
    stream: &StreamId,
    [version, state_version, state, taken_at]: [usize; 4],
) -> Result<Snapshot, annals::Error> {
    let state_version: i32 = column(row, state_version)?;
    Ok(Snapshot {
        stream: stream.clone(),
        version: unsigned(column(row, version)?, "snapshot version")?,
        state_version: u32::try_from(state_version)
            .map_err(|_| corrupt(format!("stored state version {state_version}")))?,
        state: payload(row, state)?,
        taken_at: column::<DateTime<Utc>>(row, taken_at)?,
    })
}

/// An outbox record: `tx_id, position, recorded_at, message_id, topic, key,
/// event_type, event_version, payload, stream_id, stream_version, metadata`.
pub(crate) fn outbox_record(
    row: &Row,
    previous_stream: Option<&StreamId>,
) -> Result<OutboxRecord, annals::Error> {
    let event_version: i32 = column(row, 7)?;
    let JsonText(metadata) = column::<JsonText<&str>>(row, 11)?;
    Ok(OutboxRecord {
        position: position(row, 0, 1)?,
        recorded_at: column(row, 2)?,
        message: OutboxMessage {
            message_id: column(row, 3)?,
            topic: column::<&str>(row, 4)?.to_owned(),
            key: column::<&str>(row, 5)?.to_owned(),
            event_type: column::<&str>(row, 6)?.to_owned(),
            event_version: u32::try_from(event_version)
                .map_err(|_| corrupt(format!("stored message version {event_version}")))?,
            payload: payload(row, 8)?,
            stream: stream_id_column(row, 9, previous_stream)?,
            stream_version: unsigned(column(row, 10)?, "stream version")?,
            metadata: serde_json::from_str(metadata)
                .map_err(|error| corrupt(format!("stored metadata does not parse: {error}")))?,
        },
    })
}
