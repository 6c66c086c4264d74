//! Session advisory locks on connections of their own: how one relay per
//! outbox shard and one runner per projection are chosen.
//!
//! Both sides of a lock's session watch it. The holder sends a round trip
//! every [`KEEPALIVE_INTERVAL`] and counts the lock lost when one takes
//! longer than [`KEEPALIVE_TIMEOUT`], so it notices within [`LOSS_BOUND`]
//! that the server may have released the lock (the backend was terminated,
//! the server restarted, the network went silent). The server is told to
//! drop a session whose client went silent within [`SERVER_DROP_BOUND`]
//! (TCP keepalive and `tcp_user_timeout` on the session), so that a silent
//! holder's lock is freed for a standby within seconds rather than the
//! operating system's default two hours.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::backend;

/// How often a waiting holder tries the lock. Polling rather than a
/// blocking `pg_advisory_lock` keeps the waiting connection answering, so
/// that a broken one is noticed and replaced.
const ACQUIRE_INTERVAL: Duration = Duration::from_millis(250);

/// How often a held lock checks its session with a round trip. The
/// connection notices a session the server ended at once; the round trip
/// notices a server or network that went silent.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long that round trip may take before the lock counts as lost.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Allowed for the holder's timers firing late and for what it does
/// between two looks at the lock (a relay hands at most the records it
/// holds to its producer).
const HOLDER_SLACK: Duration = Duration::from_secs(1);

/// The longest a holder may go on seeing its lock as held after the server
/// released it: the round trip that finds out starts at most one interval
/// later and is allowed its timeout, and the holder acts on it within the
/// slack.
pub(crate) const LOSS_BOUND: Duration = KEEPALIVE_INTERVAL
    .saturating_add(KEEPALIVE_TIMEOUT)
    .saturating_add(HOLDER_SLACK);

/// Server-side TCP settings of a lock's session, in seconds (milliseconds
/// for the user timeout): keepalive probes after 2 s without traffic, one a
/// second, and the connection dropped once what the server sent, or its
/// probes, went unacknowledged for 5 s.
const SERVER_KEEPALIVES_IDLE: u32 = 2;
const SERVER_KEEPALIVES_INTERVAL: u32 = 1;
const SERVER_KEEPALIVES_COUNT: u32 = 5;
const SERVER_USER_TIMEOUT_MS: u32 = 5_000;

/// How long after its client went silent the server drops a lock's session,
/// and with it the lock: the holder's last round trip is at most
/// [`KEEPALIVE_INTERVAL`] before it went silent, the user timeout runs from
/// the last packet the server received, and the probe that finds it out
/// comes at most one probe interval later. (Over a Unix socket the server
/// notices a vanished client at once; these settings do not apply there.)
pub(crate) const SERVER_DROP_BOUND: Duration = Duration::from_secs(
    KEEPALIVE_INTERVAL.as_secs()
        + SERVER_USER_TIMEOUT_MS as u64 / 1_000
        + SERVER_KEEPALIVES_INTERVAL as u64,
);

/// The settings of a lock's connection: `config`, with the server told to
/// drop the session when its client goes silent (added to any `options`
/// already given).
pub(crate) fn lock_config(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    let ours = format!(
        "-c tcp_keepalives_idle={SERVER_KEEPALIVES_IDLE} \
         -c tcp_keepalives_interval={SERVER_KEEPALIVES_INTERVAL} \
         -c tcp_keepalives_count={SERVER_KEEPALIVES_COUNT} \
         -c tcp_user_timeout={SERVER_USER_TIMEOUT_MS}"
    );
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {ours}"),
        _ => ours,
    };
    config.options(&options);
    config
}

/// A session-level advisory lock held by a connection outside the pool.
///
/// It holds exactly as long as that session: dropping it closes the
/// connection, which releases the lock, and a session that dies (the server
/// restarted, the backend was terminated, the network broke) releases it
/// for whoever waits.
pub(crate) struct SessionLock {
    client: Arc<tokio_postgres::Client>,
    held: Arc<AtomicBool>,
    connection: JoinHandle<()>,
    keepalive: JoinHandle<()>,
}

