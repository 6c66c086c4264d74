//! The repository: load an aggregate, decide, append, retry on conflict.

mod cache;
mod command;
mod commit;
mod load;
mod policy;
mod unit_of_work;

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use uuid::Uuid;

use crate::RetryPolicy;

pub use command::{CommandContext, CommandError, CommandOutcome};
pub use policy::{CommandExhausted, SnapshotDecision, SnapshotPolicy};
pub use unit_of_work::UnitOfWork;

use crate::{Aggregate, AppendRequest, Error, EventStore, IntegrationEvent, Metadata, StreamId};
use cache::{CachedState, StateCache};

/// The default number of aggregate states a repository keeps warm.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// A domain event about to be appended, as the integration-event mapping sees
/// it.
#[derive(Debug)]
pub struct PendingEvent<'a, E> {
    /// The aggregate id (the stream id without the type prefix).
    pub aggregate_id: &'a str,
    /// The aggregate's stream.
    pub stream: &'a StreamId,
    /// The version the event will have.
    pub version: u64,
    /// The event's id; the outbox message gets the same id.
    pub event_id: Uuid,
    /// The event's metadata.
    pub metadata: &'a Metadata,
    /// The event.
    pub event: &'a E,
}

type IntegrationMapping<E> =
    Arc<dyn Fn(&PendingEvent<'_, E>) -> Result<Option<IntegrationEvent>, Error> + Send + Sync>;

/// An aggregate's state and the version it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state after the events up to `version`.
    pub state: A,
    /// The stream's version; 0 when it has no events.
    pub version: u64,
}

/// Executes commands on aggregates of type `A` stored in `S`.
///
/// `execute` loads the aggregate (snapshot and the events after it, or a warm
/// copy kept from the last command), lets it decide, and appends the events
/// with the version it decided on. When another writer got there first it
/// reloads and decides again, per the [`RetryPolicy`]. Every command has an
/// id; executing the same id again returns the first outcome and appends
/// nothing.
///
/// ```
/// # use annals::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default, Serialize, Deserialize)]
/// # struct Counter { value: u64 }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// # enum CounterEvent { #[event(name = "Incremented")] Incremented { by: u64 } }
/// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct ZeroIncrement;
/// # struct Increment(u64);
/// # impl Aggregate for Counter {
/// #     const TYPE: &'static str = "counter";
/// #     type Command = Increment; type Event = CounterEvent;
/// #     type Error = ZeroIncrement; type Services = ();
/// #     fn handle(&self, c: &Increment, _: &()) -> Result<Vec<CounterEvent>, ZeroIncrement> {
/// #         if c.0 == 0 { Err(ZeroIncrement) } else { Ok(vec![CounterEvent::Incremented { by: c.0 }]) }
/// #     }
/// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Incremented { by } = e; self.value += by; }
/// # }
/// use annals::{CommandContext, MemoryEventStore, Repository, SnapshotPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let repository = Repository::<Counter, _>::new(MemoryEventStore::new())
///     .with_snapshots(SnapshotPolicy::Every(100));
///
/// let outcome = repository.execute("c-1", &Increment(5)).await?;
/// assert_eq!(outcome.version, 1);
///
/// // A resent command (same id) has no second effect.
/// let context = CommandContext::new();
/// repository.execute_with("c-1", &Increment(1), context.clone()).await?;
/// let again = repository.execute_with("c-1", &Increment(1), context).await?;
/// assert!(again.duplicate);
/// assert_eq!(repository.load("c-1").await?.state.value, 6);
/// # Ok(())
/// # }
/// ```
pub struct Repository<A: Aggregate, S> {
    store: S,
    services: Arc<A::Services>,
    snapshots: SnapshotPolicy,
    retry: RetryPolicy<CommandExhausted>,
    transient_retries: bool,
    cache: Option<Arc<StateCache<A>>>,
    integration: Option<IntegrationMapping<A::Event>>,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            services: Arc::clone(&self.services),
            snapshots: self.snapshots.clone(),
            retry: self.retry,
            transient_retries: self.transient_retries,
            cache: self.cache.clone(),
            integration: self.integration.clone(),
        }
    }
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::TYPE)
            .field("store", &self.store)
            .field("snapshots", &self.snapshots)
            .field("retry", &self.retry)
            .field("transient_retries", &self.transient_retries)
            .field("cache", &self.cache.is_some())
            .field("integration_events", &self.integration.is_some())
            .finish()
    }
}

