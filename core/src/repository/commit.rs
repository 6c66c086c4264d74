//! Deciding a command on a loaded state and appending what it decided: its
//! events, its snapshot and its integration events; the first outcome of a
//! resent command; the warm states kept between commands.

use futures::TryStreamExt;

use super::cache::CachedState;
use super::{
    CommandContext, CommandError, CommandOutcome, Decision, PendingEvent, Repository,
    SnapshotDecision,
};
use crate::{
    Aggregate, AppendOutcome, AppendRequest, Error, EventStore, ExpectedVersion, NewEvent,
    NewSnapshot, OutboxMessage, Payload, StreamId,
};

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore,
{
    pub(super) async fn commit(
        &self,
        decision: Decision<A>,
    ) -> Result<CommandOutcome<A::Event>, Error> {
        let Decision {
            stream,
            cached,
            events,
            request,
        } = decision;
        let Some(request) = request else {
            let version = cached.version;
            self.remember(stream.clone(), cached);
            return Ok(CommandOutcome {
                stream,
                version,
                events,
                position: None,
                duplicate: false,
            });
        };
        match self.store.append(request).await {
            Ok(outcome) if outcome.duplicate => self.duplicate_outcome(outcome).await,
            Ok(outcome) => {
                debug_assert_eq!(outcome.last_version, cached.version);
                self.remember(stream.clone(), cached);
                Ok(CommandOutcome {
                    stream,
                    version: outcome.last_version,
                    events,
                    position: Some(outcome.last_position),
                    duplicate: false,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Loads the state (warm or from the store), lets the aggregate decide and
    /// prepares the append; nothing is written.
    pub(crate) async fn decide(
        &self,
        id: &str,
        stream: StreamId,
        command: &A::Command,
        context: &CommandContext,
    ) -> Result<Decision<A>, CommandError<A::Error>> {
        let warm = self.cache.as_ref().and_then(|cache| cache.take(&stream));
        let was_warm = warm.is_some();
        let mut cached = match warm {
            Some(cached) => cached,
            None => self.load_stream(&stream).await?,
        };
        let mut decided = cached.state.handle(command, &self.services);
        if decided.is_err() && was_warm {
            // The warm copy may be behind the store: a refusal must come from
            // the stored state, so decide once more on a fresh load.
            cached = self.load_stream(&stream).await?;
            decided = cached.state.handle(command, &self.services);
        }
        let events = match decided {
            Ok(events) => events,
            Err(rejection) => {
                self.remember(stream, cached);
                return Err(CommandError::Rejected(rejection));
            }
        };
        if events.is_empty() {
            return Ok(Decision {
                stream,
                cached,
                events,
                request: None,
            });
        }
        let version_before = cached.version;
        let metadata = context.event_metadata();
        let mut request =
            AppendRequest::new(stream.clone(), ExpectedVersion::Exact(version_before))
                .command_id(context.command_id);
        request.events.reserve(events.len());
        for (offset, event) in (1..).zip(&events) {
            let new_event = NewEvent::new(event, metadata.clone())?;
            if let Some(message) =
                self.integration_message(id, &stream, version_before + offset, &new_event, event)?
            {
                request.outbox.push(message);
            }
            request.events.push(new_event);
            cached.state.apply(event);
        }
        cached.version = version_before + request.events.len() as u64;
        if self.snapshots.should_snapshot(SnapshotDecision {
            version_before,
            version_after: cached.version,
            last_snapshot: cached.last_snapshot,
        }) {
            let state = Payload::encode(&cached.state).map_err(|source| Error::Encode {
                what: format!("{} state for a snapshot", A::TYPE),
                source,
            })?;
            request.snapshot = Some(NewSnapshot {
                state_version: A::SNAPSHOT_VERSION,
                state,
            });
            cached.last_snapshot = cached.version;
        }
        Ok(Decision {
            stream,
            cached,
            events,
            request: Some(request),
        })
    }

    fn integration_message(
        &self,
        id: &str,
        stream: &StreamId,
        version: u64,
        new_event: &NewEvent,
        event: &A::Event,
    ) -> Result<Option<OutboxMessage>, Error> {
        let Some(mapping) = &self.integration else {
            return Ok(None);
        };
        let pending = PendingEvent {
            aggregate_id: id,
            stream,
            version,
            event_id: new_event.event_id,
            metadata: &new_event.metadata,
            event,
        };
        Ok(mapping(&pending)?.map(|integration| OutboxMessage {
            message_id: new_event.event_id,
            topic: integration.topic,
            key: integration.key.unwrap_or_else(|| id.to_owned()),
            event_type: integration.event_type,
            event_version: integration.event_version,
            payload: integration.payload,
            stream: stream.clone(),
            stream_version: version,
            metadata: new_event.metadata.clone(),
        }))
    }

    pub(crate) fn remember(&self, stream: StreamId, cached: CachedState<A>) {
        if let Some(cache) = &self.cache {
            cache.put(stream, cached);
        }
    }

    pub(crate) fn forget(&self, stream: &StreamId) {
        if let Some(cache) = &self.cache {
            cache.forget(stream);
        }
    }

    /// The first execution's outcome, re-read from the store.
    pub(super) async fn duplicate_outcome(
        &self,
        first: AppendOutcome,
    ) -> Result<CommandOutcome<A::Event>, Error> {
        self.forget(&first.stream);
        let records: Vec<_> = self
            .store
            .read_stream(first.stream.clone(), first.first_version)
            .try_take_while(|record| std::future::ready(Ok(record.version <= first.last_version)))
            .try_collect()
            .await?;
        let mut events = Vec::with_capacity(records.len());
        for record in &records {
            events.extend(record.decode::<A::Event>()?);
        }
        Ok(CommandOutcome {
            stream: first.stream,
            version: first.last_version,
            events,
            position: Some(first.last_position),
            duplicate: true,
        })
    }
}
