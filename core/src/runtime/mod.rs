//! What every background worker of annals shares: one back-off rule, one
//! shape of retry policy, one handle.

mod backoff;
mod handle;
mod retry;

#[cfg(test)]
mod tests;

pub use backoff::Backoff;
pub use handle::WorkerHandle;
pub use retry::{Exhaustion, RetryPolicy};