impl SessionLock {
    /// Opens a connection with `config` (and [`lock_config`]'s server
    /// settings) and waits on it until the advisory lock named `key`
    /// (hashed with `hashtextextended`) is free, then takes it.
    ///
    /// Errors: retriable when the server cannot be reached or the
    /// connection breaks while waiting.
    pub(crate) async fn acquire(
        config: &tokio_postgres::Config,
        tls: MakeRustlsConnect,
        key: &str,
    ) -> Result<SessionLock, annals::Error> {
        let (client, connection) = lock_config(config).connect(tls).await.map_err(backend)?;
        let held = Arc::new(AtomicBool::new(true));
        let mut connection = AbortOnDrop(Some(tokio::spawn({
            let held = Arc::clone(&held);
            async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "the connection of a session lock ended");
                }
                held.store(false, Ordering::SeqCst);
            }
        })));
        let statement = client
            .prepare(include_str!("../sql/relay/try_lease.sql"))
            .await
            .map_err(backend)?;
        loop {
            let locked: bool = client
                .query_one(&statement, &[&key])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(backend)?;
            if locked {
                break;
            }
            tokio::time::sleep(ACQUIRE_INTERVAL).await;
        }
        let client = Arc::new(client);
        let connection = connection.0.take().expect("set above");
        let keepalive = tokio::spawn(keep_alive(
            Arc::clone(&client),
            Arc::clone(&held),
            connection.abort_handle(),
        ));
        Ok(SessionLock {
            client,
            held,
            connection,
            keepalive,
        })
    }

    /// Whether the session, and with it the lock, is still there, as far as
    /// the holder knows (see [`LOSS_BOUND`]).
    pub(crate) fn holds(&self) -> bool {
        self.held.load(Ordering::SeqCst) && !self.client.is_closed()
    }

    /// The lock's connection: what runs on it cannot run once the lock is
    /// lost.
    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        // Dropping the connection's task closes its socket, which ends the
        // session and with it the lock.
        self.keepalive.abort();
        self.connection.abort();
    }
}

/// Aborts the connection task of a lock that was never handed out (the
/// acquiring future failed or was dropped while it waited).
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Marks the lock lost when its session stops answering, and closes the
/// connection then: a statement waiting on a silent connection (a
/// checkpoint being saved) fails at once instead of when the operating
/// system gives up on the socket.
async fn keep_alive(
    client: Arc<tokio_postgres::Client>,
    held: Arc<AtomicBool>,
    connection: AbortHandle,
) {
    let mut ticks = tokio::time::interval(KEEPALIVE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answered = tokio::time::timeout(KEEPALIVE_TIMEOUT, client.simple_query("SELECT 1"))
            .await
            .is_ok_and(|result| result.is_ok());
        if !answered {
            held.store(false, Ordering::SeqCst);
            connection.abort();
            tracing::warn!(
                timeout = ?KEEPALIVE_TIMEOUT,
                "a session lock's connection stopped answering; the lock counts as lost"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_session_asks_the_server_to_drop_it_when_its_client_goes_silent() {
        let config: tokio_postgres::Config = "postgres://u@h/db?options=-c%20search_path%3Dapp"
            .parse()
            .unwrap();
        let options = lock_config(&config).get_options().unwrap().to_owned();
        assert!(
            options.starts_with("-c search_path=app "),
            "the given options stay: {options}"
        );
        for setting in [
            "tcp_keepalives_idle=2",
            "tcp_keepalives_interval=1",
            "tcp_keepalives_count=5",
            "tcp_user_timeout=5000",
        ] {
            assert!(options.contains(&format!("-c {setting}")), "{options}");
        }
        let bare = lock_config(&"postgres://u@h/db".parse().unwrap());
        assert!(
            bare.get_options()
                .unwrap()
                .starts_with("-c tcp_keepalives_idle")
        );
        assert_eq!(LOSS_BOUND, Duration::from_secs(7));
        assert_eq!(SERVER_DROP_BOUND, Duration::from_secs(7));
    }
}
