//! Leases: session advisory locks on connections of their own. How one
//! relay per outbox shard and one runner per projection version are
//! chosen, and every other holder of something that only one process may
//! do at a time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::database::Database;
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
        let keepalive = tokio::spawn(keep_alive(
            Arc::clone(&client),
            Arc::clone(&held),
            db.sql.lease.keepalive.clone(),
        ));
        Ok(PgLease {
            holder,
            key,
            client,
            held,
            connection: connection.0.take().expect("set above"),
            keepalive,
        })
    }

    /// Whether the session, and with it the lock, is still there.
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

/// Marks the lock lost when its session stops answering `keepalive`.
async fn keep_alive(client: Arc<tokio_postgres::Client>, held: Arc<AtomicBool>, keepalive: String) {
    let mut ticks = tokio::time::interval(KEEPALIVE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answered = tokio::time::timeout(KEEPALIVE_TIMEOUT, client.simple_query(&keepalive))
            .await
            .is_ok_and(|result| result.is_ok());
        if !answered {
            held.store(false, Ordering::SeqCst);
            return;
        }
    }
}
