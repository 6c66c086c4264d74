//! The consumer runtime: integration events from Kafka handled exactly once
//! in effect.
//!
//! One thread polls the group consumer and hands each record to its
//! partition's worker through a bounded queue (a full queue pauses the
//! partition). Each worker handles its records in order, inside inbox
//! transactions that also claim the message ids, and publishes the offset
//! below which every record is settled; only those offsets are committed.
//! On revocation the workers finish the record in hand and the settled
//! offsets are committed before the partitions go; a record handled but not
//! committed is delivered again and the inbox makes it a no-op.

mod builder;
mod context;
mod dead_letter;
mod handler;
mod monitor;
mod no_inbox;
mod partitions;
mod policy;
mod poller;
mod progress;
mod prune;
mod replay;
mod routes;
mod running;
mod runtime;
mod status;
mod worker;

pub use builder::ConsumerBuilder;
pub use dead_letter::{DeadLetter, DeadLetterCut, DeadLetterReason};
pub use handler::{Handler, HandlerFuture, ReceivedEvent};
pub use no_inbox::NoInbox;
pub use policy::{FailurePolicy, OnExhausted, UnknownTypes};
pub use replay::{DeadLetterReplay, ReplayReport};
pub use running::Consumer;
pub use status::{ConsumerState, ConsumerStatus, PartitionStatus, StuckRecord};
