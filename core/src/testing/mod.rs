//! Testing aids (feature `testing`): the given/when/then kit for aggregates
//! and the conformance suites that every backend runs, one per backend
//! trait ([`EventStore`](crate::EventStore),
//! [`OutboxSource`](crate::OutboxSource), [`Inbox`](crate::Inbox),
//! [`ProjectionBackend`](crate::ProjectionBackend)).

pub mod conformance;
mod given;

pub use given::{AggregateTest, Then};
