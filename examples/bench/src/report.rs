//! What a suite measured, as a table and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::Interleaved;

/// Whether more is better (a rate) or less (a duration): decides how the
/// ratio to the limit is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    /// Events per second and the like: ratio = value / limit.
    Higher,
    /// Milliseconds and the like: ratio = limit / value.
    Lower,
}

/// One figure, beside the raw limit of the same work where one was measured.
/// Ratio 1.0 means the limit was reached.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measurement {
    pub(crate) suite: &'static str,
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) limit: Option<f64>,
    pub(crate) ratio: Option<f64>,
    /// Where the figure and its limit were measured in turns
    /// ([`crate::measure::interleaved`]): the lowest and the highest ratio
    /// of one turn.
    pub(crate) turn_ratios: Option<[f64; 2]>,
}

impl Measurement {
    /// A figure without a limit.
    pub(crate) fn new(
        suite: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Measurement {
            suite,
            name: name.into(),
            value,
            unit,
            limit: None,
            ratio: None,
            turn_ratios: None,
        }
    }

    /// The figure beside its limit.
    pub(crate) fn with_limit(mut self, limit: f64, better: Better) -> Self {
        self.limit = Some(limit);
        self.ratio = Some(match better {
            Better::Higher => self.value / limit,
            Better::Lower => limit / self.value,
        });
        self
    }

    /// A rate measured in turns with its limit: the means, and the spread of
    /// the turns' ratios.
    pub(crate) fn interleaved(
        suite: &'static str,
        name: impl Into<String>,
        measured: Interleaved,
        unit: &'static str,
    ) -> Self {
        let mut measurement = Measurement::new(suite, name, measured.value, unit)
            .with_limit(measured.limit, Better::Higher);
        measurement.turn_ratios = Some([measured.lowest_ratio, measured.highest_ratio]);
        measurement
    }
}

/// The measurements as a table with aligned columns.
pub(crate) fn table(measurements: &[Measurement]) -> String {
    let rows: Vec<[String; 5]> = measurements
        .iter()
        .map(|m| {
            [
                m.suite.to_owned(),
                m.name.clone(),
                format!("{} {}", figure(m.value), m.unit),
                m.limit.map_or_else(
                    || "-".to_owned(),
                    |limit| format!("{} {}", figure(limit), m.unit),
                ),
                match (m.ratio, m.turn_ratios) {
                    (None, _) => "-".to_owned(),
                    (Some(ratio), None) => format!("{ratio:.2}"),
                    (Some(ratio), Some([lowest, highest])) => {
                        format!("{ratio:.2} (turns {lowest:.2}-{highest:.2})")
                    }
                },
            ]
        })
        .collect();
    let header = ["suite", "measurement", "value", "raw limit", "ratio"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

/// Three significant digits, without exponent.
fn figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_what_is_better() {
        let rate = Measurement::new("s", "r", 80.0, "ev/s").with_limit(100.0, Better::Higher);
        assert_eq!(rate.ratio, Some(0.8));
        let time = Measurement::new("s", "t", 20.0, "ms").with_limit(10.0, Better::Lower);
        assert_eq!(time.ratio, Some(0.5));
        let shown = table(&[rate, time]);
        assert!(shown.contains("0.80") && shown.contains("0.50"), "{shown}");
        let turns = Interleaved {
            limit: 100.0,
            value: 79.0,
            lowest_ratio: 0.55,
            highest_ratio: 1.11,
        };
        let shown = table(&[Measurement::interleaved("s", "i", turns, "ev/s")]);
        assert!(shown.contains("0.79 (turns 0.55-1.11)"), "{shown}");
        let json = serde_json::to_value(Measurement::new("s", "n", 1.0, "x")).unwrap();
        assert_eq!(json["limit"], serde_json::Value::Null);
    }
}
