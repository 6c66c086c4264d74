//! Appends: batched, and single-event commands through the repository.

use annals::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Repository, StreamId};
use annals_postgres::{Notify, PgEventStore};
use tokio_postgres::Client;
use uuid::Uuid;

use super::SUITE;
use super::model::{Account, Deposit, command_metadata, deposited, deposits};
use crate::database::{Database, render};
use crate::measure::{Turns, Window, interleaved, throughput};
use crate::report::Measurement;

/// Events per batched append.
pub(crate) const BATCH: usize = 100;
/// Writers of batched appends.
pub(crate) const BATCH_WRITERS: usize = 4;
/// Writers of single-event commands.
pub(crate) const COMMAND_WRITERS: usize = 8;
/// The pool of the command figures: a connection per writer of the first
/// ones.
pub(crate) const COMMAND_CONNECTIONS: usize = COMMAND_WRITERS;
/// Writers of the figure where commands outnumber the connections: 4 per
/// connection of the same 8-connection pool.
pub(crate) const CROWDED_WRITERS: usize = 32;
/// Each command writer takes turns over this many aggregates of its own, all
/// kept warm by the repository.
pub(crate) const AGGREGATES_PER_WRITER: usize = 64;

/// 100-event appends by 4 writers, beside one 100-row `UNNEST` insert per
/// transaction on 4 connections.
pub(super) async fn batched(database: &Database, turns: Turns) -> Result<Measurement, String> {
    let store = database
        .store("batched", |config| config.with_pool_size(BATCH_WRITERS))
        .await
        .map_err(|error| error.to_string())?;
    let raw = raw_schema(database, "raw_batched").await?;
    let insert = render(include_str!("../../../sql/insert_batch.sql"), &raw);
    let measured = interleaved(
        turns,
        |window| raw_batched(database, &insert, window),
        |window| batched_appends(&store, window),
    )
    .await?;
    Ok(Measurement::interleaved(
        SUITE,
        format!("batched appends, {BATCH} events each, {BATCH_WRITERS} writers"),
        measured,
        "events/s",
    ))
}

/// Single-event commands by 8 writers through one repository (load from
/// its warm cache, decide, append) on a store of 8 connections and its
/// default append lanes, beside one 1-row insert per transaction on 8
/// connections; once per way of sending `NOTIFY`, and once with a lane per
/// connection (no group forms); then by 32 writers on the same store,
/// beside the 1-row inserts of 32 writers on a connection each.
pub(super) async fn commands(
    database: &Database,
    turns: Turns,
) -> Result<Vec<Measurement>, String> {
    let raw = raw_schema(database, "raw_commands").await?;
    let insert = render(include_str!("../../../sql/insert_one.sql"), &raw);
    let mut measurements = Vec::new();
    for (writers, notify, lanes, label) in [
        (
            COMMAND_WRITERS,
            Notify::AfterCommit,
            None,
            "NOTIFY after commit, the default",
        ),
        (
            COMMAND_WRITERS,
            Notify::InTransaction,
            None,
            "NOTIFY in the transaction",
        ),
        (COMMAND_WRITERS, Notify::Off, None, "no NOTIFY"),
        (
            COMMAND_WRITERS,
            Notify::AfterCommit,
            Some(COMMAND_CONNECTIONS),
            "a lane per connection: no group commit",
        ),
        (
            CROWDED_WRITERS,
            Notify::AfterCommit,
            None,
            "on 8 connections, group commit",
        ),
    ] {
        let store = database
            .store("commands", |config| {
                let config = config
                    .with_pool_size(COMMAND_CONNECTIONS)
                    .with_notify(notify);
                match lanes {
                    Some(lanes) => config.with_append_lanes(lanes),
                    None => config,
                }
            })
            .await
            .map_err(|error| error.to_string())?;
        let measured = interleaved(
            turns,
            |window| raw_commands(database, &insert, writers, window),
            |window| repository_commands(&store, writers, 1, window),
        )
        .await?;
        measurements.push(Measurement::interleaved(
            SUITE,
            format!("single-event commands, {writers} writers ({label})"),
            measured,
            "commands/s",
        ));
    }
    Ok(measurements)
}

/// A schema with the store's tables, for the raw limits.
pub(crate) async fn raw_schema(database: &Database, purpose: &str) -> Result<String, String> {
    let schema = database.new_schema(purpose);
    let mut client = database
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    annals_postgres::migrate(&mut client, &schema)
        .await
        .map_err(|error| error.to_string())?;
    Ok(schema)
}

pub(crate) async fn batched_appends(store: &PgEventStore, window: Window) -> f64 {
    throughput(BATCH_WRITERS, window, |writer, tally| {
        let store = store.clone();
        async move {
            let stream = StreamId::new(format!("batch-{writer}-{}", Uuid::now_v7()))
                .map_err(|error| error.to_string())?;
            let mut version = 0;
            while tally.running() {
                let request = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(version))
                    .events(deposits(version as i64, BATCH));
                store
                    .append(request)
                    .await
                    .map_err(|error| error.to_string())?;
                version += BATCH as u64;
                tally.add(BATCH as u64);
            }
            Ok(())
        }
    })
    .await
}

