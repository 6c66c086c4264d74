//! The reads of the scale suite, each on the filled store beside the
//! empty one: loading the measured aggregates, a page of the global
//! stream from the middle, and a projection's catch-up of the last block.

use std::cell::Cell;
use std::time::Duration;

use annals::{EventStore, GlobalPosition, Repository, SnapshotPolicy};
use annals_postgres::PgEventStore;

use super::fill::{LOADED, LOADED_FROM_SNAPSHOT, MEASURED_EVENTS, tail_events};
use super::stores::Prepared;
use super::{SUITE, thousands, versus};
use crate::database::Database;
use crate::measure::medians;
use crate::report::{Better, Measurement};
use crate::suites::append::model::Account;
use crate::suites::projection::{RunnerBalances, catch_up};

/// Unmeasured runs of each load or page read before the measured ones.
const WARM_UP: usize = 3;
/// Measured runs of each; the median is the figure.
const RUNS: usize = 21;
/// Events per page of the global stream: the projection runner's default
/// batch.
const PAGE: usize = 500;
/// Catch-ups on each store, alternating; the better of each is kept.
const ROUNDS: usize = 3;

/// The two stores, each with a handle to read it.
pub(super) struct Pair<'a> {
    pub(super) empty: (&'a Prepared, PgEventStore),
    pub(super) filled: (&'a Prepared, PgEventStore),
}

/// The median load of each measured aggregate, without and with its
/// snapshot, on both stores, loads of the two stores taking turns.
pub(super) async fn loads(pair: &Pair<'_>) -> Result<Vec<Measurement>, String> {
    let mut measurements = Vec::new();
    for (id, snapshots, what) in [
        (
            LOADED,
            SnapshotPolicy::Never,
            "load a 1,000-event aggregate",
        ),
        (
            LOADED_FROM_SNAPSHOT,
            SnapshotPolicy::Every(100),
            "load a 1,000-event aggregate from its snapshot (at version 900)",
        ),
    ] {
        let repository = |store: &PgEventStore| {
            Repository::<Account, _>::new(store.clone()).with_snapshots(snapshots.clone())
        };
        let (empty, filled) = (repository(&pair.empty.1), repository(&pair.filled.1));
        let load = |repository: &Repository<Account, PgEventStore>| {
            let repository = repository.clone();
            async move {
                let loaded = repository
                    .load(id)
                    .await
                    .map_err(|error| error.to_string())?;
                if loaded.version == MEASURED_EVENTS && loaded.state.deposits == MEASURED_EVENTS {
                    Ok(())
                } else {
                    Err(format!("loaded {id} at version {}", loaded.version))
                }
            }
        };
        let (limit, value) = medians(WARM_UP, RUNS, || load(&empty), || load(&filled)).await?;
        measurements.push(duration(what, pair, value, limit));
    }
    Ok(measurements)
}

/// The median read of a page of 500 events of the global stream, the
/// pages one after the other from the middle of each store.
pub(super) async fn page(pair: &Pair<'_>) -> Result<Measurement, String> {
    let (empty_cursor, filled_cursor) = (
        Cell::new(pair.empty.0.middle),
        Cell::new(pair.filled.0.middle),
    );
    let read = |store: &PgEventStore, cursor: &Cell<GlobalPosition>| {
        let (store, after) = (store.clone(), cursor.get());
        async move {
            let page = store
                .read_all(after, PAGE)
                .await
                .map_err(|error| error.to_string())?;
            match page.last() {
                Some(last) if page.len() == PAGE => Ok(last.position),
                _ => Err(format!("a page after {after} held {} events", page.len())),
            }
        }
    };
    let (limit, value) = medians(
        WARM_UP,
        RUNS,
        || async {
            empty_cursor.set(read(&pair.empty.1, &empty_cursor).await?);
            Ok(())
        },
        || async {
            filled_cursor.set(read(&pair.filled.1, &filled_cursor).await?);
            Ok(())
        },
    )
    .await?;
    Ok(duration(
        &format!("read a page of {PAGE} events of the global stream from its middle"),
        pair,
        value,
        limit,
    ))
}

/// Events per second of a projection (one upsert per event) catching up
/// with the last block from a checkpoint just before it, the better of three
/// rounds on each store, the stores taking turns.
pub(super) async fn catch_ups(
    database: &Database,
    pair: &Pair<'_>,
    blocks: u64,
) -> Result<Measurement, String> {
    let read_models = database.new_schema("scale_read_models");
    let client = database
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    client
        .batch_execute(&format!("CREATE SCHEMA \"{read_models}\""))
        .await
        .map_err(|error| error.to_string())?;
    let events = tail_events(blocks);
    let run = |(prepared, store): &(&Prepared, PgEventStore), name: String| {
        let projection = RunnerBalances::new(&read_models, name);
        let (store, from, last) = (store.clone(), prepared.before_tail, prepared.last);
        async move { catch_up(&store, projection, from, last, events).await }
    };
    let (mut empty, mut filled) = (0.0_f64, 0.0_f64);
    for round in 1..=ROUNDS {
        let (empty_round, filled_round) = if round % 2 == 1 {
            let empty_round = run(&pair.empty, format!("empty_{round}")).await?;
            (
                empty_round,
                run(&pair.filled, format!("filled_{round}")).await?,
            )
        } else {
            let filled_round = run(&pair.filled, format!("filled_{round}")).await?;
            (
                run(&pair.empty, format!("empty_{round}")).await?,
                filled_round,
            )
        };
        eprintln!(
            "  catch-up round {round}: empty store {empty_round:.0} events/s, filled {filled_round:.0} events/s"
        );
        (empty, filled) = (empty.max(empty_round), filled.max(filled_round));
    }
    Ok(Measurement::new(
        SUITE,
        format!(
            "projection catch-up of the last {} events, one upsert per event{}",
            thousands(events),
            versus(pair)
        ),
        filled,
        "events/s",
    )
    .with_limit(empty, Better::Higher))
}

fn duration(what: &str, pair: &Pair<'_>, value: Duration, limit: Duration) -> Measurement {
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    Measurement::new(SUITE, format!("{what}{}", versus(pair)), ms(value), "ms")
        .with_limit(ms(limit), Better::Lower)
}
