//! A running consumer: its status, and the ways to stop it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use annals::Inbox;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::builder::ConsumerBuilder;
use super::monitor::Monitor;
use super::poller::Control;
use super::status::ConsumerStatus;
use crate::{Error, KafkaConfig};

/// How long [`Consumer::abort`] waits for the workers to be gone.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`Consumer::wait_until`] looks at the status.
const STATUS_POLL: Duration = Duration::from_millis(10);

/// A running consumer of a group: one ordered worker per assigned
/// partition, partitions in parallel, offsets committed only over records
/// whose inbox transaction committed (or that went to the dead-letter
/// topic, or were skipped by policy).
///
/// Built with [`Consumer::builder`]. Dropping it stops it in the background
/// as [`Consumer::stop`] does, without waiting.
///
/// ```no_run
/// use std::time::Duration;
///
/// use annals::{DomainEvent, MemoryInbox};
/// use annals_kafka::{Consumer, KafkaConfig};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize, DomainEvent)]
/// #[event(name = "OrderConfirmed")]
/// struct OrderConfirmed {
///     order_id: String,
/// }
///
/// # async fn run() -> Result<(), annals_kafka::Error> {
/// let shipping = Consumer::builder(KafkaConfig::new("127.0.0.1:9092")?, MemoryInbox::new())
///     .name("shipping")
///     .topic("orders")
///     .on::<OrderConfirmed, _>(|_tx, received| {
///         Box::pin(async move {
///             println!("ship order {}", received.event.order_id);
///             Ok(())
///         })
///     })
///     .start()?;
///
/// let status = shipping.status();
/// println!("{} handled, lag {:?}", status.handled, status.lag());
/// shipping.stop(Duration::from_secs(30)).await?;
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    monitor: Arc<Monitor>,
    control: Arc<Control>,
    stopped: Option<oneshot::Receiver<()>>,
    pruning: Option<JoinHandle<()>>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.monitor.name())
            .field("state", &self.monitor.state())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Starts building a consumer that reads with `config` and records the
    /// messages it handled in `inbox` (or [`NoInbox`](crate::NoInbox) for
    /// at-least-once).
    pub fn builder<I: Inbox>(config: KafkaConfig, inbox: I) -> ConsumerBuilder<I> {
        ConsumerBuilder::new(config, inbox)
    }

    pub(crate) fn new(
        monitor: Arc<Monitor>,
        control: Arc<Control>,
        stopped: oneshot::Receiver<()>,
        pruning: Option<JoinHandle<()>>,
    ) -> Self {
        Consumer {
            monitor,
            control,
            stopped: Some(stopped),
            pruning,
        }
    }

    /// Its name: its group id and its key in the inbox.
    pub fn name(&self) -> &str {
        self.monitor.name()
    }

    /// Its state, partitions, lag and counters now.
    pub fn status(&self) -> ConsumerStatus {
        self.monitor.status()
    }

    /// Waits until the status satisfies `condition` or `timeout` passes;
    /// returns the status then.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&ConsumerStatus) -> bool,
    ) -> ConsumerStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status();
            if condition(&status) || tokio::time::Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// Stops: the workers finish the record in hand (up to the drain
    /// timeout), the settled offsets are committed, the consumer leaves its
    /// group. Returns the final status. Fails when that takes longer than
    /// `timeout`; the consumer then goes on stopping in the background, and
    /// whatever it did not commit is delivered again to the partitions' next
    /// owners.
    pub async fn stop(mut self, timeout: Duration) -> Result<ConsumerStatus, Error> {
        self.control.stop();
        self.stop_pruning();
        let stopped = self.stopped.take().expect("stopped only once");
        match tokio::time::timeout(timeout, stopped).await {
            Ok(Ok(())) => Ok(self.status()),
            Ok(Err(_)) => Err(Error::Stop {
                consumer: self.name().to_owned(),
                reason: "its polling thread ended without committing".into(),
            }),
            Err(_) => Err(Error::Stop {
                consumer: self.name().to_owned(),
                reason: format!("still stopping after {timeout:?}"),
            }),
        }
    }

    /// Stops at once, as a crash would: records in hand are abandoned
    /// mid-transaction and nothing more is committed (the consumer still
    /// leaves its group, so its partitions move on without waiting for the
    /// session to time out). Returns the final status once the workers are
    /// gone. For tests of crash recovery, and for a service that must go
    /// down now.
    pub async fn abort(mut self) -> ConsumerStatus {
        self.control.abort();
        self.stop_pruning();
        if let Some(stopped) = self.stopped.take() {
            let _ = tokio::time::timeout(ABORT_TIMEOUT, stopped).await;
        }
        self.status()
    }

    fn stop_pruning(&mut self) {
        if let Some(pruning) = self.pruning.take() {
            pruning.abort();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.stopped.is_some() {
            self.control.stop();
            self.stop_pruning();
        }
    }
}
