//! Group commit: lone appends that wait for a lane go together in one
//! transaction, each with an outcome of its own, and nothing is lost or
//! written twice when many appends outrun the lanes.
//!
//! - `lanes.rs`: appends queue for a lane and go in groups, one per stream;
//! - `failures.rs`: a group the server refuses fails only the append at
//!   fault;
//! - `statements.rs`: how a group is written (the group statement, its
//!   padding, and the appends that go as statements of their own).

mod failures;
mod lanes;
mod statements;

use std::time::Duration;

use annals::testing::conformance::{added, stream};
use annals::{AppendOutcome, AppendRequest, Error, EventStore, ExpectedVersion, NewEvent};
use annals_postgres::tokio_postgres::Client;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::common::{
    TestStore, connect, database_url, eventually, fresh_store_with, wait_for_one_lock_wait,
};

/// A store whose lone appends have one lane.
pub(super) async fn one_lane_store() -> TestStore {
    fresh_store_with(|config| config.with_pool_size(2).with_append_lanes(1)).await
}

/// Keeps the store's only lane busy: another session holds the row of
/// stream `held` (at version 1), and an append to it waits on that lock.
/// Returns the session, whose `COMMIT` lets the append go on, and the
/// append.
pub(super) async fn hold_the_lane(
    store: &TestStore,
) -> (Client, JoinHandle<Result<AppendOutcome, Error>>) {
    hold_the_lane_with(store, "held").await
}

/// [`hold_the_lane`] with a stream of `name`, new.
pub(super) async fn hold_the_lane_with(
    store: &TestStore,
    name: &str,
) -> (Client, JoinHandle<Result<AppendOutcome, Error>>) {
    let held = stream(name);
    store
        .append(AppendRequest::new(held.clone(), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap();
    let blocker = connect(database_url()).await.unwrap();
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM \"{}\".streams WHERE stream_id = '{name}' FOR UPDATE",
            store.schema().name()
        ))
        .await
        .unwrap();
    let append = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(AppendRequest::new(held, ExpectedVersion::Exact(1)).event(added(2)))
                .await
        }
    });
    wait_for_one_lock_wait(&blocker, store).await;
    (blocker, append)
}

/// Starts `requests` as lone appends while the lane is held, and waits until
/// every one of them waits for it.
pub(super) async fn queue(
    store: &TestStore,
    requests: Vec<AppendRequest>,
) -> Vec<JoinHandle<Result<AppendOutcome, Error>>> {
    let count = requests.len();
    let appends = requests
        .into_iter()
        .map(|request| {
            let store = store.clone();
            tokio::spawn(async move { store.append(request).await })
        })
        .collect();
    eventually(Duration::from_secs(10), "the appends queue", || async {
        store.appends_waiting() == count
    })
    .await;
    appends
}

/// Holds the lane, queues `requests`, lets the lane go and returns every
/// outcome, in order.
pub(super) async fn in_one_group(
    store: &TestStore,
    held: &str,
    requests: Vec<AppendRequest>,
) -> Vec<Result<AppendOutcome, Error>> {
    let (blocker, held) = hold_the_lane_with(store, held).await;
    let appends = queue(store, requests).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    held.await.unwrap().unwrap();
    let mut outcomes = Vec::new();
    for append in appends {
        outcomes.push(append.await.unwrap());
    }
    outcomes
}

/// `outcome` is a version conflict on stream `name`, which expected
/// `expected` and was at `actual`.
pub(super) fn assert_conflict(
    outcome: &Result<AppendOutcome, Error>,
    name: &str,
    expected: u64,
    actual: u64,
) {
    match outcome {
        Err(Error::Conflict {
            stream: conflicted,
            expected: said,
            actual: found,
        }) => {
            assert_eq!(conflicted, &stream(name));
            assert_eq!(*said, ExpectedVersion::Exact(expected));
            assert_eq!(*found, Some(actual));
        }
        other => panic!("expected a conflict on {name}, got {other:?}"),
    }
}

/// `outcome` refuses an append to stream `name` whose event id `stored` is
/// stored already, naming it.
pub(super) fn assert_stored_event_id_refused(
    outcome: &Result<AppendOutcome, Error>,
    name: &str,
    stored: Uuid,
) {
    match outcome {
        Err(Error::InvalidAppend {
            stream: refused,
            reason,
        }) => {
            assert_eq!(refused, &stream(name));
            assert!(reason.contains(&stored.to_string()), "{reason}");
        }
        other => panic!("expected the stored event id refused, got {other:?}"),
    }
}

/// An event stored in stream `x`: appending it again is refused.
pub(super) async fn stored_event(store: &TestStore) -> NewEvent {
    let event = added(7);
    store
        .append(AppendRequest::new(stream("x"), ExpectedVersion::NoStream).event(event.clone()))
        .await
        .unwrap();
    event
}

pub(super) async fn create(store: &TestStore, name: &str) -> AppendOutcome {
    store
        .append(AppendRequest::new(stream(name), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap()
}
