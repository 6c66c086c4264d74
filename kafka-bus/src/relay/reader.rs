//! Reading a shard's outbox ahead of publishing: the next page comes from
//! the store while the session sends the current one, so that neither the
//! store nor the producer waits for the other during a drain.
//!
//! Pages are read one after the other, each after the last record of the
//! one before, and handed over in that order: the session sees the same
//! gap-free sequence it would have read itself, and its window and
//! checkpoint work as before. At most one page waits, read but not taken.

use std::time::{Duration, Instant};

use annals::{Error, GlobalPosition, OutboxRecord, OutboxShard, OutboxSource};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::backoff::Backoff;

/// A page of the outbox, in order after the previous one.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) records: Vec<OutboxRecord>,
    /// When the store returned it, for the batch latency histogram.
    pub(super) read_at: Instant,
}

/// What the reader hands over.
#[derive(Debug)]
pub(super) enum Read {
    Page(Page),
    /// A read failed; the reader retries it after a backoff by itself.
    Failed(Error),
}

/// What the reader needs to know.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadAheadSettings {
    pub(super) shard: OutboxShard,
    pub(super) batch_size: usize,
    /// How long to wait for an append signal before reading again after a
    /// short page (a lost notification costs at most this).
    pub(super) poll_interval: Duration,
    pub(super) backoff: (Duration, Duration),
}

/// The read-ahead task of one producer session; stopped when dropped, with
/// whatever it had read and not handed over (the next session reads from
/// its own start again).
#[derive(Debug)]
pub(super) struct OutboxReadAhead {
    pages: mpsc::Receiver<Read>,
    task: JoinHandle<()>,
}

impl OutboxReadAhead {
    /// Starts reading the shard after `after`.
    pub(super) fn spawn<S: OutboxSource>(
        source: S,
        settings: ReadAheadSettings,
        after: GlobalPosition,
    ) -> Self {
        let (sender, pages) = mpsc::channel(1);
        let task = tokio::spawn(read_ahead(source, settings, after, sender));
        OutboxReadAhead { pages, task }
    }

    /// The next page or failure if one is ready.
    pub(super) fn try_next(&mut self) -> Option<Read> {
        self.pages.try_recv().ok()
    }

    /// The next page or failure.
    pub(super) async fn next(&mut self) -> Read {
        match self.pages.recv().await {
            Some(read) => read,
            // The task only ends early by panicking: pass that on.
            None => match (&mut self.task).await {
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                _ => std::future::pending().await,
            },
        }
    }
}

impl Drop for OutboxReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_ahead<S: OutboxSource>(
    source: S,
    settings: ReadAheadSettings,
    mut after: GlobalPosition,
    pages: mpsc::Sender<Read>,
) {
    let mut signal = source.outbox_signal();
    let mut backoff = Backoff::new(settings.backoff.0, settings.backoff.1);
    loop {
        // Reads only once the page before was taken, so that no more than
        // one page waits beside what the session holds.
        let Ok(slot) = pages.reserve().await else {
            return;
        };
        let read = source
            .read_shard(settings.shard, after, settings.batch_size)
            .await;
        match read {
            Ok(records) => {
                backoff.reset();
                // A short page is all there is for now: wait for the next
                // append before reading again.
                let caught_up = records.len() < settings.batch_size;
                if let Some(last) = records.last() {
                    after = last.position;
                    slot.send(Read::Page(Page {
                        records,
                        read_at: Instant::now(),
                    }));
                } else {
                    drop(slot);
                }
                if caught_up {
                    signal.wait(settings.poll_interval).await;
                }
            }
            Err(error) => {
                slot.send(Read::Failed(error));
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}
