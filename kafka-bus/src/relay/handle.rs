//! The handle of a running relay: its status, and stopping it.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::status::{RelayStatus, StatusCell};

/// A running [`OutboxRelay`](crate::OutboxRelay).
///
/// Dropping the handle stops the relay gracefully in the background; await
/// [`RelayHandle::stop`] to know when it is done.
#[derive(Debug)]
pub struct RelayHandle {
    name: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    statuses: Vec<StatusCell>,
}

impl RelayHandle {
    pub(super) fn new(
        name: String,
        stop: watch::Sender<bool>,
        tasks: Vec<JoinHandle<()>>,
        statuses: Vec<StatusCell>,
    ) -> Self {
        RelayHandle {
            name,
            stop,
            tasks,
            statuses,
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
