//! The annals benchmark: throughput and latency of annals beside the raw
//! limits of the same machine, measured in one run.
//!
//! ```text
//! ANNALS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p annals-bench -- [SUITE...] [--json PATH] \
//!     [--turns N] [--scale-events N]
//! ```
//!
//! Without suites, every suite runs. Each run works in schemas of its own
//! and drops them at the end, except the filled store of the `scale`
//! suite, which later runs reuse.

mod database;
mod measure;
mod report;
mod suites;

use std::path::PathBuf;
use std::process::ExitCode;

use database::Database;
use report::Measurement;
use suites::Options;

const USAGE: &str = "usage: annals-bench [SUITE...] [--json PATH] [--turns N] [--scale-events N]";

#[derive(Debug)]
struct Arguments {
    suites: Vec<String>,
    json: Option<PathBuf>,
    options: Options,
}

fn parse(arguments: impl Iterator<Item = String>) -> Result<Arguments, String> {
    let mut parsed = Arguments {
        suites: Vec::new(),
        json: None,
        options: Options::default(),
    };
    let mut arguments = arguments.peekable();
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--json" => {
                let path = arguments.next().ok_or("--json needs a path")?;
                parsed.json = Some(PathBuf::from(path));
            }
            "--turns" => {
                let turns = number(arguments.next(), "--turns")?;
                parsed.options = parsed.options.with_turns(turns)?;
            }
            "--scale-events" => {
                let events = number(arguments.next(), "--scale-events")?;
                parsed.options = parsed.options.with_scale_events(events)?;
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            suite => parsed.suites.push(suite.to_owned()),
        }
    }
    if parsed.suites.is_empty() {
        parsed.suites = suites::SUITES
            .iter()
            .map(|&suite| suite.to_owned())
            .collect();
    }
    for suite in &parsed.suites {
        if !suites::SUITES.contains(&suite.as_str()) {
            return Err(format!(
                "unknown suite {suite:?}; the suites are: {}",
                suites::SUITES.join(", ")
            ));
        }
    }
    Ok(parsed)
}

fn number<T: std::str::FromStr>(word: Option<String>, option: &str) -> Result<T, String> {
    let word = word.ok_or_else(|| format!("{option} needs a number"))?;
    word.replace('_', "")
        .parse()
        .map_err(|_| format!("{option} needs a number, not {word:?}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let arguments = match parse(std::env::args().skip(1)) {
        Ok(arguments) => arguments,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("{problem}");
            }
            eprintln!(
                "{USAGE}\nsuites: {}\n{}",
                suites::SUITES.join(", "),
                suites::OPTIONS_HELP
            );
            return ExitCode::from(2);
        }
    };
    let database = match Database::from_env() {
        Ok(database) => database,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(2);
        }
    };
    let mut measurements: Vec<Measurement> = Vec::new();
    let mut failed = false;
    for suite in &arguments.suites {
        eprintln!("running suite {suite}...");
        match suites::run(suite, &database, &arguments.options).await {
            Ok(done) => measurements.extend(done),
            Err(problem) => {
                eprintln!("suite {suite} failed: {problem}");
                failed = true;
            }
        }
    }
    if let Err(error) = database.drop_schemas().await {
        eprintln!("could not drop the benchmark's schemas: {error}");
    }
    print!("{}", report::table(&measurements));
    if let Some(path) = &arguments.json {
        let written = serde_json::to_vec_pretty(&measurements)
            .map_err(|error| error.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|error| error.to_string()));
        if let Err(problem) = written {
            eprintln!("cannot write {}: {problem}", path.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Arguments, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn arguments_name_suites_and_a_json_path() {
        let parsed = args("append --json out.json").unwrap();
        assert_eq!(parsed.suites, ["append"]);
        assert_eq!(parsed.json, Some(PathBuf::from("out.json")));
        assert_eq!(args("").unwrap().suites, suites::SUITES);
        assert!(args("nonsense").is_err());
        assert!(args("--json").is_err());
        assert!(args("--fast").is_err());
        let sized = args("scale --turns 2 --scale-events 1_000_000").unwrap();
        assert_eq!(sized.options.turns, 2);
        assert_eq!(sized.options.scale_events, 1_000_000);
        assert!(args("--turns 0").is_err());
        assert!(args("--turns two").is_err());
        assert!(args("--scale-events 1234567").is_err());
    }
}
