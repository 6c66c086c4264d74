//! What a consumer calls for each record: handlers, typed by the event they
//! decode.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use annals::{BoxError, DomainEvent};

use crate::IncomingMessage;

/// One decoded event and the record it came in: what a handler receives.
///
/// A record usually decodes into one event; an upcaster may split it into
/// several (the handler is then called for each, in one transaction) or drop
/// it (the handler is not called, the record counts as handled).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent<E> {
    /// The event, decoded through `E`'s upcasters.
    pub event: E,
    /// The record: message id, type, key, origin, correlation and trace
    /// context, headers.
    pub message: IncomingMessage,
}

/// The future a handler closure returns: boxed, because a closure cannot
/// name the lifetime of its arguments otherwise.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// Handles the events of one [`DomainEvent`] type inside the inbox's
/// transaction `Tx`.
///
/// For a consumer with a Postgres inbox `Tx` is the transaction that also
/// records the message id, so what the handler writes through it happens
/// exactly once per message. With [`NoInbox`](crate::NoInbox) `Tx` is `()`
/// and a redelivered record runs the handler again (at-least-once).
///
/// An error makes the consumer roll the transaction back and retry per its
/// [`FailurePolicy`](crate::FailurePolicy); an [`annals::Error`] or
/// [`Error`](crate::Error) anywhere in the error's source chain that
/// [is retriable](annals::Error::is_retriable) is retried without counting
/// as an attempt. A panic counts as a failed attempt.
///
/// This trait is also the hook for anything else that reacts to integration
/// events, such as a saga runtime: implement it and register it with
/// [`ConsumerBuilder::handler`](crate::ConsumerBuilder::handler). For small
/// handlers, [`ConsumerBuilder::on`](crate::ConsumerBuilder::on) takes a
/// closure.
///
/// ```
/// use annals::{BoxError, DomainEvent, MemoryInboxTx};
/// use annals_kafka::{Handler, ReceivedEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, DomainEvent)]
/// #[event(name = "OrderConfirmed")]
/// struct OrderConfirmed {
///     order_id: String,
/// }
///
/// struct ScheduleShipment;
///
/// impl Handler<MemoryInboxTx> for ScheduleShipment {
///     type Event = OrderConfirmed;
///
///     async fn handle(
///         &self,
///         _tx: &mut MemoryInboxTx,
///         received: &ReceivedEvent<OrderConfirmed>,
///     ) -> Result<(), BoxError> {
///         println!("shipping {}", received.event.order_id);
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<Tx>: Send + Sync + 'static {
    /// The events it handles; records of every type this decodes (directly
    /// or through its upcasters) are routed to it.
    type Event: DomainEvent;

    /// Handles one event, writing its effects through `tx`.
    fn handle(
        &self,
        tx: &mut Tx,
        received: &ReceivedEvent<Self::Event>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// A closure registered with [`ConsumerBuilder::on`](crate::ConsumerBuilder::on).
pub(crate) struct FnHandler<E, F> {
    function: F,
    event: PhantomData<fn() -> E>,
}

impl<E, F> FnHandler<E, F> {
    pub(crate) fn new(function: F) -> Self {
        FnHandler {
            function,
            event: PhantomData,
        }
    }
}

impl<Tx, E, F> Handler<Tx> for FnHandler<E, F>
where
    Tx: Send,
    E: DomainEvent,
    F: for<'a> Fn(&'a mut Tx, &'a ReceivedEvent<E>) -> HandlerFuture<'a> + Send + Sync + 'static,
{
    type Event = E;

    // An async fn, so the future is generic over each argument's lifetime
    // rather than naming their intersection, which the trait cannot.
    async fn handle(&self, tx: &mut Tx, received: &ReceivedEvent<E>) -> Result<(), BoxError> {
        (self.function)(tx, received).await
    }
}
