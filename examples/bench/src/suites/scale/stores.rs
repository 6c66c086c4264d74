//! The two stores of the scale suite: the filled one, kept across runs,
//! and the empty one, new in every run.

use std::time::{Duration, Instant};

use annals::GlobalPosition;
use annals_postgres::{PgEventStore, Xid8};
use tokio_postgres::Client;

use super::fill::{self, BLOCK_EVENTS, MEASURED_EVENTS};
use super::weight;
use crate::database::{Database, batch, execute, render};

/// The layout of the fill; a store filled with another is filled anew.
const FORMAT: i32 = 3;

/// A store ready to be measured, and where its marks are.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub(super) schema: String,
    /// Events in the store.
    pub(super) events: u64,
    /// The position of the event halfway through the global stream.
    pub(super) middle: GlobalPosition,
    /// The position of the last event before the last block.
    pub(super) before_tail: GlobalPosition,
    /// The position of the last event of the fill.
    pub(super) last: GlobalPosition,
    /// The highest `position` column of the fill: what lies above it, a
    /// run's measurements wrote.
    pub(super) highest_row: u64,
}

impl Prepared {
    /// A store on this schema with a pool of `connections`.
    pub(super) async fn store(
        &self,
        database: &Database,
        connections: usize,
    ) -> Result<PgEventStore, String> {
        let config = database
            .config(&self.schema)
            .map_err(|error| error.to_string())?
            .with_pool_size(connections);
        PgEventStore::connect(config)
            .await
            .map_err(|error| error.to_string())
    }
}

/// The filled store of `blocks` blocks: the one a previous run left when
/// it is complete (restored to the end of its fill), else filled now.
pub(super) async fn filled(database: &Database, blocks: u64) -> Result<Prepared, String> {
    let schema = format!("annals_bench_scale_v{FORMAT}_{}", blocks * BLOCK_EVENTS);
    let client = connect(database).await?;
    let recorded = client
        .query_one(
            include_str!("../../../sql/scale/fill_exists.sql"),
            &[&format!("\"{schema}\".bench_scale_fill")],
        )
        .await
        .map_err(|error| error.to_string())?;
    if recorded.get::<_, Option<String>>(0).is_some() {
        let row = client
            .query_opt(
                &render(include_str!("../../../sql/scale/fill_read.sql"), &schema),
                &[&FORMAT],
            )
            .await
            .map_err(|error| error.to_string())?;
        if let Some(row) = row {
            let position = |column: usize| {
                row.get::<_, String>(column)
                    .parse::<GlobalPosition>()
                    .map_err(|error| error.to_string())
            };
            let prepared = Prepared {
                events: row.get::<_, i64>(1) as u64,
                middle: position(2)?,
                before_tail: position(3)?,
                last: position(4)?,
                highest_row: row.get::<_, i64>(7) as u64,
                schema: schema.clone(),
            };
            eprintln!(
                "  reusing {schema}: {} events, filled in {:.0} s on {}",
                prepared.events,
                row.get::<_, f64>(5),
                row.get::<_, String>(6)
            );
            // Connecting applies the migrations added since the fill.
            prepared.store(database, 1).await?;
            restore(&client, &prepared).await?;
            let count: i64 = client
                .query_one(
                    &render(include_str!("../../../sql/scale/count.sql"), &schema),
                    &[],
                )
                .await
                .map_err(|error| error.to_string())?
                .get(0);
            if count as u64 == prepared.events {
                return Ok(prepared);
            }
            eprintln!(
                "  {schema} holds {count} events after removing the earlier runs', not {}: filling it again",
                prepared.events
            );
        }
    }
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .map_err(|error| error.to_string())?;
    eprintln!(
        "  filling {schema} with {} events (kept for later runs)...",
        blocks * BLOCK_EVENTS
    );
    let started = Instant::now();
    let prepared = write(database, &client, schema, blocks, true).await?;
    weight::record(&client, &prepared.schema).await?;
    let took = started.elapsed();
    eprintln!("  filled in {:.0} s", took.as_secs_f64());
    record(&client, &prepared, blocks, took).await?;
    Ok(prepared)
}

