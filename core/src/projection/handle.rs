//! What a running projection offers beyond the common worker handle.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ProjectionStatus;
use super::runner::{ReplayReport, Request};
use crate::{Error, GlobalPosition, WorkerHandle};

/// A running projection, as [`ProjectionRunner::start`](super::ProjectionRunner::start)
/// returns it: its status, waiting, stopping, and (through
/// [`ProjectionControl`]) replaying its parked events.
pub type ProjectionHandle = WorkerHandle<ProjectionStatus, ProjectionControl>;

/// What a [`ProjectionHandle`] offers beyond the common worker operations.
#[derive(Debug)]
pub struct ProjectionControl {
    requests: mpsc::Sender<Request>,
}

impl ProjectionControl {
    pub(super) fn new(requests: mpsc::Sender<Request>) -> Self {
        ProjectionControl { requests }
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
}

impl ProjectionHandle {
    /// Waits until the runner's checkpoint reaches `position` (to read one's
    /// own writes from the read model) and returns the status then.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `timeout` passes first, [`Error::WorkerEnded`]
    /// when the runner stops first (by policy, or failing for good); both
    /// carry the last status.
    pub async fn wait_for(
        &self,
        position: GlobalPosition,
        timeout: Duration,
    ) -> Result<ProjectionStatus, Error> {
        self.wait_until(timeout, |status| status.checkpoint >= position)
            .await
    }
}
