//! Leases: session advisory locks on connections of their own. How one
//! relay per outbox shard and one runner per projection version are
//! chosen, and every other holder of something that only one process may
//! do at a time.
//!
//! Both sides of a lock's session watch it. The holder sends a round trip
//! every [`KEEPALIVE_INTERVAL`] and counts the lock lost when one takes
//! longer than [`KEEPALIVE_TIMEOUT`], so it notices within
//! [`PgLease::LOSS_BOUND`] that the server may have released the lock (the
//! backend was terminated, the server restarted, the network went silent).
//! The server drops a session whose client went silent within
//! [`PgLease::SERVER_DROP_BOUND`] (the TCP settings of every session of
//! its own, [`Sessions`](crate::database::Sessions)), so that a silent
//! holder's lock is freed for a standby within seconds rather than the
//! operating system's default two hours.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};

use crate::database::{Database, SERVER_DROP_BOUND};
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

/// A lease: a session-level advisory lock held by a connection of its own,
/// outside the pool. The lease of an outbox shard for a relay
/// ([`PgOutbox`](crate::PgOutbox)) and of a projection version for its
/// runner ([`PgProjectionBackend`](crate::PgProjectionBackend)).
///
/// It holds exactly as long as that session: dropping the lease closes the
/// connection, which releases the lock, and a session that dies (the server
/// restarted, the backend was terminated, the network broke, or it stopped
/// answering the lease's checks every second within five) releases it for
/// whoever waits. What must only happen while the lease holds (a relay's
/// checkpoint) is written on the lease's own connection, so that it cannot
/// be written once another holder took over.
pub struct PgLease {
    /// What the lease is of, e.g. "relay `orders` shard 0/4".
    holder: String,
    key: String,
    client: Arc<tokio_postgres::Client>,
    held: Arc<AtomicBool>,
    connection: JoinHandle<()>,
    keepalive: JoinHandle<()>,
}

impl PgLease {
    /// The longest the holder may go on seeing its lease held after the
    /// server released it, 7 s: the lease's connection makes a round trip
    /// every second and counts the lease lost (and closes the connection)
    /// when one takes over 5 s, and a second is allowed for the holder's
    /// timers and for handing over what it holds. It assumes the holder's
    /// process is not paused for longer than that second. A relay's default
    /// takeover grace adds this to its producer's delivery timeout.
    pub const LOSS_BOUND: Duration = KEEPALIVE_INTERVAL
        .saturating_add(KEEPALIVE_TIMEOUT)
        .saturating_add(HOLDER_SLACK);

    /// The longest the server keeps the session (and the lease) of a holder
    /// that went silent, a host gone or a network cut, over TCP, 7 s: the
    /// session has the server send TCP keepalive probes after 2 s without
    /// traffic and drop the connection once 5 s pass without an answer
    /// (`tcp_keepalives_*`, `tcp_user_timeout`), counted from the holder's
    /// last round trip, one a second. A standby then takes the lease within
    /// this, plus its own 250 ms between tries. (Over a Unix socket the
    /// server notices a vanished client at once.)
    pub const SERVER_DROP_BOUND: Duration = KEEPALIVE_INTERVAL.saturating_add(SERVER_DROP_BOUND);

    /// Opens a connection of `db`'s and waits on it until the advisory lock
    /// named `key` (hashed with `hashtextextended`) is free, then takes it
    /// for `holder`.
    ///
    /// Errors: retriable when the server cannot be reached or the
    /// connection breaks while waiting.
    pub(crate) async fn acquire(
        db: &Database,
        key: String,
        holder: String,
    ) -> Result<PgLease, annals::Error> {
        let (client, connection) = db.sessions.open().await.map_err(backend)?;
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
            .prepare(&db.sql.lease.try_lock)
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
            db.sql.lease.keepalive.clone(),
            connection.abort_handle(),
        ));
        Ok(PgLease {
            holder,
            key,
            client,
            held,
            connection,
            keepalive,
        })
    }

    /// Whether the session, and with it the lock, is still there, as far as
    /// the holder knows (see [`PgLease::LOSS_BOUND`]).
    pub(crate) fn holds(&self) -> bool {
        self.held.load(Ordering::SeqCst) && !self.client.is_closed()
    }

    /// What the lease is of, e.g. "relay `orders` shard 0/4".
    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    /// The advisory lock's name.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The lock's connection: what runs on it cannot run once the lock is
    /// lost.
    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }
}

impl fmt::Debug for PgLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLease")
            .field("holder", &self.holder)
            .field("held", &self.holds())
            .finish()
    }
}

impl Drop for PgLease {
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

/// Marks the lock lost when its session stops answering `keepalive`, and
/// closes the connection then: a statement waiting on a silent connection
/// (a checkpoint being saved) fails at once instead of when the operating
/// system gives up on the socket.
async fn keep_alive(
    client: Arc<tokio_postgres::Client>,
    held: Arc<AtomicBool>,
    keepalive: String,
    connection: AbortHandle,
) {
    let mut ticks = tokio::time::interval(KEEPALIVE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answered = tokio::time::timeout(KEEPALIVE_TIMEOUT, client.simple_query(&keepalive))
            .await
            .is_ok_and(|result| result.is_ok());
        if !answered {
            held.store(false, Ordering::SeqCst);
            connection.abort();
            tracing::warn!(
                timeout = ?KEEPALIVE_TIMEOUT,
                "a lease's connection stopped answering; the lease counts as lost"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_of_a_lease_are_seven_seconds() {
        assert_eq!(PgLease::LOSS_BOUND, Duration::from_secs(7));
        assert_eq!(PgLease::SERVER_DROP_BOUND, Duration::from_secs(7));
    }
}
