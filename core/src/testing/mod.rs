//! Testing aids (feature `testing`): the given/when/then kit for aggregates
//! and the conformance suite that every [`EventStore`](crate::EventStore)
//! implementation runs.

pub mod conformance;
mod given;

pub use given::{AggregateTest, Then};
