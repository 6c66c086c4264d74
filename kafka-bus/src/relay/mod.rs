//! The outbox relay: moves integration events from the outbox to Kafka, in
//! order per key, each exactly once. How it reasons is in the crate docs
//! ("Exactly once").
//!
//! A shard task ([`shard`]) waits for its shard's lease, then leads it as a
//! series of producer sessions ([`session`]): each reads the outbox after
//! the contiguous acked prefix (a page ahead of what it sends, [`reader`]),
//! reads the tail of every partition before its first send there
//! ([`tail`]), sends every record to the partition of its key
//! ([`partitioner`]), and saves the checkpoint over what is acked
//! ([`window`]). Pruning and backlog measurement run beside it
//! ([`housekeeping`]).

mod backoff;
mod builder;
mod drained;
mod handle;
mod housekeeping;
mod metrics;
mod partitioner;
mod producer;
mod reader;
mod rejection;
mod session;
mod settings;
mod shard;
mod status;
mod tail;
mod topics;
mod window;

pub use builder::{OutboxRelay, OutboxRelayBuilder};
pub use handle::RelayHandle;
pub use partitioner::partition_for_key;
pub use status::{RelayStatus, ShardRole, ShardStatus};
