//! The `peer` suite: annals beside cqrs-es with postgres-es, the most used
//! Rust event-sourcing framework, on the same PostgreSQL in the same run,
//! with the same domain (the accounts of the `append` suite), the same
//! writers and the same windows, each beside the raw limit of the same
//! work measured by tokio-postgres. The three take turns window by window
//! (rates) or load by load (durations).
//!
//! Both frameworks are used as their documentation shows: annals through
//! its `Repository` (which keeps aggregates it wrote warm in memory),
//! cqrs-es through `CqrsFramework::execute` on postgres-es's event store
//! (which loads the aggregate's events before every command). cqrs-es runs
//! in a child process (`child`), built from a workspace of its own.

mod child;

use annals::Repository;
use annals_postgres::PgEventStore;
use futures::FutureExt as _;

use super::Options;
use super::append::load::{EVENTS, RUNS, WARM_UP, expect_full, raw_events, store_with_account};
use super::append::model::Account;
use super::append::writes::{
    BATCH, BATCH_WRITERS, COMMAND_CONNECTIONS, COMMAND_WRITERS, CROWDED_WRITERS, raw_batched,
    raw_commands, raw_schema, repository_commands,
};
use crate::database::{Database, render};
use crate::measure::{Interleaved, TimedRun, WindowRun, interleaved_all, medians_of_all, timed};
use crate::report::{Better, Measurement};
use child::{Peer, locked_version};

/// The suite's name in the results.
const SUITE: &str = "peer";

pub(crate) async fn run(
    database: &Database,
    options: &Options,
) -> Result<Vec<Measurement>, String> {
    let peer = Peer::start(database).await?;
    let cqrs_es = format!(
        "cqrs-es {} + postgres-es {}",
        locked_version("cqrs-es"),
        locked_version("postgres-es")
    );
    let raw = raw_schema(database, "peer_raw").await?;
    let insert_one = render(include_str!("../../../sql/insert_one.sql"), &raw);
    let insert_batch = render(include_str!("../../../sql/insert_batch.sql"), &raw);
    let mut measurements = Vec::new();
    for (writers, connections, events) in [
        (COMMAND_WRITERS, COMMAND_CONNECTIONS, 1),
        (BATCH_WRITERS, BATCH_WRITERS, BATCH),
        (CROWDED_WRITERS, COMMAND_CONNECTIONS, 1),
    ] {
        let store = database
            .store("peer", |config| config.with_pool_size(connections))
            .await
            .map_err(|error| error.to_string())?;
        let (insert_one, insert_batch) = (&insert_one, &insert_batch);
        let figures = interleaved_all(
            options.turns(),
            &mut [
                Box::new(move |window| {
                    if events == 1 {
                        raw_commands(database, insert_one, writers, window)
                            .map(Ok)
                            .boxed_local()
                    } else {
                        raw_batched(database, insert_batch, window)
                            .map(Ok)
                            .boxed_local()
                    }
                }) as WindowRun<'_>,
                // Events per second, as the raw limit counts them.
                Box::new(|window| {
                    repository_commands(&store, writers, events, window)
                        .map(move |commands| Ok(commands * events as f64))
                        .boxed_local()
                }),
                Box::new(|window| {
                    peer.commands(writers, connections, events, window)
                        .map(move |commands| commands.map(|commands| commands * events as f64))
                        .boxed_local()
                }),
            ],
        )
        .await?;
        let (what, unit) = match events {
            1 => (
                format!("single-event commands, {writers} writers, a pool of {connections}"),
                "commands/s",
            ),
            events => (
                format!("{events}-event commands, {writers} writers, a pool of {connections}"),
                "events/s",
            ),
        };
        measurements.extend(pair(&what, &cqrs_es, &figures, unit));
    }
    measurements.extend(loads(database, &peer, &cqrs_es).await?);
    Ok(measurements)
}

/// The figures of annals and cqrs-es, each beside the raw limit.
fn pair(
    what: &str,
    cqrs_es: &str,
    figures: &[Interleaved],
    unit: &'static str,
) -> Vec<Measurement> {
    [("annals", figures[0]), (cqrs_es, figures[1])]
        .into_iter()
        .map(|(who, figure)| {
            Measurement::interleaved(SUITE, format!("{what}: {who}"), figure, unit)
        })
        .collect()
}

/// Loading a 10,000-event aggregate: the raw select and fold, annals'
/// `Repository::load` and cqrs-es's `load_aggregate`, taking turns load by
/// load; the medians.
async fn loads(
    database: &Database,
    peer: &Peer,
    cqrs_es: &str,
) -> Result<Vec<Measurement>, String> {
    let (store, client, select) = store_with_account(database, "peer_load").await?;
    peer.write_load(EVENTS).await?;
    let repository = Repository::<Account, PgEventStore>::new(store.clone());
    let medians = medians_of_all(
        WARM_UP,
        RUNS,
        &mut [
            Box::new(|| {
                timed(async {
                    let (_, version) =
                        raw_events(&client, &select, "account-load", 1, Account::default()).await?;
                    expect_full(version)
                })
                .boxed_local()
            }) as TimedRun<'_>,
            Box::new(|| {
                timed(async {
                    let loaded = repository
                        .load("load")
                        .await
                        .map_err(|error| error.to_string())?;
                    expect_full(loaded.version)
                })
                .boxed_local()
            }),
            Box::new(|| peer.load().boxed_local()),
        ],
    )
    .await?;
    let ms = |index: usize| medians[index].as_secs_f64() * 1000.0;
    let what = format!("load a {EVENTS}-event aggregate");
    Ok(vec![
        Measurement::new(SUITE, format!("{what}: annals"), ms(1), "ms")
            .with_limit(ms(0), Better::Lower),
        Measurement::new(SUITE, format!("{what}: {cqrs_es}"), ms(2), "ms")
            .with_limit(ms(0), Better::Lower),
    ])
}
