//! What the filled store weighs on disk per million events, taken right
//! after the fill: a later run's measurements write into the store and,
//! once their rows are removed, leave free pages behind in its indexes.

use tokio_postgres::Client;

use super::SUITE;
use super::stores::Prepared;
use crate::database::{batch, execute, render};
use crate::report::Measurement;

/// Records the size of every table the fill wrote, and of their indexes.
pub(super) async fn record(client: &Client, schema: &str) -> Result<(), String> {
    let rows = client
        .query(include_str!("../../../sql/scale/weights.sql"), &[&schema])
        .await
        .map_err(|error| error.to_string())?;
    batch(
        client,
        include_str!("../../../sql/scale/weights_table.sql"),
        schema,
    )
    .await?;
    for row in &rows {
        let (name, table, index, bytes): (String, String, bool, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        execute(
            client,
            include_str!("../../../sql/scale/weights_record.sql"),
            schema,
            &[&name, &table, &index, &bytes],
        )
        .await?;
    }
    Ok(())
}

/// The size of the events table and of each of its indexes per million
/// events, and of the streams table with its index per million streams,
/// as recorded after the fill.
pub(super) async fn weigh(
    client: &Client,
    filled: &Prepared,
    streams: u64,
) -> Result<Vec<Measurement>, String> {
    let rows = client
        .query(
            &render(
                include_str!("../../../sql/scale/weights_read.sql"),
                &filled.schema,
            ),
            &[],
        )
        .await
        .map_err(|error| error.to_string())?;
    let per_million = |bytes: i64, count: u64| bytes as f64 / 1e6 / (count as f64 / 1e6);
    let (mut events_indexes, mut streams_total) = (0_i64, 0_i64);
    let mut measurements = Vec::new();
    for row in &rows {
        let (name, table, index, bytes): (String, String, bool, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        eprintln!("  {table}: {name} {:.0} MB", bytes as f64 / 1e6);
        match (table.as_str(), index) {
            ("events", false) => measurements.push(Measurement::new(
                SUITE,
                "the events table (heap and TOAST) per 1M events",
                per_million(bytes, filled.events),
                "MB",
            )),
            ("events", true) => {
                events_indexes += bytes;
                measurements.push(Measurement::new(
                    SUITE,
                    format!("the events index {name} per 1M events"),
                    per_million(bytes, filled.events),
                    "MB",
                ));
            }
            ("streams", _) => streams_total += bytes,
            _ => {}
        }
    }
    measurements.push(Measurement::new(
        SUITE,
        "the events table's indexes together per 1M events",
        per_million(events_indexes, filled.events),
        "MB",
    ));
    measurements.push(Measurement::new(
        SUITE,
        "the streams table and its index per 1M streams",
        per_million(streams_total, streams),
        "MB",
    ));
    Ok(measurements)
}
