//! The `append` suite: batched appends, single-event commands through the
//! repository, and loading a 10,000-event aggregate, each beside the raw
//! limit of the same work measured by the same client (tokio-postgres) on
//! an identical table.

pub(super) mod load;
pub(super) mod model;
pub(super) mod writes;

use super::Options;
use crate::database::Database;
use crate::report::Measurement;

/// The suite's name in the results.
const SUITE: &str = "append";

/// Each throughput figure and its limit are measured in turns (by default
/// 8 pairs of 2-second windows, each after half a second of warm-up, 16
/// seconds of each in all).
pub(crate) async fn run(
    database: &Database,
    options: &Options,
) -> Result<Vec<Measurement>, String> {
    let turns = options.turns();
    let mut measurements = vec![writes::batched(database, turns).await?];
    measurements.extend(writes::commands(database, turns).await?);
    measurements.extend(load::load(database).await?);
    Ok(measurements)
}
