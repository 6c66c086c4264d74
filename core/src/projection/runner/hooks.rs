//! The projection's own code that runs in a transaction of its own:
//! `setup` when a runner takes the lease, `promote` when a version starts
//! serving queries.

use super::worker::{Halt, Worker};
use crate::projection::{Projection, ProjectionBackend};
use crate::{BoxError, Error, EventStore, GlobalPosition};

/// A projection hook that runs in a transaction of its own.
enum Hook {
    Setup,
    Promote,
}

impl<S, B, P> Worker<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    /// The error of the projection's own code failing in `step`.
    pub(super) fn failed_in(&self, step: &'static str, cause: BoxError) -> Error {
        Error::Projection {
            projection: self.projection.name().to_owned(),
            step,
            cause,
        }
    }

    /// The version that serves queries; noted in the status.
    pub(super) async fn serving(&self) -> Result<Option<u32>, Error> {
        let serving = self.backend.serving(self.projection.name()).await?;
        self.status
            .send_modify(|status| status.serving_version = serving);
        Ok(serving)
    }

    /// Makes this version the one that serves queries, unless a newer one
    /// does already.
    pub(super) async fn promote(&self) -> Result<(), Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let tx = self.hook(Hook::Promote).await?;
        if self
            .backend
            .promote(tx, name, version)
            .await
            .map_err(|error| Halt::Resync(error.to_string()))?
        {
            tracing::info!(projection = %name, version, "this version now serves queries");
        }
        match self.serving().await {
            Ok(Some(serving)) if serving > version => {
                tracing::info!(projection = %name, version, serving, "a newer version serves queries; this one is applied only for readers that still use it");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(error) => Err(Halt::Failed(error)),
        }
    }

    /// Runs the projection's `hook` in a new transaction, to be committed by
    /// the caller.
    async fn hook(&self, hook: Hook) -> Result<B::Tx, Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self
            .backend
            .begin(name, version)
            .await
            .map_err(Halt::Failed)?;
        let (step, ran) = match hook {
            Hook::Setup => ("setup", self.projection.setup(&mut tx).await),
            Hook::Promote => ("promote", self.projection.promote(&mut tx).await),
        };
        match ran {
            Ok(()) => Ok(tx),
            Err(cause) => Err(match self.backend.rollback(tx).await {
                Ok(()) => Halt::Failed(self.failed_in(step, cause)),
                Err(rollback) => Halt::Resync(format!("{cause} (rollback failed: {rollback})")),
            }),
        }
    }

    pub(super) async fn setup(&self) -> Result<(), Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let tx = self.hook(Hook::Setup).await?;
        let checkpoint = self
            .backend
            .checkpoint(name, version)
            .await
            .map_err(Halt::Failed)?
            .unwrap_or(GlobalPosition::START);
        self.backend
            .commit(tx, name, version, checkpoint, checkpoint)
            .await
            .map_err(Halt::Failed)
    }

    /// Clears this version's read model, checkpoint and parked events in one
    /// transaction, under the version's lease.
    pub(super) async fn reset(&self) -> Result<(), Error> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let _lease = self.backend.acquire(name, version).await?;
        let mut tx = self.backend.begin(name, version).await?;
        if let Err(cause) = self.projection.reset(&mut tx).await {
            let _ = self.backend.rollback(tx).await;
            return Err(self.failed_in("reset", cause));
        }
        self.backend.reset(tx, name, version).await?;
        tracing::info!(projection = %name, version, "projection reset; the next run replays it from the start");
        Ok(())
    }
}
