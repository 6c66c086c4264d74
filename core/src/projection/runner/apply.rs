//! Applying a batch: in one transaction while all goes well, one event at
//! a time with retries when not, parking what cannot be applied.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::worker::{Halt, Worker};
use crate::projection::{ParkedEvent, Projection, ProjectionBackend, ProjectionExhausted};
use crate::{Envelope, Error, EventStore, GlobalPosition, RecordedEvent};

/// One event of a batch after filtering and decoding: its envelopes are a
/// range of the batch's envelopes.
struct Item {
    record: RecordedEvent,
    decoded: Result<Range<usize>, Error>,
}

/// How one attempt failed.
pub(super) enum Attempt {
    /// The handler (or decoding) failed: counts against the event.
    Handler(String),
    /// The backend failed: retried without counting.
    Backend(String),
}

impl<S, B, P> Worker<S, B, P>
where
    S: EventStore,
    B: ProjectionBackend,
    P: Projection<B::Tx>,
{
    /// Applies one batch read after `checkpoint`; returns the new checkpoint.
    pub(super) async fn apply(
        &self,
        records: Vec<RecordedEvent>,
        checkpoint: GlobalPosition,
        lease: &B::Lease,
        parked: &mut HashSet<Uuid>,
        shutdown: &CancellationToken,
    ) -> Result<GlobalPosition, Halt> {
        let last = records
            .last()
            .map(|record| record.position)
            .unwrap_or(checkpoint);
        let mut envelopes: Vec<Envelope<P::Event>> = Vec::with_capacity(records.len());
        let items: Vec<Item> = records
            .into_iter()
            .filter(|record| self.filter.matches(record))
            .map(|record| {
                let decoded = record.to_envelopes().map(|decoded| {
                    let start = envelopes.len();
                    envelopes.extend(decoded);
                    start..envelopes.len()
                });
                Item { record, decoded }
            })
            .collect();
        // A batch with a parked event in it goes one by one, so that the
        // event is unparked in the transaction that applies it.
        let plain = items
            .iter()
            .all(|item| item.decoded.is_ok() && !parked.contains(&item.record.event_id));
        if self.backend.atomic_batches() && plain {
            match self.try_apply(&envelopes, checkpoint, last, None).await {
                Ok(()) => {
                    self.count_applied(items.len() as u64);
                    return Ok(last);
                }
                Err(Attempt::Handler(error)) => {
                    tracing::debug!(%error, "batch failed; applying its events one by one");
                }
                Err(Attempt::Backend(error)) => return Err(Halt::Resync(error)),
            }
        }
        self.apply_one_by_one(&envelopes, items, checkpoint, last, lease, parked, shutdown)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_one_by_one(
        &self,
        envelopes: &[Envelope<P::Event>],
        items: Vec<Item>,
        mut checkpoint: GlobalPosition,
        last: GlobalPosition,
        lease: &B::Lease,
        parked: &mut HashSet<Uuid>,
        shutdown: &CancellationToken,
    ) -> Result<GlobalPosition, Halt> {
        for item in items {
            let position = item.record.position;
            let mut attempts = 0;
            loop {
                if !self.backend.is_held(lease) {
                    return Err(Halt::LeaseLost);
                }
                attempts += 1;
                let unpark = parked
                    .contains(&item.record.event_id)
                    .then_some(item.record.event_id);
                let outcome = match &item.decoded {
                    Ok(range) => {
                        self.try_apply(&envelopes[range.clone()], checkpoint, position, unpark)
                            .await
                    }
                    // Decoding is deterministic: retrying cannot help.
                    Err(error) => {
                        attempts = self.settings.retry.max_attempts();
                        Err(Attempt::Handler(error.to_string()))
                    }
                };
                match outcome {
                    Ok(()) => {
                        checkpoint = position;
                        self.count_applied(1);
                        parked.remove(&item.record.event_id);
                        break;
                    }
                    // The store or connection failed, not the handler: it
                    // does not count against the event.
                    Err(Attempt::Backend(error)) => return Err(Halt::Resync(error)),
                    Err(Attempt::Handler(error))
                        if attempts < self.settings.retry.max_attempts() =>
                    {
                        self.note_error(&error);
                        tracing::warn!(event = %item.record.event_id, attempts, %error, "projection handler failed; retrying");
                        self.pause(self.settings.retry.delay(attempts), shutdown)
                            .await?;
                    }
                    Err(Attempt::Handler(error)) => {
                        checkpoint = self
                            .give_up(&item.record, error, attempts, checkpoint, parked)
                            .await?;
                        break;
                    }
                }
            }
        }
        if checkpoint < last {
            // The batch ended with events the filter skipped: move past them.
            checkpoint = self.advance(checkpoint, last).await?;
        }
        Ok(checkpoint)
    }

    /// Parks an event whose attempts are used up, then stops or skips it.
    async fn give_up(
        &self,
        record: &RecordedEvent,
        error: String,
        attempts: u32,
        checkpoint: GlobalPosition,
        parked: &mut HashSet<Uuid>,
    ) -> Result<GlobalPosition, Halt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        tracing::error!(event = %record.event_id, stream = %record.stream, version = record.version, %error, "parking an event the projection cannot apply");
        if parked.insert(record.event_id) {
            self.backend
                .park(ParkedEvent {
                    projection: name.to_owned(),
                    version,
                    event: record.clone(),
                    error: error.clone(),
                    attempts,
                    parked_at: Utc::now(),
                })
                .await
                .map_err(Halt::Failed)?;
            self.status.send_modify(|status| status.parked += 1);
            metrics::counter!("annals_projection_parked_total", "projection" => name.to_owned())
                .increment(1);
        }
        match self.settings.retry.on_exhausted() {
            ProjectionExhausted::Stop => Err(Halt::Stopped(format!(
                "event {} ({} at `{}` version {}) is parked: {error}",
                record.event_id, record.event_type, record.stream, record.version
            ))),
            ProjectionExhausted::Skip => {
                let next = self.advance(checkpoint, record.position).await?;
                self.status.send_modify(|status| status.skipped += 1);
                metrics::counter!("annals_projection_skipped_total", "projection" => name.to_owned()).increment(1);
                Ok(next)
            }
        }
    }

    /// Moves the checkpoint without applying anything.
    async fn advance(
        &self,
        from: GlobalPosition,
        to: GlobalPosition,
    ) -> Result<GlobalPosition, Halt> {
        match self.try_apply(&[], from, to, None).await {
            Ok(()) => Ok(to),
            Err(Attempt::Backend(error)) | Err(Attempt::Handler(error)) => Err(Halt::Resync(error)),
        }
    }

    /// Applies `envelopes` and moves the checkpoint from `from` to `to` in one
    /// transaction, unparking the event `unpark` in it.
    pub(super) async fn try_apply(
        &self,
        envelopes: &[Envelope<P::Event>],
        from: GlobalPosition,
        to: GlobalPosition,
        unpark: Option<Uuid>,
    ) -> Result<(), Attempt> {
        let (name, version) = (self.projection.name(), self.projection.version());
        let mut tx = self
            .backend
            .begin(name, version)
            .await
            .map_err(|error| Attempt::Backend(error.to_string()))?;
        if let Some(event_id) = unpark
            && let Err(error) = self.backend.unpark(&mut tx, name, version, event_id).await
        {
            let _ = self.backend.rollback(tx).await;
            return Err(Attempt::Backend(error.to_string()));
        }
        if !envelopes.is_empty()
            && let Err(error) = self.projection.handle_batch(&mut tx, envelopes).await
        {
            if let Err(rollback) = self.backend.rollback(tx).await {
                // The transaction's connection is gone: the failure is the
                // backend's, whatever the handler reported.
                return Err(Attempt::Backend(format!(
                    "{error} (rollback failed: {rollback})"
                )));
            }
            return Err(Attempt::Handler(error.to_string()));
        }
        self.backend
            .commit(tx, name, version, from, to)
            .await
            .map_err(|error| Attempt::Backend(error.to_string()))
    }

    async fn pause(&self, wait: Duration, shutdown: &CancellationToken) -> Result<(), Halt> {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = shutdown.cancelled() => Err(Halt::Shutdown),
        }
    }
}