/// The result of deciding a command on a loaded state.
pub(crate) struct Decision<A: Aggregate> {
    pub(crate) stream: StreamId,
    pub(crate) cached: CachedState<A>,
    pub(crate) events: Vec<A::Event>,
    pub(crate) request: Option<AppendRequest>,
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore,
{
    /// A repository over `store` with default services.
    pub fn new(store: S) -> Self
    where
        A::Services: Default,
    {
        Self::with_services(store, A::Services::default())
    }

    /// A repository over `store` whose aggregates decide with `services`.
    pub fn with_services(store: S, services: A::Services) -> Self {
        Repository {
            store,
            services: Arc::new(services),
            snapshots: SnapshotPolicy::Never,
            retry: RetryPolicy::default(),
            transient_retries: true,
            cache: Some(Arc::new(StateCache::new(
                NonZeroUsize::new(DEFAULT_CACHE_CAPACITY).expect("non-zero"),
            ))),
            integration: None,
        }
    }

    /// Sets when snapshots are taken.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = policy;
        self
    }

    /// Sets how conflicts and transient errors are retried (see
    /// [`CommandExhausted`] for the default).
    pub fn with_retry(mut self, policy: RetryPolicy<CommandExhausted>) -> Self {
        self.retry = policy;
        self
    }

    /// Sets whether retriable store errors (a lost connection, a
    /// serialization failure) are retried like conflicts (default true).
    /// Only commands with an id are retried after such an error: the id
    /// makes a retry whose first attempt did land a no-op.
    pub fn with_transient_retries(mut self, retry: bool) -> Self {
        self.transient_retries = retry;
        self
    }

    /// Keeps up to `capacity` aggregate states warm (0 turns the cache off).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache =
            NonZeroUsize::new(capacity).map(|capacity| Arc::new(StateCache::new(capacity)));
        self
    }

    /// Chooses which events leave the service: for each event about to be
    /// appended, `mapping` returns the integration event to write to the
    /// outbox in the same transaction, or `None`.
    pub fn with_integration_events(
        mut self,
        mapping: impl Fn(&PendingEvent<'_, A::Event>) -> Result<Option<IntegrationEvent>, Error>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.integration = Some(Arc::new(mapping));
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The services handed to the aggregate.
    pub fn services(&self) -> &A::Services {
        &self.services
    }

    /// The stream id of aggregate `id`.
    pub fn stream_id(id: &str) -> Result<StreamId, Error> {
        StreamId::for_aggregate(A::TYPE, id)
    }

    /// Loads aggregate `id` from the store (newest usable snapshot and the
    /// events after it), bypassing the cache.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, Error> {
        let stream = Self::stream_id(id)?;
        let loaded = self.load_stream(&stream).await?;
        Ok(Loaded {
            state: loaded.state,
            version: loaded.version,
        })
    }

    /// Executes `command` on aggregate `id` with a new command id.
    pub async fn execute(
        &self,
        id: &str,
        command: &A::Command,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        self.execute_with(id, command, CommandContext::new()).await
    }

    /// Executes `command` on aggregate `id` with the id and metadata of
    /// `context`.
    pub async fn execute_with(
        &self,
        id: &str,
        command: &A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let stream = Self::stream_id(id)?;
        let span = tracing::info_span!(
            "annals.command",
            aggregate = A::TYPE,
            stream = %stream,
            command_id = %context.command_id,
            correlation_id = %context.metadata.correlation_id.unwrap_or(context.command_id),
            attempts = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self
            .execute_with_retries(id, &stream, command, &context)
            .instrument(span)
            .await;
        let outcome = match &result {
            Ok(outcome) if outcome.duplicate => "duplicate",
            Ok(_) => "ok",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Store(error)) if error.is_conflict() => "conflict",
            Err(CommandError::Store(_)) => "error",
        };
        metrics::counter!("annals_commands_total", "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("annals_command_duration_seconds", "aggregate" => A::TYPE)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_with_retries(
        &self,
        id: &str,
        stream: &StreamId,
        command: &A::Command,
        context: &CommandContext,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempts", attempt);
            let result = match self.decide(id, stream.clone(), command, context).await {
                Err(CommandError::Rejected(rejection)) => {
                    // A resent command that already succeeded may be refused by
                    // the state it produced: answer with the first outcome.
                    return match self.store.command_outcome(context.command_id).await? {
                        Some(first) => Ok(self.duplicate_outcome(first).await?),
                        None => Err(CommandError::Rejected(rejection)),
                    };
                }
                Err(CommandError::Store(error)) => Err(error),
                Ok(decision) => self.commit(decision).await,
            };
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(error) if self.should_retry(&error, attempt) => {
                    if error.is_conflict() {
                        metrics::counter!("annals_append_conflicts_total", "aggregate" => A::TYPE)
                            .increment(1);
                    }
                    tracing::debug!(attempt, %error, "retrying command");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn should_retry(&self, error: &Error, attempt: u32) -> bool {
        !self.retry.exhausted(attempt)
            && (error.is_conflict() || (self.transient_retries && error.is_retriable()))
    }
}
