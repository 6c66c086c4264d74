//! Loading a 10,000-event aggregate, without and with a snapshot.

use annals::{
    AppendRequest, DomainEvent, EventStore, ExpectedVersion, NewSnapshot, Payload, Repository,
    SnapshotPolicy,
};
use annals_postgres::PgEventStore;
use tokio_postgres::{Client, Statement};

use super::SUITE;
use super::model::{Account, AccountEvent, deposits};
use crate::database::{Database, render};
use crate::measure::medians;
use crate::report::{Better, Measurement};

/// Events of the loaded aggregate.
pub(crate) const EVENTS: usize = 10_000;
const PER_APPEND: usize = 100;
/// Unmeasured loads of each kind before the measured ones.
pub(crate) const WARM_UP: usize = 3;
/// Measured loads of each kind; the median is the figure.
pub(crate) const RUNS: usize = 21;

/// A new store holding the 10,000-event account `load`, a connection for
/// the raw limit, and its statement selecting a stream's events.
pub(crate) async fn store_with_account(
    database: &Database,
    purpose: &str,
) -> Result<(PgEventStore, Client, Statement), String> {
    let store = database
        .store(purpose, |config| config)
        .await
        .map_err(|error| error.to_string())?;
    write_account(&store, "load", false).await?;
    let client = database
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let select_stream = prepare(
        &client,
        include_str!("../../../sql/select_stream.sql"),
        store.schema(),
    )
    .await?;
    Ok((store, client, select_stream))
}

pub(super) async fn load(database: &Database) -> Result<Vec<Measurement>, String> {
    let (store, client, select_stream) = store_with_account(database, "load").await?;
    write_account(&store, "load-snapshot", true).await?;
    let select_snapshot = prepare(
        &client,
        include_str!("../../../sql/select_snapshot.sql"),
        store.schema(),
    )
    .await?;

    let plain = Repository::<Account, _>::new(store.clone());
    let (limit, value) = medians(
        WARM_UP,
        RUNS,
        || async {
            let (_, version) = raw_events(
                &client,
                &select_stream,
                "account-load",
                1,
                Account::default(),
            )
            .await?;
            expect_full(version)
        },
        || async {
            let loaded = plain
                .load("load")
                .await
                .map_err(|error| error.to_string())?;
            expect_full(loaded.version)
        },
    )
    .await?;

    let snapshots = Repository::<Account, _>::new(store.clone())
        .with_snapshots(SnapshotPolicy::Every(EVENTS as u64));
    let (limit_snapshot, value_snapshot) = medians(
        WARM_UP,
        RUNS,
        || async {
            let row = client
                .query_one(&select_snapshot, &[&"account-load-snapshot"])
                .await
                .map_err(|error| error.to_string())?;
            let version: i64 = row.get(0);
            let state: Account =
                serde_json::from_str(row.get(2)).map_err(|error| error.to_string())?;
            let (_, version) = raw_events(
                &client,
                &select_stream,
                "account-load-snapshot",
                version + 1,
                state,
            )
            .await?;
            expect_full(version.max(EVENTS as u64))
        },
        || async {
            let loaded = snapshots
                .load("load-snapshot")
                .await
                .map_err(|error| error.to_string())?;
            expect_full(loaded.version)
        },
    )
    .await?;

    let ms = |duration: std::time::Duration| duration.as_secs_f64() * 1000.0;
    Ok(vec![
        Measurement::new(
            SUITE,
            format!("load a {EVENTS}-event aggregate"),
            ms(value),
            "ms",
        )
        .with_limit(ms(limit), Better::Lower),
        Measurement::new(
            SUITE,
            format!("load a {EVENTS}-event aggregate from a snapshot"),
            ms(value_snapshot),
            "ms",
        )
        .with_limit(ms(limit_snapshot), Better::Lower),
    ])
}

/// 10,000 deposits on `account-{id}` in appends of 100; the last append
/// carries a snapshot when `snapshot`.
async fn write_account(store: &PgEventStore, id: &str, snapshot: bool) -> Result<(), String> {
    let stream =
        Repository::<Account, PgEventStore>::stream_id(id).map_err(|error| error.to_string())?;
    let mut state = Account::default();
    for first in (0..EVENTS).step_by(PER_APPEND) {
        let events = deposits(first as i64, PER_APPEND);
        for event in &events {
            for decoded in event_of(
                event.event_type.as_str(),
                event.event_version,
                event.payload.get(),
            )? {
                annals::Aggregate::apply(&mut state, &decoded);
            }
        }
        let mut request =
            AppendRequest::new(stream.clone(), ExpectedVersion::Exact(first as u64)).events(events);
        if snapshot && first + PER_APPEND == EVENTS {
            request = request.snapshot(NewSnapshot {
                state_version: <Account as annals::Aggregate>::SNAPSHOT_VERSION,
                state: Payload::encode(&state).map_err(|error| error.to_string())?,
            });
        }
        store
            .append(request)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

async fn prepare(client: &Client, template: &str, schema: &str) -> Result<Statement, String> {
    client
        .prepare(&render(template, schema))
        .await
        .map_err(|error| error.to_string())
}

/// Reads the events of `stream` from `from` and applies them to `state`.
pub(crate) async fn raw_events(
    client: &Client,
    select: &Statement,
    stream: &str,
    from: i64,
    mut state: Account,
) -> Result<(Account, u64), String> {
    let rows = client
        .query(select, &[&stream, &from])
        .await
        .map_err(|error| error.to_string())?;
    let mut version = 0;
    for row in &rows {
        let event_version: i32 = row.get(5);
        for event in event_of(row.get(4), event_version as u32, row.get(6))? {
            annals::Aggregate::apply(&mut state, &event);
        }
        version = row.get::<_, i64>(0) as u64;
    }
    Ok((state, version))
}

fn event_of(event_type: &str, version: u32, payload: &str) -> Result<Vec<AccountEvent>, String> {
    AccountEvent::decode(event_type, version, payload)
        .map(|event| vec![event])
        .map_err(|error| error.to_string())
}

pub(crate) fn expect_full(version: u64) -> Result<(), String> {
    if version == EVENTS as u64 {
        Ok(())
    } else {
        Err(format!("loaded version {version}, not {EVENTS}"))
    }
}
