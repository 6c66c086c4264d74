//! The parameters of the append statements, from the requests of one unit.

use std::collections::HashSet;

use annals::{AppendOutcome, AppendRequest, Error, ExpectedVersion, Limits, NewEvent, StreamId};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::statements::{AppendStatements, GROUP_COLUMNS, Refusal, Shape};
use crate::types::{JsonText, bigint, rest_of_metadata};

/// The calls for the requests of one unit, after checking them, in the
/// order their streams are locked: by stream id, the same order in every
/// unit, so that two units cannot deadlock on each other's stream rows.
pub(super) struct Calls<'a> {
    pub(super) calls: Vec<AppendCall<'a>>,
    /// For each call, the index of its request.
    order: Vec<usize>,
}

impl<'a> Calls<'a> {
    pub(super) fn new(
        requests: &'a [AppendRequest],
        limits: &Limits,
        notify_channel: Option<&'a str>,
    ) -> Result<Self, Error> {
        AppendRequest::validate_unit(requests, limits)?;
        check_event_ids_across(requests)?;
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| requests[a].stream.cmp(&requests[b].stream));
        let calls = order
            .iter()
            .map(|&index| AppendCall::new(&requests[index], notify_channel))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Calls { calls, order })
    }

    /// `outcomes`, one per call, in the order of the requests.
    pub(super) fn in_request_order(&self, outcomes: Vec<AppendOutcome>) -> Vec<AppendOutcome> {
        let mut ordered = vec![None; outcomes.len()];
        for (outcome, &index) in outcomes.into_iter().zip(&self.order) {
            ordered[index] = Some(outcome);
        }
        ordered.into_iter().flatten().collect()
    }
}

/// The parameters of an append of NULLs that pads a group statement to its
/// size (`grouped` in `sql/append/append.sql`): it matches no stream row
/// and writes nothing.
pub(super) const GROUP_PADDING: [&(dyn ToSql + Sync); GROUP_COLUMNS] = [
    &None::<&str>,
    &None::<i64>,
    &None::<i64>,
    &None::<Uuid>,
    &None::<Uuid>,
    &None::<&str>,
    &None::<i32>,
    &None::<JsonText<&str>>,
    &None::<Uuid>,
    &None::<Uuid>,
    &None::<Uuid>,
    &None::<JsonText<&str>>,
];

/// The parameters of one append statement.
pub(super) struct AppendCall<'a> {
    pub(super) request: &'a AppendRequest,
    pub(super) shape: Shape,
    stream_id: &'a str,
    expected: Option<i64>,
    count: i64,
    notify_channel: Option<&'a str>,
    columns: Columns<'a>,
}

enum Columns<'a> {
    Event(EventColumns<'a>),
    Arrays(Box<ArrayColumns<'a>>),
}

/// $5 to $12 of `append.sql` for one event.
struct EventColumns<'a> {
    event_id: Uuid,
    event_type: &'a str,
    event_version: i32,
    payload: JsonText<&'a str>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    command_id: Option<Uuid>,
    metadata: Option<JsonText<String>>,
}

impl EventColumns<'_> {
    /// $5 to $12 of `append.sql` for one event, in order.
    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.event_id,
            &self.event_type,
            &self.event_version,
            &self.payload,
            &self.correlation_id,
            &self.causation_id,
            &self.command_id,
            &self.metadata,
        ]
    }
}

/// $5 to $24 of `append.sql` for arrays.
#[derive(Default)]
struct ArrayColumns<'a> {
    event_ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    event_versions: Vec<i32>,
    payloads: Vec<JsonText<&'a str>>,
    correlation_ids: Vec<Option<Uuid>>,
    causation_ids: Vec<Option<Uuid>>,
    command_ids: Vec<Option<Uuid>>,
    metadata: Vec<Option<JsonText<String>>>,
    snapshot_state_version: Option<i32>,
    snapshot: Option<JsonText<&'a str>>,
    message_ids: Vec<Uuid>,
    topics: Vec<&'a str>,
    keys: Vec<&'a str>,
    message_types: Vec<&'a str>,
    message_versions: Vec<i32>,
    message_payloads: Vec<JsonText<&'a str>>,
    message_stream_ids: Vec<&'a str>,
    message_stream_versions: Vec<i64>,
    message_metadata: Vec<JsonText<String>>,
    /// The bits of each key's `annals::key_hash` as the `integer` column
    /// holds them.
    message_key_hashes: Vec<i32>,
}

