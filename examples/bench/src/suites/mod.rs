//! The suites, one module each. A suite returns its measurements; the
//! caller prints and writes them.

mod append;
mod consumer;
mod peer;
mod projection;
mod relay;
mod scale;

use std::time::Duration;

use crate::database::Database;
use crate::measure::{Turns, Window};
use crate::report::Measurement;

/// The suites this build knows, in the order they run by default.
pub(crate) const SUITES: &[&str] = &["append", "projection", "consumer", "relay", "scale", "peer"];

/// What the options of [`Options`] mean, for the usage message.
pub(crate) const OPTIONS_HELP: &str = "\
--turns N         pairs of windows of every rate measured in turns (default 8)
--scale-events N  events in the scale suite's filled store, a multiple of 100,000,
                  at least 1,000,000 (default 10,000,000)";

/// How much work the suites do: the defaults are the full run; smaller
/// values make a quick one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Turns of every rate measured in turns ([`Turns::pairs`]).
    pub(crate) turns: usize,
    /// Events in the `scale` suite's filled store.
    pub(crate) scale_events: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            turns: 8,
            scale_events: 10_000_000,
        }
    }
}

impl Options {
    /// With `turns` turns per rate; at least 1.
    pub(crate) fn with_turns(mut self, turns: usize) -> Result<Self, String> {
        if turns == 0 {
            return Err("--turns must be at least 1".to_owned());
        }
        self.turns = turns;
        Ok(self)
    }

    /// With `events` events in the filled store of `scale`: whole blocks of
    /// 100,000, at least 10 of them.
    pub(crate) fn with_scale_events(mut self, events: u64) -> Result<Self, String> {
        if !events.is_multiple_of(scale::BLOCK_EVENTS) || events < 10 * scale::BLOCK_EVENTS {
            return Err(format!(
                "--scale-events must be a multiple of {} and at least {}",
                scale::BLOCK_EVENTS,
                10 * scale::BLOCK_EVENTS
            ));
        }
        self.scale_events = events;
        Ok(self)
    }

    /// The turns of rates measured in turns: windows of 0.5 s warm-up and
    /// 2 s measured.
    pub(crate) fn turns(&self) -> Turns {
        Turns {
            pairs: self.turns,
            window: Window {
                warm_up: Duration::from_millis(500),
                measured: Duration::from_secs(2),
            },
        }
    }
}

/// Runs the suite `name`.
pub(crate) async fn run(
    name: &str,
    database: &Database,
    options: &Options,
) -> Result<Vec<Measurement>, String> {
    match name {
        "append" => append::run(database, options).await,
        "projection" => projection::run(database).await,
        "consumer" => consumer::run(database).await,
        "relay" => relay::run(database).await,
        "scale" => scale::run(database, options).await,
        "peer" => peer::run(database, options).await,
        other => Err(format!(
            "unknown suite {other:?}; the suites are: {}",
            SUITES.join(", ")
        )),
    }
}
