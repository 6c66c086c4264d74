//! Cross-crate integration and fault tests for annals, one test binary per
//! area under `tests/`, and the harness they share: where the services are
//! and helpers around them.

pub mod kafka;
pub mod postgres;
pub mod wait;
