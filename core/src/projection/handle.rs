//! The handle of a spawned projection runner: its status and how to stop it.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ProjectionState, ProjectionStatus};
use crate::{Error, GlobalPosition};

/// A running projection: its status, and the way to stop it.
#[derive(Debug)]
pub struct ProjectionHandle {
    status: watch::Receiver<ProjectionStatus>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), Error>>,
}

impl ProjectionHandle {
    pub(super) fn new(
        status: watch::Receiver<ProjectionStatus>,
        shutdown: watch::Sender<bool>,
        task: JoinHandle<Result<(), Error>>,
    ) -> Self {
        ProjectionHandle {
            status,
            shutdown,
            task,
        }
    }

    /// The current status.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Waits until the checkpoint reaches `position` (read your writes), the
    /// runner stops, or `timeout` passes. Returns the status then.
    pub async fn wait_for(
        &mut self,
        position: GlobalPosition,
        timeout: Duration,
    ) -> ProjectionStatus {
        let reached = |status: &ProjectionStatus| {
            status.checkpoint >= position || matches!(status.state, ProjectionState::Stopped { .. })
        };
        let _ = tokio::time::timeout(timeout, self.status.wait_for(reached)).await;
        self.status()
    }

    /// Waits until the status satisfies `condition` or `timeout` passes.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        condition: impl FnMut(&ProjectionStatus) -> bool,
    ) -> ProjectionStatus {
        let _ = tokio::time::timeout(timeout, self.status.wait_for(condition)).await;
        self.status()
    }

    /// Whether the runner task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks the runner to stop after the batch in hand and waits for it.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(join) if join.is_cancelled() => Ok(()),
            Err(join) => Err(Error::backend("projection runner", false, join)),
        }
    }

    /// Stops the runner at once, as a crash would: the batch in hand is
    /// rolled back by its backend.
    pub fn abort(self) {
        self.task.abort();
    }
}
