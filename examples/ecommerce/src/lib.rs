//! The annals e-commerce example: an order service built on annals.
//!
//! `cargo run -p ecommerce` runs a narrated scenario on the in-memory store
//! and bus. The domain lives here so that tests and the binary share it.

pub mod order;