impl<'a> AppendCall<'a> {
    /// The call of a lone append, after checking its request.
    pub(super) fn checked(
        request: &'a AppendRequest,
        limits: &Limits,
        notify_channel: Option<&'a str>,
    ) -> Result<Self, Error> {
        request.validate(limits)?;
        Self::new(request, notify_channel)
    }

    fn new(request: &'a AppendRequest, notify_channel: Option<&'a str>) -> Result<Self, Error> {
        // $2 of the statements: NULL any, -1 the stream must exist, n
        // exactly n.
        let expected = match request.expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::StreamExists => Some(-1),
            ExpectedVersion::Exact(version) => Some(bigint(version)),
        };
        let stream = &request.stream;
        let columns = match request.events.as_slice() {
            [event] if request.snapshot.is_none() && request.outbox.is_empty() => {
                Columns::Event(EventColumns {
                    event_id: event.event_id,
                    event_type: &event.event_type,
                    event_version: schema_version(stream, event.event_version, "event")?,
                    payload: JsonText(event.payload.get()),
                    correlation_id: event.metadata.correlation_id,
                    causation_id: event.metadata.causation_id,
                    command_id: event.metadata.command_id,
                    metadata: rest_of_metadata(&event.metadata)
                        .map_err(encode)?
                        .map(JsonText),
                })
            }
            events => Columns::Arrays(Box::new(array_columns(request, events)?)),
        };
        Ok(AppendCall {
            request,
            shape: match columns {
                Columns::Event(_) => Shape::OneEvent,
                Columns::Arrays(_) => Shape::Arrays,
            },
            stream_id: stream.as_str(),
            expected,
            count: i64::try_from(request.events.len()).expect("limited by validation"),
            notify_channel,
            columns,
        })
    }

    /// The statement of this call that refuses as `refusal` says, and its
    /// number among the prepared append statements.
    pub(super) fn statement<'s>(
        &self,
        statements: &'s AppendStatements,
        refusal: Refusal,
    ) -> (&'s str, usize) {
        statements.lone(self.request.expected, self.shape, refusal, self.notifies())
    }

    /// The statement's parameters, in order; the channel last, when it
    /// notifies.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.stream_id,
            &self.expected,
            &self.count,
            &self.request.command_id,
        ];
        match &self.columns {
            Columns::Event(event) => params.extend(event.params()),
            Columns::Arrays(arrays) => {
                params.extend([
                    &arrays.event_ids as &(dyn ToSql + Sync),
                    &arrays.event_types,
                    &arrays.event_versions,
                    &arrays.payloads,
                    &arrays.correlation_ids,
                    &arrays.causation_ids,
                    &arrays.command_ids,
                    &arrays.metadata,
                    &arrays.snapshot_state_version,
                    &arrays.snapshot,
                    &arrays.message_ids,
                    &arrays.topics,
                    &arrays.keys,
                    &arrays.message_types,
                    &arrays.message_versions,
                    &arrays.message_payloads,
                    &arrays.message_stream_ids,
                    &arrays.message_stream_versions,
                    &arrays.message_metadata,
                    &arrays.message_key_hashes,
                ]);
            }
        }
        if let Some(channel) = &self.notify_channel {
            params.push(channel);
        }
        params
    }

    /// This append's parameters in a group statement (`grouped` in
    /// `sql/append/append.sql`), when it can join one: a single event (no
    /// snapshot, no outbox message) to an existing stream at an exact
    /// version, without a `NOTIFY` of its own. Most commands can. They are
    /// the parameters of its lone statement.
    pub(super) fn group_row(&self) -> Option<[&(dyn ToSql + Sync); GROUP_COLUMNS]> {
        let Columns::Event(event) = &self.columns else {
            return None;
        };
        let existing =
            matches!(self.request.expected, ExpectedVersion::Exact(version) if version > 0);
        if !existing || self.notifies() {
            return None;
        }
        let mut row: [&(dyn ToSql + Sync); GROUP_COLUMNS] = [&self.stream_id; GROUP_COLUMNS];
        row[1] = &self.expected;
        row[2] = &self.count;
        row[3] = &self.request.command_id;
        row[4..].copy_from_slice(&event.params());
        Some(row)
    }

    /// The version a single event gets, where the request says it (no
    /// stream yet, or an exact version): the lone statements of those
    /// expected versions do not return it (`insert_only` in
    /// `sql/append/append.sql`).
    pub(super) fn written_version(&self) -> Option<u64> {
        if self.shape != Shape::OneEvent {
            return None;
        }
        match self.request.expected {
            ExpectedVersion::NoStream => Some(1),
            ExpectedVersion::Exact(version) => version.checked_add(1),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        }
    }

    /// Whether the statement sends `NOTIFY` (on the channel in its last
    /// parameter).
    pub(super) fn notifies(&self) -> bool {
        self.notify_channel.is_some()
    }

    /// The parameters of `refuse.sql`, after this append wrote nothing.
    pub(super) fn refusal_params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.stream_id, &self.expected, &self.request.command_id]
    }
}

