//! Projections: read models built from the global stream, each event applied
//! once, in order, together with the checkpoint.

mod backend;
mod filter;
mod handle;
mod runner;
mod status;

use crate::{BoxError, DomainEvent, Envelope};

pub use backend::{ParkedEvent, ProjectionBackend};
pub use filter::EventFilter;
pub use handle::{ProjectionControl, ProjectionHandle};
pub use runner::{ProjectionRunner, ReplayReport};
pub use status::{ProjectionExhausted, ProjectionState, ProjectionStatus};

/// A read model fed by the global stream.
///
/// `Tx` is what the backend hands the handler to write with: for the
/// Postgres runner a transaction that also writes the checkpoint, so the read
/// model and the checkpoint move together; for the in-memory runner `()`.
/// A type may implement `Projection` for several backends.
///
/// A new [`Projection::version`] builds the read model again from the start
/// of the global stream, beside the old one: each version keeps its own
/// checkpoint (and, written by its handler, its own tables), the version
/// that serves queries stays the serving one while the new one rebuilds,
/// and the runner of the new version switches them in one transaction once
/// it has caught up ([`Projection::promote`]). [`ProjectionRunner::reset`]
/// clears one version and replays it from the start instead.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
///
/// use annals::{BoxError, DomainEvent, Envelope, Projection};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
/// enum OrderEvent {
///     #[event(name = "OrderPlaced")]
///     Placed { customer: String },
/// }
///
/// /// Orders per customer, in memory.
/// #[derive(Default)]
/// struct OrdersPerCustomer(Arc<Mutex<HashMap<String, u32>>>);
///
/// impl Projection<()> for OrdersPerCustomer {
///     type Event = OrderEvent;
///
///     fn name(&self) -> &str {
///         "orders_per_customer"
///     }
///
///     async fn handle(&self, _: &mut (), event: &Envelope<OrderEvent>) -> Result<(), BoxError> {
///         let OrderEvent::Placed { customer } = &event.event;
///         *self.0.lock().unwrap().entry(customer.clone()).or_default() += 1;
///         Ok(())
///     }
/// }
/// ```
pub trait Projection<Tx: Send>: Send + Sync + 'static {
    /// The events it reads; events of other types are not given to it (see
    /// [`Projection::filter`]).
    type Event: DomainEvent;

    /// A stable name, the key of its checkpoint.
    fn name(&self) -> &str;

    /// The version of the read model's shape and logic; bump it to rebuild.
    fn version(&self) -> u32 {
        1
    }

    /// Which stored events it reads. By default every type that
    /// [`Projection::Event`] decodes, directly or through its upcasters;
    /// events of other types advance the checkpoint without reaching the
    /// handler.
    fn filter(&self) -> EventFilter {
        EventFilter::for_event::<Self::Event>()
    }

    /// Creates what the read model needs (tables, indexes) before the first
    /// event; runs in its own transaction each time a runner starts, so it
    /// must be idempotent.
    fn setup(&self, _tx: &mut Tx) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// Makes this version the one that serves queries, in the transaction
    /// that records the switch: repoint a view at this version's tables,
    /// rename them, and so on. Runs once per version: when the first version
    /// of a projection starts, and when a new version has caught up with the
    /// global stream while an older one served. The default does nothing,
    /// for read models whose readers ask which version serves
    /// (`PgProjectionBackend::serving` in `annals-postgres`).
    fn promote(&self, _tx: &mut Tx) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// Clears this version's read model, in the transaction that also forgets
    /// its checkpoint and parked events, so that it is built again from the
    /// start of the global stream ([`ProjectionRunner::reset`]). The default
    /// refuses: a projection that is not told how to clear its read model
    /// would apply every event a second time on top of it.
    fn reset(&self, _tx: &mut Tx) -> impl Future<Output = Result<(), BoxError>> + Send {
        let name = self.name().to_owned();
        async move {
            Err(format!(
                "projection `{name}` does not say how to clear its read model; implement Projection::reset"
            )
            .into())
        }
    }

    /// Applies one event.
    fn handle(
        &self,
        tx: &mut Tx,
        event: &Envelope<Self::Event>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Applies a batch of events in order, in one transaction. The default
    /// calls [`Projection::handle`] for each; override it to write a batch
    /// in fewer statements.
    fn handle_batch(
        &self,
        tx: &mut Tx,
        events: &[Envelope<Self::Event>],
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        async move {
            for event in events {
                self.handle(tx, event).await?;
            }
            Ok(())
        }
    }
}
