//! The handle of a running relay: its status, waiting until it drained the
//! outbox, and stopping it.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::drained::WaitingCount;
use super::status::{RelayStatus, StatusCell};

/// How often [`RelayHandle::wait_until_drained`] looks at the store.
const DRAINED_POLL: Duration = Duration::from_millis(25);

/// A running [`OutboxRelay`](crate::OutboxRelay).
///
/// Dropping the handle stops the relay gracefully in the background; await
/// [`RelayHandle::stop`] to know when it is done.
pub struct RelayHandle {
    name: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    statuses: Vec<StatusCell>,
    waiting: WaitingCount,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("name", &self.name)
            .field("shards", &self.statuses.len())
            .finish_non_exhaustive()
    }
}

impl RelayHandle {
    pub(super) fn new(
        name: String,
        stop: watch::Sender<bool>,
        tasks: Vec<JoinHandle<()>>,
        statuses: Vec<StatusCell>,
        waiting: WaitingCount,
    ) -> Self {
        RelayHandle {
            name,
            stop,
            tasks,
            statuses,
            waiting,
        }
    }

    /// The relay's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What each shard is doing, how far it got and what waits in it.
    pub fn status(&self) -> RelayStatus {
        RelayStatus {
            relay: self.name.clone(),
            shards: self.statuses.iter().map(StatusCell::get).collect(),
        }
    }

    /// Waits until the outbox is drained: nothing written to any of the
    /// relay's shards waits after the relay's saved checkpoints (records
    /// that the store's horizon still hides count as waiting). Each look
    /// reads the store, not the status, so the answer is as fresh as the
    /// call; with writers still appending, it returns at the first look
    /// that finds nothing waiting. Any instance of the relay (of the same
    /// name) may have done the publishing: a standby can wait too.
    ///
    /// Errors: [`annals::Error::Timeout`] with what waited at the last look
    /// (its `status`) when `timeout` runs out; the store's error when the
    /// store could not be read at the last look.
    ///
    /// ```no_run
    /// # async fn run(relay: annals_kafka::RelayHandle) -> Result<(), annals::Error> {
    /// use std::time::Duration;
    ///
    /// relay.wait_until_drained(Duration::from_secs(30)).await?;
    /// let status = relay.stop().await;
    /// println!("{} published", status.published());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_until_drained(&self, timeout: Duration) -> Result<(), annals::Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = (self.waiting)().await;
            if matches!(last, Ok(0)) {
                return Ok(());
            }
            if tokio::time::Instant::now() + DRAINED_POLL > deadline {
                return Err(match last {
                    Ok(waiting) => annals::Error::Timeout {
                        worker: self.name.clone(),
                        what: "drain the outbox".to_owned(),
                        waited: timeout,
                        status: format!("{waiting} records wait after its checkpoints"),
                    },
                    Err(error) => error,
                });
            }
            tokio::time::sleep(DRAINED_POLL).await;
        }
    }

    /// Stops gracefully: reads nothing more, waits until the broker acked
    /// what is in flight (up to the shutdown timeout), saves the checkpoint
    /// and releases the leases, so that a standby can take over. Returns the
    /// final status.
    ///
    /// # Panics
    ///
    /// Resumes the panic of a shard task that panicked.
    pub async fn stop(mut self) -> RelayStatus {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        self.status()
    }

    /// Stops at once, as a crash would: nothing is flushed, no checkpoint is
    /// saved, the producers are dropped with what they had in flight and the
    /// leases are released. Returns once the tasks are gone. For tests of
    /// what happens after a crash.
    pub async fn abort(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
