//! The suites, one module each. A suite returns its measurements; the
//! caller prints and writes them.

mod append;
mod consumer;
mod projection;
mod relay;

use crate::database::Database;
use crate::report::Measurement;

/// The suites this build knows, in the order they run by default.
pub(crate) const SUITES: &[&str] = &["append", "projection", "consumer", "relay"];

/// Runs the suite `name`.
pub(crate) async fn run(name: &str, database: &Database) -> Result<Vec<Measurement>, String> {
    match name {
        "append" => append::run(database).await,
        "projection" => projection::run(database).await,
        "consumer" => consumer::run(database).await,
        "relay" => relay::run(database).await,
        other => Err(format!(
            "unknown suite {other:?}; the suites are: {}",
            SUITES.join(", ")
        )),
    }
}