fn array_columns<'a>(
    request: &'a AppendRequest,
    events: &'a [NewEvent],
) -> Result<ArrayColumns<'a>, Error> {
    let stream = &request.stream;
    let mut arrays = ArrayColumns::default();
    for event in events {
        arrays.event_ids.push(event.event_id);
        arrays.event_types.push(&event.event_type);
        arrays
            .event_versions
            .push(schema_version(stream, event.event_version, "event")?);
        arrays.payloads.push(JsonText(event.payload.get()));
        arrays.correlation_ids.push(event.metadata.correlation_id);
        arrays.causation_ids.push(event.metadata.causation_id);
        arrays.command_ids.push(event.metadata.command_id);
        arrays.metadata.push(
            rest_of_metadata(&event.metadata)
                .map_err(encode)?
                .map(JsonText),
        );
    }
    if let Some(snapshot) = &request.snapshot {
        arrays.snapshot_state_version =
            Some(schema_version(stream, snapshot.state_version, "snapshot")?);
        arrays.snapshot = Some(JsonText(snapshot.state.get()));
    }
    for message in &request.outbox {
        arrays.message_ids.push(message.message_id);
        arrays.topics.push(&message.topic);
        arrays.keys.push(&message.key);
        arrays.message_types.push(&message.event_type);
        arrays
            .message_versions
            .push(schema_version(stream, message.event_version, "message")?);
        arrays
            .message_payloads
            .push(JsonText(message.payload.get()));
        arrays.message_stream_ids.push(message.stream.as_str());
        arrays
            .message_stream_versions
            .push(bigint(message.stream_version));
        arrays.message_metadata.push(JsonText(
            serde_json::to_string(&message.metadata).map_err(encode)?,
        ));
        arrays
            .message_key_hashes
            .push(crate::types::key_hash_column(&message.key));
    }
    Ok(arrays)
}

fn schema_version(stream: &StreamId, version: u32, what: &str) -> Result<i32, Error> {
    i32::try_from(version).map_err(|_| Error::InvalidAppend {
        stream: stream.clone(),
        reason: format!(
            "{what} schema version {version} is larger than {}",
            i32::MAX
        ),
    })
}

fn encode(source: serde_json::Error) -> Error {
    Error::Encode {
        what: "metadata".to_owned(),
        source,
    }
}

/// Event ids are unique per request by validation; a unit must not repeat
/// one across its requests either.
fn check_event_ids_across(requests: &[AppendRequest]) -> Result<(), Error> {
    if requests.len() < 2 {
        return Ok(());
    }
    let mut seen = HashSet::new();
    for request in requests {
        for event in &request.events {
            if !seen.insert(event.event_id) {
                return Err(Error::InvalidAppend {
                    stream: request.stream.clone(),
                    reason: format!(
                        "event id {} appears twice in one unit of work",
                        event.event_id
                    ),
                });
            }
        }
    }
    Ok(())
}
