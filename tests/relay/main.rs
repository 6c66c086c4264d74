//! The outbox relay against a real Kafka-protocol broker: order per
//! aggregate, exactly once through crashes, failover and broker restarts,
//! refused records parked, store outages ridden out, a silent broker outlasted,
//! graceful stop.
//!
//! Every test gets its own topic and relay name, and runs against each
//! store (`<test>::memory`, `<test>::postgres`).

mod common;

mod broker_restart;
mod crash;
mod failover;
mod lease_timing;
mod lifecycle;
mod order;
mod outage;
mod rejections;
mod stall;
mod takeover;
mod transactional;