pub(crate) async fn raw_batched(database: &Database, insert: &str, window: Window) -> f64 {
    throughput(BATCH_WRITERS, window, |writer, tally| {
        let connecting = database.connect();
        let insert = insert.to_owned();
        async move {
            let client = connecting.await.map_err(|error| error.to_string())?;
            let statement = client
                .prepare(&insert)
                .await
                .map_err(|error| error.to_string())?;
            let stream = format!("raw-batch-{writer}-{}", Uuid::now_v7());
            let mut version = 0i64;
            while tally.running() {
                let events = deposits(version, BATCH);
                let columns = Columns::of(&events, version);
                client
                    .execute(
                        &statement,
                        &[
                            &stream,
                            &columns.versions,
                            &columns.event_ids,
                            &columns.types,
                            &columns.type_versions,
                            &columns.payloads,
                            &columns.correlation_ids,
                            &columns.causation_ids,
                            &columns.command_ids,
                        ],
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                version += BATCH as i64;
                tally.add(BATCH as u64);
            }
            Ok(())
        }
    })
    .await
}

/// The columns of events as the raw statements take them.
struct Columns<'a> {
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    type_versions: Vec<i32>,
    payloads: Vec<&'a str>,
    correlation_ids: Vec<Option<Uuid>>,
    causation_ids: Vec<Option<Uuid>>,
    command_ids: Vec<Option<Uuid>>,
}

impl<'a> Columns<'a> {
    fn of(events: &'a [NewEvent], version_before: i64) -> Self {
        Columns {
            versions: (1..=events.len() as i64)
                .map(|n| version_before + n)
                .collect(),
            event_ids: events.iter().map(|event| event.event_id).collect(),
            types: events
                .iter()
                .map(|event| event.event_type.as_str())
                .collect(),
            type_versions: events
                .iter()
                .map(|event| event.event_version as i32)
                .collect(),
            payloads: events.iter().map(|event| event.payload.get()).collect(),
            correlation_ids: events
                .iter()
                .map(|event| event.metadata.correlation_id)
                .collect(),
            causation_ids: events
                .iter()
                .map(|event| event.metadata.causation_id)
                .collect(),
            command_ids: events
                .iter()
                .map(|event| event.metadata.command_id)
                .collect(),
        }
    }
}

/// Commands per second of `writers` writers through one repository, each
/// command depositing `events` times (one event each).
pub(crate) async fn repository_commands(
    store: &PgEventStore,
    writers: usize,
    events: usize,
    window: Window,
) -> f64 {
    let repository = Repository::<Account, _>::new(store.clone());
    let round = Uuid::now_v7();
    throughput(writers, window, |writer, tally| {
        let repository = repository.clone();
        async move {
            let ids: Vec<String> = (0..AGGREGATES_PER_WRITER)
                .map(|index| format!("{round}-{writer}-{index}"))
                .collect();
            let mut done = 0usize;
            while tally.running() {
                repository
                    .execute(
                        &ids[done % ids.len()],
                        &Deposit {
                            amount: (done * events) as i64,
                            times: events,
                        },
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                done += 1;
                tally.add(1);
            }
            Ok(())
        }
    })
    .await
}

pub(crate) async fn raw_commands(
    database: &Database,
    insert: &str,
    writers: usize,
    window: Window,
) -> f64 {
    let round = Uuid::now_v7();
    throughput(writers, window, |writer, tally| {
        let connecting = database.connect();
        let insert = insert.to_owned();
        async move {
            let client: Client = connecting.await.map_err(|error| error.to_string())?;
            let statement = client
                .prepare(&insert)
                .await
                .map_err(|error| error.to_string())?;
            let streams: Vec<String> = (0..AGGREGATES_PER_WRITER)
                .map(|index| format!("raw-{round}-{writer}-{index}"))
                .collect();
            let mut versions = vec![0i64; AGGREGATES_PER_WRITER];
            let mut done = 0usize;
            while tally.running() {
                let aggregate = done % AGGREGATES_PER_WRITER;
                versions[aggregate] += 1;
                let event = NewEvent::new(&deposited(done as i64), command_metadata())
                    .map_err(|error| error.to_string())?;
                client
                    .execute(
                        &statement,
                        &[
                            &streams[aggregate],
                            &versions[aggregate],
                            &event.event_id,
                            &event.event_type,
                            &(event.event_version as i32),
                            &event.payload.get(),
                            &event.metadata.correlation_id,
                            &event.metadata.causation_id,
                            &event.metadata.command_id,
                        ],
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                done += 1;
                tally.add(1);
            }
            Ok(())
        }
    })
    .await
}
