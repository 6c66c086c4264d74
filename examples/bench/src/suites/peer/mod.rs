//! placeholder
use super::Options;
use crate::database::Database;
use crate::report::Measurement;
pub(crate) async fn run(_: &Database, _: &Options) -> Result<Vec<Measurement>, String> {
    Ok(Vec::new())
}
