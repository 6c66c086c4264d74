//! Cross-crate integration and fault tests for annals, one test binary per
//! area under `tests/`, and the harness they share: where the services are
//! and helpers around them, and a TCP proxy that makes the network between
//! them slow or silent.

pub mod kafka;
pub mod postgres;
pub mod proxy;
pub mod wait;
