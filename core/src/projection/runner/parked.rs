//! Replaying parked events: those behind the checkpoint are applied again,
//! each in a transaction of its own that also unparks it.

use std::collections::HashSet;

use chrono::Utc;

use super::apply::Attempt;
use super::worker::Worker;
use super::{ReplayReport, Request};
use crate::projection::{ParkedEvent, Projection, ProjectionBackend};
use crate::{Error, EventStore, GlobalPosition};
use uuid::Uuid;

impl<S, B, P> Worker<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    /// Answers a handle's request between batches.
    pub(super) async fn answer(
        &self,
        request: Request,
        checkpoint: GlobalPosition,
        parked: &mut HashSet<Uuid>,
    ) {
        match request {
            Request::ReplayParked(reply) => {
                let _ = reply.send(self.replay_behind(checkpoint, parked).await);
            }
        }
    }

    /// Replays the events parked behind `checkpoint`; forgets those applied
    /// from `parked`.
    pub(super) async fn replay_behind(
        &self,
        checkpoint: GlobalPosition,
        parked: &mut HashSet<Uuid>,
    ) -> Result<ReplayReport, Error> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut report = ReplayReport::default();
        for event in self.backend.parked(name, version).await? {
            if event.event.position > checkpoint {
                report.ahead += 1;
                continue;
            }
            let event_id = event.event.event_id;
            let outcome = match event.event.to_envelopes::<P::Event>() {
                Ok(envelopes) => {
                    self.try_apply(&envelopes, checkpoint, checkpoint, Some(event_id))
                        .await
                }
                Err(error) => Err(Attempt::Handler(error.to_string())),
            };
            match outcome {
                Ok(()) => {
                    parked.remove(&event_id);
                    report.replayed += 1;
                    self.count_applied(1);
                    tracing::info!(event = %event_id, "replayed a parked event");
                }
                Err(Attempt::Handler(error)) => {
                    tracing::warn!(event = %event_id, %error, "a replayed parked event failed again; it stays parked");
                    report.failed += 1;
                    report.last_error = Some(error.clone());
                    self.backend
                        .park(ParkedEvent {
                            attempts: event.attempts.saturating_add(1),
                            error,
                            parked_at: Utc::now(),
                            ..event
                        })
                        .await?;
                }
                Err(Attempt::Backend(error)) => {
                    return Err(Error::backend("projection replay", true, error));
                }
            }
        }
        Ok(report)
    }
}
