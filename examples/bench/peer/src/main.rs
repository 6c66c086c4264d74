//! The cqrs-es side of annals-bench's `peer` suite: cqrs-es with
//! postgres-es, used as its documentation shows, on the same PostgreSQL
//! and the same domain as annals. annals-bench starts it and asks for one
//! measurement at a time, so that its windows take turns with those of
//! annals and of the raw limit.
//!
//! ```text
//! ANNALS_TEST_DATABASE_URL=postgres://... annals-bench-peer SCHEMA
//! ```
//!
//! It creates the postgres-es tables in the schema `SCHEMA` (which the
//! caller drops), prints `ready`, then answers one line per request line
//! on standard input, `ok VALUE` or `error MESSAGE`:
//!
//! * `commands WRITERS POOL EVENTS WARM_UP_MS MEASURED_MS`: commands of
//!   `EVENTS` events by `WRITERS` writers through one `CqrsFramework` on a
//!   pool of `POOL` connections, each writer taking turns over 64 new
//!   aggregates of its own; VALUE is commands per second in the measured
//!   part of the window.
//! * `write-load EVENTS`: writes the aggregate the loads read, in commands
//!   of 100 events; VALUE is its version.
//! * `load`: loads that aggregate once (`EventStore::load_aggregate`);
//!   VALUE is the time it took, in nanoseconds.
//!
//! It ends at the end of its input.

mod account;
mod work;

use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use work::Peer;

#[tokio::main]
async fn main() -> ExitCode {
    let (Ok(url), Some(schema)) = (
        std::env::var("ANNALS_TEST_DATABASE_URL"),
        std::env::args().nth(1),
    ) else {
        eprintln!("usage: ANNALS_TEST_DATABASE_URL=postgres://... annals-bench-peer SCHEMA");
        return ExitCode::from(2);
    };
    let mut peer = match Peer::create(&url, &schema).await {
        Ok(peer) => peer,
        Err(problem) => {
            eprintln!("annals-bench-peer: {problem}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    if reply(&mut stdout, "ready").await.is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("annals-bench-peer: reading the requests: {error}");
                return ExitCode::FAILURE;
            }
        };
        let answer = match peer.answer(&line).await {
            Ok(value) => format!("ok {value}"),
            Err(problem) => format!("error {}", problem.replace('\n', " ")),
        };
        if reply(&mut stdout, &answer).await.is_err() {
            return ExitCode::FAILURE;
        }
    }
}

async fn reply(stdout: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    stdout.write_all(format!("{line}\n").as_bytes()).await?;
    stdout.flush().await
}
