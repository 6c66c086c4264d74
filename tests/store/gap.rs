//! The global stream never skips: concurrent writers, some of whose
//! transactions are held open on purpose and some rolled back, while a
//! reader follows the global stream from checkpoint to checkpoint.

use std::collections::HashSet;
use std::time::Duration;

use annals::testing::conformance::{added, stream};
use annals::{AppendRequest, EventStore, ExpectedVersion, GlobalPosition, RecordedEvent};
use tokio::sync::watch;
use uuid::Uuid;

use crate::common::{TestStore, fresh_store_with, second_store};

const PLAIN_WRITERS: usize = 4;
const APPENDS_PER_PLAIN_WRITER: usize = 400;
const HOLDING_WRITERS: usize = 3;
const TRANSACTIONS_PER_HOLDING_WRITER: usize = 40;
/// The reader must have everything this long after the writers finished.
const CATCH_UP: Duration = Duration::from_secs(60);

/// What the writers committed, and what they rolled back.
#[derive(Default)]
struct Written {
    committed: HashSet<Uuid>,
    rolled_back: HashSet<Uuid>,
}

/// Plain appends, two events each, as fast as they go.
async fn plain_writer(store: TestStore, writer: usize) -> Written {
    let mut written = Written::default();
    for index in 0..APPENDS_PER_PLAIN_WRITER {
        let events = vec![added(index as i64), added(-(index as i64))];
        let ids = events.iter().map(|event| event.event_id);
        written.committed.extend(ids);
        let id = stream(&format!("plain-{writer}-{}", index % 5));
        store
            .append(AppendRequest::new(id, ExpectedVersion::Any).events(events))
            .await
            .expect("a plain append");
    }
    written
}

/// Appends inside transactions that stay open for up to 150 ms (while the
/// plain writers commit past them) and then commit, or one time in four
/// roll back.
async fn holding_writer(store: TestStore, writer: usize) -> Written {
    let mut written = Written::default();
    let mut random = fastrand::Rng::with_seed(writer as u64);
    for index in 0..TRANSACTIONS_PER_HOLDING_WRITER {
        let mut client = store.pool().get().await.expect("a pooled connection");
        let transaction = client.transaction().await.expect("a transaction");
        let events: Vec<_> = (0..random.usize(1..=3)).map(|n| added(n as i64)).collect();
        let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        let id = stream(&format!("held-{writer}-{}", index % 3));
        store
            .append_in(
                &transaction,
                vec![AppendRequest::new(id, ExpectedVersion::Any).events(events)],
            )
            .await
            .expect("an append in a held transaction");
        tokio::time::sleep(Duration::from_millis(random.u64(0..150))).await;
        if random.u8(0..4) == 0 {
            transaction.rollback().await.expect("a rollback");
            written.rolled_back.extend(ids);
        } else {
            transaction.commit().await.expect("a commit");
            written.committed.extend(ids);
        }
    }
    written
}

/// Follows the global stream until told how many events to expect and has
/// read them, checking every page against its checkpoint.
async fn reader(
    store: TestStore,
    mut expected: watch::Receiver<Option<usize>>,
) -> Vec<RecordedEvent> {
    let mut signal = store.append_signal();
    let mut checkpoint = GlobalPosition::START;
    let mut read = Vec::new();
    let mut deadline = None;
    loop {
        let page = store
            .read_all(checkpoint, 250)
            .await
            .expect("reading the global stream");
        for event in &page {
            assert!(
                event.position > checkpoint,
                "{} came after the checkpoint {checkpoint}",
                event.position
            );
            checkpoint = event.position;
        }
        let empty = page.is_empty();
        read.extend(page);
        if let Some(total) = *expected.borrow_and_update() {
            if read.len() >= total {
                return read;
            }
            let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + CATCH_UP);
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reader has {} of {total} events {CATCH_UP:?} after the writers finished",
                read.len()
            );
        }
        if empty {
            signal.wait(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_stream_gets_every_committed_event_once_despite_held_and_rolled_back_transactions() {
    // The reader follows the append signal and reads what is readable at
    // once, as a projection does.
    let store = fresh_store_with(|config| config.with_horizon_wait(Duration::ZERO)).await;
    let (total, expected) = watch::channel(None);
    let following = tokio::spawn(reader(store.clone(), expected));
    let mut writers = Vec::new();
    for writer in 0..PLAIN_WRITERS {
        writers.push(tokio::spawn(plain_writer(store.clone(), writer)));
    }
    for writer in 0..HOLDING_WRITERS {
        writers.push(tokio::spawn(holding_writer(store.clone(), writer)));
    }
    let mut written = Written::default();
    for writer in writers {
        let done = writer.await.expect("a writer");
        written.committed.extend(done.committed);
        written.rolled_back.extend(done.rolled_back);
    }
    assert!(written.committed.len() > 3000, "thousands of events");
    assert!(
        !written.rolled_back.is_empty(),
        "some transactions rolled back"
    );
    total.send_replace(Some(written.committed.len()));
    let read = following.await.expect("the reader");

    let read_ids: Vec<Uuid> = read.iter().map(|event| event.event_id).collect();
    let unique: HashSet<Uuid> = read_ids.iter().copied().collect();
    assert_eq!(unique.len(), read_ids.len(), "no event read twice");
    assert!(
        unique.is_disjoint(&written.rolled_back),
        "no rolled-back event read"
    );
    assert_eq!(unique, written.committed, "every committed event read");
    // Nothing more turns up later, and a late reader (which waits for
    // whatever else runs on the server to let it see everything) sees the
    // same order.
    let late_reader = second_store(&store).await;
    let late =
        annals::testing::conformance::read_everything(&late_reader, GlobalPosition::START).await;
    let late_ids: Vec<Uuid> = late.iter().map(|event| event.event_id).collect();
    assert_eq!(late_ids, read_ids, "a late reader sees the same order");
}
