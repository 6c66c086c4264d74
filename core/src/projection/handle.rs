//! The handle of a spawned projection runner: its status and how to stop it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::runner::Request;
use super::{ProjectionState, ProjectionStatus, ReplayReport};
use crate::{Error, GlobalPosition};

/// A running projection: its status, the replay of its parked events, and
/// the way to stop it.
pub struct ProjectionHandle {
    status: watch::Receiver<ProjectionStatus>,
    shutdown: watch::Sender<bool>,
    requests: mpsc::Sender<Request>,
    task: JoinHandle<Result<(), Error>>,
}

impl std::fmt::Debug for ProjectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("status", &*self.status.borrow())
            .field("finished", &self.task.is_finished())
            .finish_non_exhaustive()
    }
}

impl ProjectionHandle {
    pub(super) fn new(
        status: watch::Receiver<ProjectionStatus>,
        shutdown: watch::Sender<bool>,
        requests: mpsc::Sender<Request>,
        task: JoinHandle<Result<(), Error>>,
    ) -> Self {
        ProjectionHandle {
            status,
            shutdown,
            requests,
            task,
        }
    }

    /// Asks the runner to apply again the events parked behind its
    /// checkpoint (see [`ProjectionRunner::replay_parked`](super::ProjectionRunner::replay_parked)),
    /// between two batches; waits for the answer. The runner answers while
    /// it is the active one; a standby answers once it takes over.
    pub async fn replay_parked(&self) -> Result<ReplayReport, Error> {
        let ended = || {
            Error::backend(
                "projection runner",
                false,
                "the runner has ended; replay with ProjectionRunner::replay_parked",
            )
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::ReplayParked(reply))
            .await
            .map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
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
