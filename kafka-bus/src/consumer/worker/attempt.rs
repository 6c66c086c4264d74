//! One attempt: the handlers of one record, or of a batch of records, run
//! in one inbox transaction that also claims their message ids.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use annals::{BoxError, Inbox};
use futures::FutureExt;
use tracing::Instrument;

use crate::consumer::routes::{Disposition, Item, error_chain};
use crate::consumer::runtime::Runtime;

/// What an attempt did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its handler ran and the transaction committed.
    Handled,
    /// The inbox had its message id: nothing ran.
    Duplicate,
}

/// Why an attempt failed; nothing of it was committed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The inbox failed (outage, lost connection): retried without counting
    /// against the record.
    Transient(String),
    /// The handler failed or panicked: counts as an attempt.
    Handler(String),
}

impl<I: Inbox> Runtime<I> {
    /// Runs the handlers of `items` (all of them to be handled) in one
    /// transaction; returns what became of each, in order, or the failure
    /// with the index of the item whose handler failed (`None` when the
    /// inbox failed).
    pub(crate) async fn attempt(
        &self,
        items: &[&Item<I::Tx>],
    ) -> Result<Vec<Outcome>, (Option<usize>, Failure)> {
        let mut tx = self
            .inbox
            .begin()
            .await
            .map_err(|error| (None, Failure::Transient(error_chain(&error))))?;
        let mut outcomes = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let Disposition::Handle {
                message_id,
                decoded,
            } = &item.disposition
            else {
                unreachable!("only records to handle are attempted");
            };
            match self.inbox.claim(&mut tx, &self.name, *message_id).await {
                Ok(true) => {}
                Ok(false) => {
                    outcomes.push(Outcome::Duplicate);
                    continue;
                }
                Err(error) => {
                    let failure = Failure::Transient(error_chain(&error));
                    return Err((None, self.roll_back(tx, failure).await));
                }
            }
            let started = Instant::now();
            let result = AssertUnwindSafe(decoded.handle(&mut tx).instrument(item.span.clone()))
                .catch_unwind()
                .await;
            self.monitor.handler_took(started.elapsed());
            let failure = match result {
                Ok(Ok(())) => {
                    outcomes.push(Outcome::Handled);
                    continue;
                }
                Ok(Err(error)) if is_transient(&error) => Failure::Transient(error_chain(&*error)),
                Ok(Err(error)) => Failure::Handler(error_chain(&*error)),
                Err(panic) => Failure::Handler(format!(
                    "the handler panicked: {}",
                    panic_message(panic.as_ref())
                )),
            };
            return Err((Some(index), self.roll_back(tx, failure).await));
        }
        self.inbox.commit(tx).await.map_err(|error| {
            if error.is_retriable() {
                (None, Failure::Transient(error_chain(&error)))
            } else {
                // Which write the commit refused is not known: the records
                // are retried one by one, where it is.
                (None, Failure::Handler(error_chain(&error)))
            }
        })?;
        Ok(outcomes)
    }

    /// Rolls `tx` back after `failure`. When even that fails, the
    /// transaction's connection is gone: the inbox failed, whatever the
    /// handler reported.
    async fn roll_back(&self, tx: I::Tx, failure: Failure) -> Failure {
        match self.inbox.rollback(tx).await {
            Ok(()) => failure,
            Err(error) => {
                let (Failure::Transient(reported) | Failure::Handler(reported)) = failure;
                Failure::Transient(format!(
                    "{reported} (rollback failed: {})",
                    error_chain(&error)
                ))
            }
        }
    }
}

/// Whether a handler's error says the store or the broker failed, not the
/// handler: an [`annals::Error`] or [`crate::Error`] in the source chain
/// that is retriable.
fn is_transient(error: &BoxError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(error) = next {
        if let Some(store) = error.downcast_ref::<annals::Error>() {
            return store.is_retriable();
        }
        if let Some(kafka) = error.downcast_ref::<crate::Error>() {
            return kafka.is_retriable();
        }
        next = error.source();
    }
    false
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_store_errors_anywhere_in_the_chain_are_transient() {
        #[derive(Debug, thiserror::Error)]
        #[error("saving the shipment")]
        struct Wrapper(#[source] annals::Error);

        let outage: BoxError = Box::new(Wrapper(annals::Error::backend(
            "postgres",
            true,
            "connection reset",
        )));
        assert!(is_transient(&outage));
        let refused: BoxError = Box::new(annals::Error::backend("postgres", false, "constraint"));
        assert!(!is_transient(&refused));
        let plain: BoxError = "out of stock".into();
        assert!(!is_transient(&plain));
    }
}
