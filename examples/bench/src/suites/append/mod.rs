//! The `append` suite: batched appends, single-event commands through the
//! repository, and loading a 10,000-event aggregate, each beside the raw
//! limit of the same work measured by the same client (tokio-postgres) on
//! an identical table.

mod load;
pub(super) mod model;
mod writes;

use std::time::Duration;

use crate::database::Database;
use crate::measure::{Turns, Window};
use crate::report::Measurement;

/// The suite's name in the results.
const SUITE: &str = "append";

/// Each throughput figure and its limit are measured in turns: 8 pairs of
/// 2-second windows (each after half a second of warm-up), 16 seconds of
/// each in all.
const TURNS: Turns = Turns {
    pairs: 8,
    window: Window {
        warm_up: Duration::from_millis(500),
        measured: Duration::from_secs(2),
    },
};

pub(crate) async fn run(database: &Database) -> Result<Vec<Measurement>, String> {
    let mut measurements = vec![writes::batched(database, TURNS).await?];
    measurements.extend(writes::commands(database, TURNS).await?);
    measurements.extend(load::load(database).await?);
    Ok(measurements)
}

/// `template` with `{schema}` replaced by the quoted schema name.
fn render(template: &str, schema: &str) -> String {
    template.replace("{schema}", &format!("\"{schema}\""))
}
