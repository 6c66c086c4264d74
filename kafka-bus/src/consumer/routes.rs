//! Which handler a record goes to, found by its type name, and the record
//! read and decoded for it before any transaction begins: what cannot be
//! read or decoded is known to be a dead letter without retrying.

use std::collections::HashMap;
use std::sync::Arc;

use annals::DomainEvent;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tracing::Span;
use tracing::field::Empty;
use uuid::Uuid;

use super::dead_letter::DeadLetterReason;
use super::handler::{Handler, HandlerFuture, ReceivedEvent};
use super::policy::UnknownTypes;
use crate::IncomingMessage;

/// A handler with its event type erased, so that handlers of different
/// types share one table.
trait Route<Tx>: Send + Sync {
    fn decode(&self, message: IncomingMessage) -> Result<Box<dyn Decoded<Tx>>, annals::Error>;
}

/// A record decoded for its handler, ready to run in a transaction.
pub(crate) trait Decoded<Tx>: Send + Sync {
    /// Runs the handler for each decoded event, in order.
    fn handle<'a>(&'a self, tx: &'a mut Tx) -> HandlerFuture<'a>;
}

struct HandlerRoute<H>(Arc<H>);

struct DecodedEvents<H, E> {
    handler: Arc<H>,
    events: Vec<ReceivedEvent<E>>,
}

impl<Tx, H> Route<Tx> for HandlerRoute<H>
where
    Tx: Send + 'static,
    H: Handler<Tx>,
{
    fn decode(&self, message: IncomingMessage) -> Result<Box<dyn Decoded<Tx>>, annals::Error> {
        let events = message
            .decode::<H::Event>()?
            .into_iter()
            .map(|event| ReceivedEvent {
                event,
                message: message.clone(),
            })
            .collect();
        Ok(Box::new(DecodedEvents {
            handler: Arc::clone(&self.0),
            events,
        }))
    }
}

impl<Tx, H, E> Decoded<Tx> for DecodedEvents<H, E>
where
    Tx: Send,
    H: Handler<Tx, Event = E>,
    E: DomainEvent,
{
    fn handle<'a>(&'a self, tx: &'a mut Tx) -> HandlerFuture<'a> {
        Box::pin(async move {
            for received in &self.events {
                self.handler.handle(tx, received).await?;
            }
            Ok(())
        })
    }
}

/// The handlers of a consumer by the type names they decode.
pub(crate) struct Routes<Tx> {
    by_type: HashMap<String, Arc<dyn Route<Tx>>>,
}

impl<Tx> Default for Routes<Tx> {
    fn default() -> Self {
        Routes {
            by_type: HashMap::new(),
        }
    }
}

impl<Tx: Send + 'static> Routes<Tx> {
    /// Routes every type `H::Event` decodes (its own and those its upcasters
    /// read) to `handler`. Fails naming the type another handler has.
    pub(crate) fn add<H: Handler<Tx>>(&mut self, handler: H) -> Result<(), String> {
        let route: Arc<dyn Route<Tx>> = Arc::new(HandlerRoute(Arc::new(handler)));
        let mut names: Vec<&str> = H::Event::TYPES.iter().map(|known| known.name).collect();
        names.extend(H::Event::upcasters().source_types());
        names.sort_unstable();
        names.dedup();
        if let Some(taken) = names.iter().find(|name| self.by_type.contains_key(**name)) {
            return Err(format!("two handlers are registered for type `{taken}`"));
        }
        for name in names {
            self.by_type.insert(name.to_owned(), Arc::clone(&route));
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Reads and decodes `record`, deciding what becomes of it.
    pub(crate) fn prepare(
        &self,
        record: OwnedMessage,
        consumer: &str,
        unknown: UnknownTypes,
    ) -> Item<Tx> {
        let span = tracing::info_span!(
            "annals.consume",
            consumer,
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            message_id = Empty,
            event_type = Empty,
            correlation_id = Empty,
            traceparent = Empty,
        );
        let disposition = match IncomingMessage::from_record(&record) {
            Err(error) => Disposition::DeadLetter {
                reason: DeadLetterReason::of_unreadable(&error),
                error: error.to_string(),
            },
            Ok(message) => {
                span.record("message_id", tracing::field::display(message.message_id));
                span.record("event_type", message.event_type.as_str());
                if let Some(correlation) = message.metadata.correlation_id {
                    span.record("correlation_id", tracing::field::display(correlation));
                }
                if let Some(traceparent) = &message.metadata.traceparent {
                    span.record("traceparent", traceparent.as_str());
                }
                self.decode(message, unknown)
            }
        };
        Item {
            key: record.key().map(<[u8]>::to_vec),
            record,
            span,
            disposition,
        }
    }

    fn decode(&self, message: IncomingMessage, unknown: UnknownTypes) -> Disposition<Tx> {
        let Some(route) = self.by_type.get(&message.event_type) else {
            return match unknown {
                UnknownTypes::Skip => Disposition::Skip,
                UnknownTypes::DeadLetter => Disposition::DeadLetter {
                    reason: DeadLetterReason::UnknownType,
                    error: format!(
                        "unknown type `{}` version {}: no handler is registered for it",
                        message.event_type, message.event_version
                    ),
                },
            };
        };
        let message_id = message.message_id;
        let origin = message.origin.clone();
        match route.decode(message) {
            Ok(decoded) => Disposition::Handle {
                message_id,
                decoded,
            },
            Err(error) => Disposition::DeadLetter {
                reason: DeadLetterReason::of_undecodable(&error),
                error: format!("record {origin}: {}", error_chain(&error)),
            },
        }
    }
}

/// `error` and its sources, joined: the reason a decode failed is usually in
/// serde's error at the end of the chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}

/// A consumed record and what becomes of it.
pub(crate) struct Item<Tx> {
    pub(crate) record: OwnedMessage,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) span: Span,
    pub(crate) disposition: Disposition<Tx>,
}

impl<Tx> Item<Tx> {
    pub(crate) fn offset(&self) -> i64 {
        self.record.offset()
    }
}

/// What becomes of a record.
pub(crate) enum Disposition<Tx> {
    /// Its handler runs in an inbox transaction.
    Handle {
        message_id: Uuid,
        decoded: Box<dyn Decoded<Tx>>,
    },
    /// It goes to the dead-letter topic without an attempt.
    DeadLetter {
        reason: DeadLetterReason,
        error: String,
    },
    /// It is committed past (unknown type, skipped by policy).
    Skip,
}