/// The empty store: the measured streams and the last block only, in a
/// schema of this run.
pub(super) async fn empty(database: &Database, blocks: u64) -> Result<Prepared, String> {
    let schema = database.new_schema("scale_empty");
    let client = connect(database).await?;
    write(database, &client, schema, blocks, false).await
}

async fn connect(database: &Database) -> Result<Client, String> {
    database.connect().await.map_err(|error| error.to_string())
}

/// Writes a store in `schema`, vacuums it and finds its middle.
async fn write(
    database: &Database,
    client: &Client,
    schema: String,
    blocks: u64,
    history: bool,
) -> Result<Prepared, String> {
    let mut prepared = Prepared {
        schema,
        events: 0,
        middle: GlobalPosition::START,
        before_tail: GlobalPosition::START,
        last: GlobalPosition::START,
        highest_row: 0,
    };
    let store = prepared.store(database, 4).await?;
    let filled = fill::fill(&store, blocks, history).await?;
    (prepared.before_tail, prepared.last) = (filled.before_tail, filled.last);
    prepared.highest_row = filled.highest_row;
    prepared.events = 2 * MEASURED_EVENTS
        + if history {
            blocks * BLOCK_EVENTS
        } else {
            BLOCK_EVENTS
        };
    vacuum(client, &prepared.schema).await?;
    let middle = client
        .query_one(
            &render(
                include_str!("../../../sql/scale/middle.sql"),
                &prepared.schema,
            ),
            &[&((prepared.events / 2) as i64)],
        )
        .await
        .map_err(|error| error.to_string())?;
    let (commit, sequence): (Xid8, i64) = (middle.get(0), middle.get(1));
    prepared.middle = GlobalPosition::new(commit.0, sequence as u64);
    Ok(prepared)
}

/// Vacuums and analyses what the fill wrote, as autovacuum would in time,
/// so that neither store meets it during the measurements.
async fn vacuum(client: &Client, schema: &str) -> Result<(), String> {
    client
        .batch_execute(&format!(
            "VACUUM ANALYZE \"{schema}\".events, \"{schema}\".streams, \"{schema}\".snapshots"
        ))
        .await
        .map_err(|error| error.to_string())
}

async fn record(
    client: &Client,
    prepared: &Prepared,
    blocks: u64,
    took: Duration,
) -> Result<(), String> {
    let schema = &prepared.schema;
    batch(
        client,
        include_str!("../../../sql/scale/fill_table.sql"),
        schema,
    )
    .await?;
    execute(
        client,
        include_str!("../../../sql/scale/fill_record.sql"),
        schema,
        &[
            &FORMAT,
            &(blocks as i64),
            &(prepared.events as i64),
            &prepared.middle.to_string(),
            &prepared.before_tail.to_string(),
            &prepared.last.to_string(),
            &(prepared.highest_row as i64),
            &took.as_secs_f64(),
        ],
    )
    .await?;
    Ok(())
}

/// Removes what an earlier run's measurements wrote into the filled store,
/// and vacuums what that freed.
async fn restore(client: &Client, prepared: &Prepared) -> Result<(), String> {
    let (schema, last) = (&prepared.schema, prepared.highest_row as i64);
    batch(
        client,
        include_str!("../../../sql/scale/restore_projections.sql"),
        schema,
    )
    .await?;
    let streams = execute(
        client,
        include_str!("../../../sql/scale/restore_streams.sql"),
        schema,
        &[&last],
    )
    .await?;
    let events = execute(
        client,
        include_str!("../../../sql/scale/restore_events.sql"),
        schema,
        &[&last],
    )
    .await?;
    if events > 0 {
        let started = Instant::now();
        vacuum(client, schema).await?;
        eprintln!(
            "  removed {events} events and {streams} streams of an earlier run, vacuumed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
