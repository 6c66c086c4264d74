#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets the derive's `::annals::...` paths resolve inside this crate.
#[allow(unused_extern_crates)]
extern crate self as annals;

mod aggregate;
mod backoff;
mod envelope;
mod error;
mod event;
mod inbox;
mod memory;
mod outbox;
mod projection;
mod relay;
mod repository;
mod runtime;
mod store;
mod stream;
mod upcast;

#[cfg(test)]
mod testing_fixture;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::Aggregate;
pub use backoff::exponential_backoff;
pub use envelope::{Envelope, Metadata, NewEvent, RecordedEvent};
pub use error::{BoxError, Error, Result};
pub use event::{DomainEvent, EventType, Payload};
pub use inbox::{Inbox, MemoryInbox, MemoryInboxTx};
pub use memory::{
    BusMessage, MemoryBus, MemoryConsumer, MemoryEventStore, MemoryLease, MemoryOutboxRelay,
    MemoryProjectionBackend, MemoryShardLease,
};
pub use outbox::{IntegrationEvent, MAX_TOPIC_LEN, OutboxMessage, OutboxReader, OutboxRecord};
pub use projection::{
    EventFilter, ParkedEvent, Projection, ProjectionBackend, ProjectionControl,
    ProjectionExhausted, ProjectionHandle, ProjectionRunner, ProjectionState, ProjectionStatus,
    ReplayReport,
};
pub use relay::{InFlight, OutboxBacklog, OutboxShard, OutboxSource, key_hash};
pub use repository::{
    CommandContext, CommandError, CommandExhausted, CommandOutcome, DEFAULT_CACHE_CAPACITY, Loaded,
    PendingEvent, Repository, SnapshotDecision, SnapshotPolicy, UnitOfWork,
};
pub use runtime::{Backoff, Exhaustion, RetryPolicy, WorkerHandle};
pub use store::{
    AppendOutcome, AppendRequest, AppendSignal, EventStore, EventStream, FromSnapshot,
    GlobalBacklog, Limits, NewSnapshot, Snapshot,
};
pub use stream::{ExpectedVersion, GlobalPosition, MAX_STREAM_ID_LEN, StreamId};
pub use upcast::{UpcastedEvent, Upcasters, decode_payload};

/// The traits, for `use annals::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Aggregate, DomainEvent, EventStore, Inbox, OutboxReader, OutboxSource, Projection,
        ProjectionBackend,
    };
}

/// Derives [`DomainEvent`]: see the trait for an example.
pub use annals_macros::DomainEvent;

/// The crates whose types appear in this API.
pub use {chrono, serde_json, tokio_util, uuid};
