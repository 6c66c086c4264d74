//! Aggregates: the decision (`handle`) and the evolution (`apply`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::DomainEvent;

/// A consistency boundary whose state is the fold of its events.
///
/// `handle` decides which events a command produces, from the current state
/// alone (plus read-only services); `apply` evolves the state by one event and
/// cannot fail: an event is a fact.
///
/// The state is serialisable so that it can be snapshotted; bump
/// [`Aggregate::SNAPSHOT_VERSION`] when its shape changes and old snapshots
/// will be ignored.
///
/// ```
/// use annals::{Aggregate, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// struct Counter { value: u64 }
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// enum CounterEvent {
///     #[event(name = "Incremented")]
///     Incremented { by: u64 },
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot increment by zero")]
/// struct ZeroIncrement;
///
/// struct Increment(u64);
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Command = Increment;
///     type Event = CounterEvent;
///     type Error = ZeroIncrement;
///     type Services = ();
///
///     fn handle(&self, command: &Increment, _: &()) -> Result<Vec<CounterEvent>, ZeroIncrement> {
///         match command.0 {
///             0 => Err(ZeroIncrement),
///             by => Ok(vec![CounterEvent::Incremented { by }]),
///         }
///     }
///
///     fn apply(&mut self, event: &CounterEvent) {
///         match event {
///             CounterEvent::Incremented { by } => self.value += by,
///         }
///     }
/// }
///
/// let mut counter = Counter::default();
/// for event in counter.handle(&Increment(2), &()).unwrap() {
///     counter.apply(&event);
/// }
/// assert_eq!(counter.value, 2);
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type: the prefix of its stream ids (`{TYPE}-{id}`).
    const TYPE: &'static str;

    /// The schema version of the serialised state, checked on snapshot load.
    const SNAPSHOT_VERSION: u32 = 1;

    /// What it is asked to do.
    type Command: Send + Sync;

    /// What happened to it.
    type Event: DomainEvent;

    /// Why a command was refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Read-only dependencies of the decision (a clock, a price list); `()`
    /// when none.
    type Services: Send + Sync + 'static;

    /// Decides the events that `command` produces, or refuses it.
    fn handle(
        &self,
        command: &Self::Command,
        services: &Self::Services,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves the state by one event.
    fn apply(&mut self, event: &Self::Event);
}
