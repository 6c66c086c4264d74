//! The consumer's polling thread: the one place that talks to the group
//! consumer. It hands records to the partitions' workers, runs the
//! rebalance callbacks (which stop and start workers), commits settled
//! offsets, and closes the consumer.
//!
//! A thread rather than a task: the rebalance callbacks wait for workers to
//! finish the record in hand, and that wait must not hold a runtime thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use annals::Inbox;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;

use super::context::RuntimeContext;
use super::partitions::Release;
use super::status::ConsumerState;

/// How long a poll waits for a record when nothing is pending.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How long a poll waits while records wait for room in a queue, so that
/// they move on soon after a worker takes some.
const BUSY_POLL: Duration = Duration::from_millis(5);

/// What the consumer's owner asks of the polling thread.
#[derive(Debug, Default)]
pub(crate) struct Control(AtomicU8);

impl Control {
    const RUN: u8 = 0;
    const STOP: u8 = 1;
    const ABORT: u8 = 2;

    /// Finish the records in hand, commit, leave the group.
    pub(crate) fn stop(&self) {
        let _ = self
            .0
            .compare_exchange(Self::RUN, Self::STOP, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Drop everything uncommitted, as a crash would.
    pub(crate) fn abort(&self) {
        self.0.store(Self::ABORT, Ordering::Release);
    }

    fn requested(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// Runs the polling loop on a thread of its own; `done` is sent once the
/// workers are gone and the offsets are committed.
pub(crate) fn spawn<I: Inbox>(
    consumer: BaseConsumer<RuntimeContext<I>>,
    control: Arc<Control>,
    done: oneshot::Sender<()>,
) -> std::io::Result<()> {
    let name = consumer.context().runtime().name.clone();
    std::thread::Builder::new()
        .name(format!("annals-consumer-{name}"))
        .spawn(move || poll(consumer, &control, done))
        .map(drop)
}

fn poll<I: Inbox>(
    consumer: BaseConsumer<RuntimeContext<I>>,
    control: &Control,
    done: oneshot::Sender<()>,
) {
    let context = Arc::clone(consumer.context());
    let options = &context.runtime().options;
    let monitor = Arc::clone(&context.runtime().monitor);
    let mut next_commit = Instant::now() + options.commit_interval;
    loop {
        match control.requested() {
            Control::RUN => {}
            Control::STOP => {
                monitor.set_state(ConsumerState::Stopping);
                context.release(&consumer, None, Release::Graceful);
                leave_group(&consumer, options.close_timeout);
                break;
            }
            _ => {
                context.release(&consumer, None, Release::Abandon);
                // Left like a clean stop (nothing committed), so that no
                // member half closed holds the group's next join up until
                // the rebalance timeout.
                leave_group(&consumer, options.close_timeout);
                break;
            }
        }
        let waiting = context.feed(&consumer);
        match consumer.poll(if waiting { BUSY_POLL } else { IDLE_POLL }) {
            Some(Ok(record)) => context.dispatch(&consumer, record.detach()),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(error)) => {
                tracing::warn!(consumer = monitor.name(), %error, "consuming failed");
                monitor.error(&format!("consuming: {error}"));
            }
        }
        if Instant::now() >= next_commit {
            context.commit(&consumer);
            next_commit = Instant::now() + options.commit_interval;
        }
    }
    monitor.set_state(ConsumerState::Stopped);
    let _ = done.send(());
    // Dropping a group consumer can block for a minute or more against the
    // test broker, tansu 0.6.0 (docs/broker-notes.md, "Consumer close can
    // hang": rd_kafka_destroy waits on a broker thread that keeps serving
    // revoked partitions). The group was left above and the owner stopped
    // waiting at `done`, so only this thread waits.
    drop(consumer);
}

/// Leaves the group: the revocation this causes finds no workers left, and
/// the group reassigns the partitions at once instead of after the session
/// timeout. (Closing the queue here instead would make the consumer's drop
/// close it a second time, which rdkafka logs as an error.)
fn leave_group<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    timeout: Duration,
) {
    consumer.unsubscribe();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer
            .assignment()
            .map_or(true, |assignment| assignment.count() == 0)
        {
            break;
        }
    }
}
