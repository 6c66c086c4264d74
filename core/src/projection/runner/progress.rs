//! What a runner reports: its state, lag, counts and last error, in its
//! status and as metrics.

use chrono::Utc;

use super::worker::Worker;
use crate::projection::{Projection, ProjectionBackend, ProjectionState};
use crate::{EventStore, GlobalPosition, RecordedEvent};

impl<S, B, P> Worker<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    /// Counts the events after `checkpoint` still to be read and looks at
    /// the horizon, for the status. A failed count is noted, not fatal: the
    /// reads report outages.
    pub(super) async fn count_backlog(&self, checkpoint: GlobalPosition) {
        // Another runner may have promoted a newer version meanwhile.
        if let Err(error) = self.serving().await {
            tracing::debug!(%error, "could not read the projection's serving version");
        }
        match self
            .store
            .global_backlog(checkpoint, self.settings.backlog_limit)
            .await
        {
            Ok(backlog) => {
                metrics::gauge!("annals_projection_lag_events", "projection" => self.projection.name().to_owned())
                    .set(backlog.events as f64);
                self.status.send_modify(|status| {
                    status.lag_events = Some(backlog.events);
                    status.lag_events_capped = backlog.capped;
                    status.horizon_held_for = backlog.horizon_held_for;
                });
            }
            Err(error) => {
                tracing::debug!(%error, "could not count the projection's backlog");
            }
        }
    }

    /// Notes a batch of `read` events applied up to `checkpoint`; `full`
    /// when more may follow at once.
    pub(super) fn note_applied(&self, checkpoint: GlobalPosition, read: u64, full: bool) {
        self.status.send_modify(|status| {
            status.checkpoint = checkpoint;
            status.lag_events = if full {
                status.lag_events.map(|events| events.saturating_sub(read))
            } else {
                // Caught up with what was readable at the read.
                Some(0)
            };
            if !full {
                status.lag_events_capped = false;
            }
        });
    }

    pub(super) fn set_state(&self, state: ProjectionState) {
        self.status.send_modify(|status| {
            status.state = state;
            status.updated_at = Utc::now();
        });
    }

    pub(super) fn note_error(&self, error: &str) {
        self.status.send_modify(|status| {
            status.last_error = Some(error.to_owned());
            status.updated_at = Utc::now();
        });
    }

    pub(super) fn count_applied(&self, events: u64) {
        self.status.send_modify(|status| status.applied += events);
        metrics::counter!("annals_projection_events_total", "projection" => self.projection.name().to_owned())
            .increment(events);
    }

    /// Records the lag seen at a read: `oldest` is the first unapplied event,
    /// `more` when the read was full.
    pub(super) fn note_lag(&self, oldest: Option<&RecordedEvent>, more: bool, rebuilding: bool) {
        let lag = oldest
            .map(|record| {
                (Utc::now() - record.recorded_at)
                    .to_std()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let name = self.projection.name().to_owned();
        metrics::gauge!("annals_projection_lag_seconds", "projection" => name)
            .set(lag.as_secs_f64());
        self.status.send_modify(|status| {
            status.lag = lag;
            status.state = match (&status.state, more) {
                (ProjectionState::Stopped { .. }, _) => status.state.clone(),
                _ if rebuilding => ProjectionState::Rebuilding,
                (_, true) => ProjectionState::CatchingUp,
                (_, false) if oldest.is_none() => ProjectionState::Live,
                (state, false) => state.clone(),
            };
            status.updated_at = Utc::now();
        });
    }
}
