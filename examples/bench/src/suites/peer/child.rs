//! The cqrs-es side of the peer suite: the program in `examples/bench/peer`
//! (a Cargo workspace of its own, so that cqrs-es, postgres-es and sqlx stay
//! out of the annals workspace's builds), built and started as a child
//! process that makes one measurement per request.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::database::Database;
use crate::measure::Window;

/// The peer's manifest, beside this crate's.
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peer/Cargo.toml");
/// The peer's lock file: which versions of cqrs-es and postgres-es it runs.
const LOCK: &str = include_str!("../../../peer/Cargo.lock");
/// A built peer to run instead of building it.
const PEER_ENV: &str = "ANNALS_BENCH_PEER";

/// A running peer program, answering one request at a time.
#[derive(Debug)]
pub(super) struct Peer {
    child: Child,
    pipes: Mutex<Option<(ChildStdin, BufReader<ChildStdout>)>>,
}

impl Peer {
    /// Builds the peer (unless `ANNALS_BENCH_PEER` names a built one) and
    /// starts it on a new schema of `database`.
    pub(super) async fn start(database: &Database) -> Result<Self, String> {
        let program = match std::env::var_os(PEER_ENV) {
            Some(path) => PathBuf::from(path),
            None => tokio::task::spawn_blocking(build)
                .await
                .map_err(|error| error.to_string())??,
        };
        let schema = database.new_schema("peer_cqrs_es");
        let mut child = Command::new(&program)
            .arg(&schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", program.display()))?;
        let pipes = child
            .stdin
            .take()
            .zip(child.stdout.take().map(BufReader::new));
        let peer = Peer {
            child,
            pipes: Mutex::new(pipes),
        };
        match tokio::task::block_in_place(|| peer.answer(None))?.as_str() {
            "ready" => Ok(peer),
            other => Err(format!("the peer did not start: {other}")),
        }
    }

    /// Commands per second of `writers` writers on a pool of `connections`,
    /// each command writing `events` events, in `window`.
    pub(super) async fn commands(
        &self,
        writers: usize,
        connections: usize,
        events: usize,
        window: Window,
    ) -> Result<f64, String> {
        let request = format!(
            "commands {writers} {connections} {events} {} {}",
            window.warm_up.as_millis(),
            window.measured.as_millis()
        );
        self.value(&request)
            .await?
            .parse()
            .map_err(|_| "a rate that is no number".to_owned())
    }

    /// Writes the aggregate the loads read, `events` deposits.
    pub(super) async fn write_load(&self, events: usize) -> Result<(), String> {
        let version = self.value(&format!("write-load {events}")).await?;
        if version == events.to_string() {
            Ok(())
        } else {
            Err(format!("the peer wrote {version} events, not {events}"))
        }
    }

    /// How long one load of that aggregate took.
    pub(super) async fn load(&self) -> Result<Duration, String> {
        let nanos: u64 = self
            .value("load")
            .await?
            .parse()
            .map_err(|_| "a duration that is no number".to_owned())?;
        Ok(Duration::from_nanos(nanos))
    }

    /// The value of an `ok` answer to `request`.
    async fn value(&self, request: &str) -> Result<String, String> {
        let answer = tokio::task::block_in_place(|| self.answer(Some(request)))?;
        match answer.split_once(' ') {
            Some(("ok", value)) => Ok(value.to_owned()),
            Some(("error", problem)) => Err(format!("cqrs-es: {problem}")),
            _ => Err(format!("the peer answered {answer:?} to {request:?}")),
        }
    }

    /// Sends `request`, if any, and reads the answer line. The child works
    /// while this thread waits, so nothing else of this process competes
    /// with it for the CPU.
    fn answer(&self, request: Option<&str>) -> Result<String, String> {
        let mut pipes = self
            .pipes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stdin, stdout) = pipes.as_mut().ok_or("the peer has no pipes")?;
        if let Some(request) = request {
            writeln!(stdin, "{request}")
                .and_then(|()| stdin.flush())
                .map_err(|error| format!("the peer stopped listening: {error}"))?;
        }
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(0) => Err("the peer ended".to_owned()),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(error) => Err(format!("cannot read the peer's answer: {error}")),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing its input ends the peer; waiting reaps it.
        drop(
            self.pipes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
        );
        let _ = self.child.wait();
    }
}

/// The version of `package` in the peer's lock file.
pub(super) fn locked_version(package: &str) -> &'static str {
    let mut lines = LOCK.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(version) = lines
                .next()
                .and_then(|line| line.strip_prefix("version = \""))
                .and_then(|rest| rest.strip_suffix('"'))
        {
            return version;
        }
    }
    "?"
}

/// Builds the peer in release mode with the lock file's versions; the
/// path of its program.
fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("  building the peer ({MANIFEST})...");
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(MANIFEST)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run cargo to build the peer: {error}"))?;
    if !output.status.success() {
        return Err(format!("building the peer failed ({})", output.status));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "annals-bench-peer")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no peer program".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_names_the_peer_versions() {
        assert_ne!(locked_version("cqrs-es"), "?");
        assert_ne!(locked_version("postgres-es"), "?");
        assert_eq!(locked_version("no-such-package"), "?");
    }
}
