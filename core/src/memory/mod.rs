//! In-memory backends with the same contracts as Postgres and Kafka.

mod bus;
mod outbox;
mod projection;
mod store;

pub use bus::{BusMessage, MemoryBus, MemoryConsumer, MemoryOutboxRelay};
pub use outbox::MemoryShardLease;
pub use projection::{MemoryLease, MemoryProjectionBackend};
pub use store::MemoryEventStore;
