//! What a worker does when a record fails: retries with backoff, then a
//! dead letter or a blocked key; blocked keys retried head first; dead
//! letters written until the broker has them.

use annals::Inbox;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::attempt::Failure;
use super::blocked::Head;
use super::{Abandoned, PartitionWorker};
use crate::consumer::dead_letter::{DeadLetterReason, Letter, Written};
use crate::consumer::policy::OnExhausted;
use crate::consumer::routes::{Disposition, Item, error_chain};

impl<I: Inbox> PartitionWorker<I> {
    /// Handles one record, retrying per the failure policy; `earlier` is the
    /// error of an attempt it already failed in a batch.
    pub(super) async fn handle_one(
        &mut self,
        item: Item<I::Tx>,
        earlier: Option<String>,
    ) -> Result<(), Abandoned> {
        if self.blocked.is_blocked(&item.key) {
            self.keep(item);
            return Ok(());
        }
        let policy = self.runtime.options.failure;
        let mut attempts = 0;
        let mut first_failure = None;
        let mut transient = 0;
        let mut outcome = earlier.map(|error| Err((Some(0), Failure::Handler(error))));
        loop {
            if self.stop.is_stopped() {
                return Err(Abandoned);
            }
            let result = match outcome.take() {
                Some(earlier) => earlier,
                None => self.runtime.attempt(&[&item]).await,
            };
            match result {
                Ok(outcomes) => {
                    self.count(&outcomes);
                    self.settle(item.offset());
                    return Ok(());
                }
                Err((_, Failure::Transient(error))) => {
                    transient += 1;
                    self.stuck(&item, &error);
                    self.pause(policy.backoff(transient)).await?;
                }
                Err((_, Failure::Handler(error))) => {
                    attempts += 1;
                    let first = *first_failure.get_or_insert_with(Utc::now);
                    if attempts < policy.max_attempts {
                        self.runtime.monitor.retried();
                        item.span.in_scope(|| {
                            tracing::warn!(attempts, %error, "handler failed; retrying");
                        });
                        self.pause(policy.backoff(attempts)).await?;
                        continue;
                    }
                    self.runtime.monitor.error(&error);
                    return match policy.on_exhausted {
                        OnExhausted::DeadLetter => {
                            self.dead_letter(
                                &item,
                                DeadLetterReason::HandlerFailed,
                                &error,
                                attempts,
                                first,
                            )
                            .await?;
                            self.settle(item.offset());
                            Ok(())
                        }
                        OnExhausted::BlockKey => {
                            item.span.in_scope(|| {
                                tracing::error!(attempts, %error, "handler failed for good; blocking the record's key");
                            });
                            let retry_at = Instant::now() + policy.backoff(attempts);
                            self.offsets.keep(item.offset());
                            self.progress.set_stuck(None);
                            self.blocked.block(
                                Head {
                                    item,
                                    attempts,
                                    first_failure: Some(first),
                                },
                                retry_at,
                            );
                            self.publish();
                            Ok(())
                        }
                    };
                }
            }
        }
    }

    /// Retries the first record of every blocked key whose time has come.
    pub(super) async fn retry_blocked(&mut self) -> Result<(), Abandoned> {
        let policy = self.runtime.options.failure;
        while let Some(mut head) = self.blocked.take_due(Instant::now()) {
            if self.stop.is_stopped() {
                return Err(Abandoned);
            }
            let key = head.item.key.clone();
            let failure = match &head.item.disposition {
                Disposition::Handle { .. } => match self.runtime.attempt(&[&head.item]).await {
                    Ok(outcomes) => {
                        self.count(&outcomes);
                        None
                    }
                    Err((_, failure)) => Some(failure),
                },
                Disposition::DeadLetter { .. } | Disposition::Skip => {
                    self.settle_unhandled(head.item).await?;
                    self.blocked.succeeded(&key, Instant::now());
                    self.publish();
                    continue;
                }
            };
            match failure {
                None => {
                    self.settle(head.item.offset());
                    self.blocked.succeeded(&key, Instant::now());
                    self.publish();
                }
                Some(Failure::Transient(error)) => {
                    self.transient_error(&head.item, &error);
                    let retry_at = Instant::now() + policy.backoff(head.attempts.max(1));
                    self.blocked.failed_again(head, retry_at);
                }
                Some(Failure::Handler(error)) => {
                    head.attempts += 1;
                    head.first_failure.get_or_insert_with(Utc::now);
                    self.runtime.monitor.retried();
                    self.runtime.monitor.error(&error);
                    head.item.span.in_scope(|| {
                        tracing::warn!(attempts = head.attempts, %error, "the blocked key's record failed again");
                    });
                    let retry_at = Instant::now() + policy.backoff(head.attempts);
                    self.blocked.failed_again(head, retry_at);
                }
            }
        }
        Ok(())
    }

    /// Writes a dead letter, retrying until the broker acknowledges it: a
    /// record is settled only once it is safe in the dead-letter topic. A
    /// letter too large for the topic is cut to fit (see the dead-letter
    /// writer); while writing fails otherwise (the broker or the topic
    /// unavailable), the partition shows as stuck on this record with the
    /// cause.
    pub(super) async fn dead_letter(
        &self,
        item: &Item<I::Tx>,
        reason: DeadLetterReason,
        error: &str,
        attempts: u32,
        first_failure: DateTime<Utc>,
    ) -> Result<(), Abandoned> {
        let mut failures = 0;
        loop {
            let letter = Letter {
                record: &item.record,
                reason,
                error,
                attempts,
                first_failure,
                consumer: &self.runtime.name,
            };
            match self.runtime.dead_letters.send(letter).await {
                Ok(written) => {
                    if let Written::Cut { parts, size } = written {
                        item.span.in_scope(|| {
                            tracing::warn!(cut = ?parts, size,
                                "the dead-letter topic refused the record whole; wrote it cut to fit");
                        });
                        self.runtime.monitor.dead_letter_cut();
                    }
                    self.runtime.monitor.dead_lettered();
                    return Ok(());
                }
                Err(failure) => {
                    failures += 1;
                    self.stuck(item, &error_chain(&failure));
                    self.pause(self.runtime.options.failure.backoff(failures))
                        .await?;
                }
            }
        }
    }
}
