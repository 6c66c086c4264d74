//! The `scale` suite: how annals' appends and reads fare with a history of
//! 10 million events. A store filled with 10,000,000 events over 1,000,000
//! streams and 10 long ones (kept across runs) is measured beside an empty
//! store holding only what the measurements need, in the same run by the
//! same client: the "limit" of every figure is the same figure on the
//! empty store, and the ratio says how much of it the history leaves.

mod fill;
mod reads;
mod stores;
mod weight;

use annals_postgres::PgEventStore;

use super::Options;
use crate::database::Database;
use crate::measure::interleaved;
use crate::report::Measurement;
use crate::suites::append::writes::{
    BATCH, BATCH_WRITERS, COMMAND_CONNECTIONS, COMMAND_WRITERS, batched_appends,
    repository_commands,
};
pub(crate) use fill::BLOCK_EVENTS;
use reads::Pair;

/// The suite's name in the results.
const SUITE: &str = "scale";

/// Short streams per block of the fill.
const STREAMS_PER_BLOCK: u64 = 10_000;

pub(crate) async fn run(
    database: &Database,
    options: &Options,
) -> Result<Vec<Measurement>, String> {
    let blocks = options.scale_events / BLOCK_EVENTS;
    let filled = stores::filled(database, blocks).await?;
    let empty = stores::empty(database, blocks).await?;
    let client = database
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let mut measurements = weight::weigh(&client, &filled, blocks * STREAMS_PER_BLOCK).await?;
    let pair = Pair {
        empty: (&empty, empty.store(database, 4).await?),
        filled: (&filled, filled.store(database, 4).await?),
    };
    measurements.extend(reads::loads(&pair).await?);
    measurements.push(reads::page(&pair).await?);
    measurements.push(reads::catch_ups(database, &pair, blocks).await?);
    measurements.extend(writes(database, &pair, options).await?);
    Ok(measurements)
}

/// " (N events vs M)": the sizes of the filled and the empty store, for the
/// figures' names.
fn versus(pair: &Pair<'_>) -> String {
    format!(
        " ({} events vs {})",
        thousands(pair.filled.0.events),
        thousands(pair.empty.0.events)
    )
}

fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Single-event commands and batched appends on both stores, in turns, as
/// the `append` suite measures them.
async fn writes(
    database: &Database,
    pair: &Pair<'_>,
    options: &Options,
) -> Result<Vec<Measurement>, String> {
    let turns = options.turns();
    let stores = |connections: usize| async move {
        Ok::<(PgEventStore, PgEventStore), String>((
            pair.empty.0.store(database, connections).await?,
            pair.filled.0.store(database, connections).await?,
        ))
    };
    let (empty, filled) = stores(COMMAND_CONNECTIONS).await?;
    let commands = interleaved(
        turns,
        |window| repository_commands(&empty, COMMAND_WRITERS, 1, window),
        |window| repository_commands(&filled, COMMAND_WRITERS, 1, window),
    )
    .await?;
    let (empty, filled) = stores(BATCH_WRITERS).await?;
    let batched = interleaved(
        turns,
        |window| batched_appends(&empty, window),
        |window| batched_appends(&filled, window),
    )
    .await?;
    Ok(vec![
        Measurement::interleaved(
            SUITE,
            format!(
                "single-event commands, {COMMAND_WRITERS} writers, a pool of {COMMAND_CONNECTIONS}{}",
                versus(pair)
            ),
            commands,
            "commands/s",
        ),
        Measurement::interleaved(
            SUITE,
            format!(
                "batched appends, {BATCH} events each, {BATCH_WRITERS} writers{}",
                versus(pair)
            ),
            batched,
            "events/s",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(10_002_000), "10,002,000");
        assert_eq!(thousands(102_020), "102,020");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn the_tail_is_the_last_block() {
        assert_eq!(fill::tail_events(100), BLOCK_EVENTS + 20);
        assert_eq!(fill::tail_events(10), BLOCK_EVENTS + 200);
    }
}
