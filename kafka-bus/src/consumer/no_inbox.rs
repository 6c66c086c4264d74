//! Consumers without an inbox: at-least-once, for handlers whose effects
//! are idempotent or need no database.

use annals::{Error, Inbox};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An inbox that remembers nothing: every delivery of a record runs its
/// handler, so a consumer built with it is **at-least-once**. A record is
/// handled again after a crash or a rebalance that came between its handler
/// and the next offset commit, and a message the producer sent twice is
/// handled twice.
///
/// Use it for handlers without a transactional store: sending to an
/// idempotent API, updating a cache, handing events to code that
/// deduplicates on its own. Handlers get `&mut ()`.
///
/// ```no_run
/// use annals_kafka::{Consumer, KafkaConfig, NoInbox};
/// # use annals::DomainEvent;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Serialize, Deserialize, DomainEvent)]
/// # #[event(name = "OrderConfirmed")]
/// # struct OrderConfirmed { order_id: String }
///
/// # async fn run() -> Result<(), annals_kafka::Error> {
/// let mailer = Consumer::builder(KafkaConfig::new("127.0.0.1:9092")?, NoInbox)
///     .name("mailer")
///     .topic("orders")
///     .on::<OrderConfirmed, _>(|_, received| {
///         Box::pin(async move {
///             println!("mail about {}", received.event.order_id);
///             Ok(())
///         })
///     })
///     .start()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoInbox;

impl Inbox for NoInbox {
    type Tx = ();

    async fn begin(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn claim(&self, _tx: &mut (), _consumer: &str, _message_id: Uuid) -> Result<bool, Error> {
        Ok(true)
    }

    async fn commit(&self, _tx: ()) -> Result<(), Error> {
        Ok(())
    }

    async fn rollback(&self, _tx: ()) -> Result<(), Error> {
        Ok(())
    }

    async fn prune(&self, _consumer: &str, _before: DateTime<Utc>) -> Result<u64, Error> {
        Ok(0)
    }
}
