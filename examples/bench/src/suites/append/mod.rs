//! The `append` suite: batched appends, single-event commands through the
//! repository, and loading a 10,000-event aggregate, each beside the raw
//! limit of the same work measured by the same client (tokio-postgres) on
//! an identical table.

mod load;
pub(super) mod model;
mod writes;

use std::time::Duration;

use crate::database::Database;
use crate::measure::Window;
use crate::report::Measurement;

/// The suite's name in the results.
const SUITE: &str = "append";

/// Each throughput figure (and its limit) is the better of two rounds of
/// this window.
const WINDOW: Window = Window {
    warm_up: Duration::from_secs(1),
    measured: Duration::from_secs(5),
};

pub(crate) async fn run(database: &Database) -> Result<Vec<Measurement>, String> {
    let mut measurements = vec![writes::batched(database, WINDOW).await?];
    measurements.extend(writes::commands(database, WINDOW).await?);
    measurements.extend(load::load(database).await?);
    Ok(measurements)
}

/// `template` with `{schema}` replaced by the quoted schema name.
fn render(template: &str, schema: &str) -> String {
    template.replace("{schema}", &format!("\"{schema}\""))
}
