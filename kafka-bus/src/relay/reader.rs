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

/// The size of the first page a session reads (unless its batch size is
/// smaller): each full page doubles the next one, up to the batch size. A
/// session that starts on a long backlog thus publishes its first messages
/// after a short read, while the pages grow to the size that drains fastest.
const FIRST_PAGE: usize = 500;

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
    let mut size = settings.batch_size.min(FIRST_PAGE);
    loop {
        // Reads only once the page before was taken, so that no more than
        // one page waits beside what the session holds.
        let Ok(slot) = pages.reserve().await else {
            return;
        };
        let read = source.read_outbox(settings.shard, after, size).await;
        match read {
            Ok(records) => {
                backoff.reset();
                // A short page is all there is for now: wait for the next
                // append before reading again.
                let caught_up = records.len() < size;
                if !caught_up {
                    size = size.saturating_mul(2).min(settings.batch_size);
                }
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

#[cfg(test)]
mod tests {
    use annals::{
        AppendRequest, EventStore, ExpectedVersion, MemoryEventStore, Metadata, NewEvent,
        OutboxMessage, Payload, StreamId,
    };

    use super::*;

    async fn append(store: &MemoryEventStore, stream: &str, count: u64) {
        let mut request = AppendRequest::new(StreamId::new(stream).unwrap(), ExpectedVersion::Any)
            .event(NewEvent::raw(
                "Happened",
                1,
                Payload::encode(&0).unwrap(),
                Metadata::default(),
            ));
        for n in 0..count {
            request = request.outbox_message(OutboxMessage {
                message_id: uuid::Uuid::now_v7(),
                topic: "t".into(),
                key: format!("key-{n}"),
                event_type: "Happened".into(),
                event_version: 1,
                payload: Payload::encode(&n).unwrap(),
                stream: StreamId::new(stream).unwrap(),
                stream_version: 1,
                metadata: Metadata::default(),
            });
        }
        store.append(request).await.unwrap();
    }

    /// An outbox of `count` messages, and a read-ahead of it from its start;
    /// a short page waits for an append (the poll interval is longer than
    /// any test).
    async fn outbox_of(count: u64, batch_size: usize) -> (MemoryEventStore, OutboxReadAhead) {
        let store = MemoryEventStore::new();
        append(&store, "a", count).await;
        let reader = OutboxReadAhead::spawn(
            store.clone(),
            ReadAheadSettings {
                shard: OutboxShard::ALL,
                batch_size,
                poll_interval: Duration::from_secs(60),
                backoff: (Duration::from_millis(1), Duration::from_millis(10)),
            },
            GlobalPosition::START,
        );
        (store, reader)
    }

    async fn page(reader: &mut OutboxReadAhead) -> Vec<GlobalPosition> {
        let read = tokio::time::timeout(Duration::from_secs(5), reader.next())
            .await
            .expect("a page comes");
        match read {
            Read::Page(page) => page.records.iter().map(|record| record.position).collect(),
            Read::Failed(error) => panic!("{error}"),
        }
    }

    #[tokio::test]
    async fn pages_grow_from_a_short_first_one_to_the_batch_size() {
        let (_, mut reader) = outbox_of(5_000, 1_600).await;
        let mut sizes = Vec::new();
        let mut read = Vec::new();
        while read.len() < 5_000 {
            let page = page(&mut reader).await;
            sizes.push(page.len());
            read.extend(page);
        }
        assert_eq!(sizes, [FIRST_PAGE, 2 * FIRST_PAGE, 1_600, 1_600, 300]);
        assert!(read.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[tokio::test]
    async fn pages_come_in_order_and_short_ones_wait_for_appends() {
        let (store, mut reader) = outbox_of(5, 2).await;
        let mut read = Vec::new();
        for _ in 0..3 {
            read.extend(page(&mut reader).await);
        }
        assert_eq!(read.len(), 5);
        assert!(read.windows(2).all(|pair| pair[0] < pair[1]), "{read:?}");
        // The last page was short: the reader waits for the signal, and
        // the next append wakes it long before the poll interval.
        append(&store, "b", 1).await;
        let next = page(&mut reader).await;
        assert_eq!(next.len(), 1);
        assert!(next[0] > read[4]);
    }
}
