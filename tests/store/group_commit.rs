//! Group commit: lone appends that wait for a lane go together in one
//! transaction, each with an outcome of its own, and nothing is lost or
//! written twice when many appends outrun the lanes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use annals::testing::conformance::{added, read_stream, stream};
use annals::{
    AppendOutcome, AppendRequest, Error, EventStore, ExpectedVersion, GlobalPosition, NewEvent,
    StreamId,
};
use annals_postgres::tokio_postgres::Client;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::common::{
    TestStore, connect, database_url, eventually, fresh_store_with, wait_for_one_lock_wait,
};

/// A store whose lone appends have one lane.
async fn one_lane_store() -> TestStore {
    fresh_store_with(|config| config.with_pool_size(2).with_append_lanes(1)).await
}

/// Keeps the store's only lane busy: another session holds the row of
/// stream `held` (at version 1), and an append to it waits on that lock.
/// Returns the session, whose `COMMIT` lets the append go on, and the
/// append.
async fn hold_the_lane(store: &TestStore) -> (Client, JoinHandle<Result<AppendOutcome, Error>>) {
    hold_the_lane_with(store, "held").await
}

/// [`hold_the_lane`] with a stream of `name`, new.
async fn hold_the_lane_with(
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
async fn queue(
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
async fn in_one_group(
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
fn assert_conflict(outcome: &Result<AppendOutcome, Error>, name: &str, expected: u64, actual: u64) {
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
fn assert_stored_event_id_refused(
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
async fn stored_event(store: &TestStore) -> NewEvent {
    let event = added(7);
    store
        .append(AppendRequest::new(stream("x"), ExpectedVersion::NoStream).event(event.clone()))
        .await
        .unwrap();
    event
}

async fn create(store: &TestStore, name: &str) -> AppendOutcome {
    store
        .append(AppendRequest::new(stream(name), ExpectedVersion::NoStream).event(added(1)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_waiting_for_a_lane_commit_together_each_with_its_own_outcome() {
    let store = one_lane_store().await;
    create(&store, "a").await;
    create(&store, "b").await;
    let command = Uuid::now_v7();
    let resent = AppendRequest::new(stream("d"), ExpectedVersion::NoStream)
        .event(added(1))
        .command_id(command);
    let first = store.append(resent.clone()).await.unwrap();
    let (blocker, held) = hold_the_lane(&store).await;

    let appends = queue(
        &store,
        vec![
            AppendRequest::new(stream("a"), ExpectedVersion::Exact(1)).event(added(2)),
            AppendRequest::new(stream("b"), ExpectedVersion::Exact(5)).event(added(2)),
            AppendRequest::new(stream("c"), ExpectedVersion::NoStream).event(added(1)),
            resent,
        ],
    )
    .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let held = held.await.unwrap().unwrap();
    let mut outcomes = Vec::new();
    for append in appends {
        outcomes.push(append.await.unwrap());
    }

    let a = outcomes[0].as_ref().unwrap();
    assert_eq!(
        (a.first_version, a.last_version, a.duplicate),
        (2, 2, false)
    );
    assert_conflict(&outcomes[1], "b", 5, 1);
    let c = outcomes[2].as_ref().unwrap();
    assert_eq!((c.last_version, c.duplicate), (1, false));
    let d = outcomes[3].as_ref().unwrap();
    assert!(d.duplicate, "the resent command answers its first outcome");
    assert_eq!(d.last_position, first.last_position);

    // The appends that wrote went in one transaction, after the held one's.
    assert_eq!(a.last_position.commit, c.last_position.commit);
    assert!(a.last_position.commit > held.last_position.commit);
    assert_eq!(read_stream(&store, &stream("a")).await.len(), 2);
    assert_eq!(read_stream(&store, &stream("b")).await.len(), 1);
    assert_eq!(read_stream(&store, &stream("c")).await.len(), 1);
    assert_eq!(read_stream(&store, &stream("d")).await.len(), 1);
}

/// Callers answered by a group that append again at once are the next
/// group, all of them: the lane lets them queue their appends before it
/// takes what waits. On one thread, so that the order is the scheduler's,
/// not a race: taking the queue at once would find it empty, end the lane,
/// and send the first caller's next append alone.
#[tokio::test(flavor = "current_thread")]
async fn callers_answered_by_a_group_append_again_in_the_next_group() {
    let store = one_lane_store().await;
    let names = ["a", "b", "c", "d"];
    for name in names {
        create(&store, name).await;
    }
    let (blocker, held) = hold_the_lane(&store).await;
    let callers: Vec<_> = names
        .into_iter()
        .map(|name| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut commits = Vec::new();
                for version in [1, 2] {
                    let request = AppendRequest::new(stream(name), ExpectedVersion::Exact(version))
                        .event(added(version as i64 + 1));
                    let outcome = store.append(request).await.unwrap();
                    assert_eq!(outcome.last_version, version + 1);
                    commits.push(outcome.last_position.commit);
                }
                commits
            })
        })
        .collect();
    eventually(Duration::from_secs(10), "the appends queue", || async {
        store.appends_waiting() == names.len()
    })
    .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    held.await.unwrap().unwrap();

    let mut rounds = [HashSet::new(), HashSet::new()];
    for caller in callers {
        for (round, commit) in rounds.iter_mut().zip(caller.await.unwrap()) {
            round.insert(commit);
        }
    }
    assert_eq!(rounds[0].len(), 1, "the first appends went in one group");
    assert_eq!(rounds[1].len(), 1, "the second appends went in one group");
    assert_ne!(rounds[0], rounds[1]);
}

/// A statement of a group failing (here on an event id that is stored)
/// makes the server write none of the group; every append goes again
/// alone, and only the one at fault fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_failing_in_a_group_fails_only_its_own_append() {
    one_of_three_refused(ExpectedVersion::NoStream).await;
}

/// The same when the statement that fails is the group statement that
/// writes all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_group_statement_fails_only_the_append_at_fault() {
    one_of_three_refused(ExpectedVersion::Exact(1)).await;
}

/// Appends to `a`, `b` and `c` at `expected` (new streams, or existing ones
/// at version 1) in one group, `b`'s with an event id that is stored.
async fn one_of_three_refused(expected: ExpectedVersion) {
    let store = one_lane_store().await;
    let before = match expected {
        ExpectedVersion::NoStream => 0,
        _ => {
            for name in ["a", "b", "c"] {
                create(&store, name).await;
            }
            1
        }
    };
    let stored = stored_event(&store).await;
    let stored_id = stored.event_id;
    let outcomes = in_one_group(
        &store,
        "held",
        vec![
            AppendRequest::new(stream("a"), expected).event(added(2)),
            AppendRequest::new(stream("b"), expected).event(stored),
            AppendRequest::new(stream("c"), expected).event(added(2)),
        ],
    )
    .await;

    assert_eq!(outcomes[0].as_ref().unwrap().last_version, before + 1);
    assert_stored_event_id_refused(&outcomes[1], "b", stored_id);
    assert_eq!(outcomes[2].as_ref().unwrap().last_version, before + 1);
    for (name, written) in [("a", before + 1), ("b", before), ("c", before + 1)] {
        let events = read_stream(&store, &stream(name)).await;
        assert_eq!(events.len() as u64, written, "{name}");
    }
    assert_eq!(read_stream(&store, &stream("x")).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_to_one_stream_never_share_a_transaction() {
    let store = one_lane_store().await;
    create(&store, "shared").await;
    let (blocker, held) = hold_the_lane(&store).await;
    let appends = queue(
        &store,
        (0..3)
            .map(|n| AppendRequest::new(stream("shared"), ExpectedVersion::Any).event(added(n)))
            .collect(),
    )
    .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    held.await.unwrap().unwrap();
    let mut commits = HashSet::new();
    let mut versions = Vec::new();
    for append in appends {
        let outcome = append.await.unwrap().unwrap();
        commits.insert(outcome.last_position.commit);
        versions.push(outcome.last_version);
    }
    assert_eq!(commits.len(), 3, "each in a transaction of its own");
    versions.sort_unstable();
    assert_eq!(versions, [2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_outrunning_the_lanes_are_all_written_once_in_order() {
    const WRITERS: usize = 48;
    const APPENDS: u64 = 10;
    let store = fresh_store_with(|config| config.with_pool_size(3).with_append_lanes(2)).await;
    let writers: Vec<JoinHandle<Vec<AppendOutcome>>> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let own = stream(&format!("own-{writer}"));
                let shared = stream(&format!("shared-{}", writer % 4));
                let mut outcomes = Vec::new();
                for version in 0..APPENDS {
                    let request = AppendRequest::new(own.clone(), ExpectedVersion::Exact(version))
                        .event(added(version as i64))
                        .command_id(Uuid::now_v7());
                    outcomes.push(store.append(request).await.unwrap());
                    let request = AppendRequest::new(shared.clone(), ExpectedVersion::Any)
                        .event(added(version as i64));
                    outcomes.push(store.append(request).await.unwrap());
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.unwrap());
    }
    let appends = WRITERS * 2 * APPENDS as usize;
    assert_eq!(outcomes.len(), appends);

    for writer in 0..WRITERS {
        let events = read_stream(&store, &stream(&format!("own-{writer}"))).await;
        let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
        assert_eq!(versions, (1..=APPENDS).collect::<Vec<_>>());
    }
    for shared in 0..4 {
        let events = read_stream(&store, &stream(&format!("shared-{shared}"))).await;
        let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
        let expected = (WRITERS / 4) as u64 * APPENDS;
        assert_eq!(versions, (1..=expected).collect::<Vec<_>>());
    }

    // The global stream holds every append once, each stream's events in
    // version order, and fewer transactions than appends.
    let mut all = Vec::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store.read_all(after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        all.extend(page);
    }
    assert_eq!(all.len(), appends);
    let positions: HashSet<GlobalPosition> = all.iter().map(|event| event.position).collect();
    assert_eq!(positions.len(), appends);
    let written: HashSet<GlobalPosition> = outcomes
        .iter()
        .map(|outcome| outcome.last_position)
        .collect();
    assert_eq!(written, positions);
    let mut last_versions: HashMap<&StreamId, u64> = HashMap::new();
    for event in &all {
        let last = last_versions.entry(&event.stream).or_default();
        assert_eq!(event.version, *last + 1, "{}", event.stream);
        *last = event.version;
    }
    let commits: HashSet<u64> = all.iter().map(|event| event.position.commit).collect();
    assert!(
        commits.len() < appends,
        "{} transactions for {appends} appends",
        commits.len()
    );
}

/// The single-event appends of a group are one statement
/// (`sql/append/write_group.sql`), whose plan the server keeps: after the
/// first executions it runs the cached generic plan instead of planning
/// the statement again at every group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_events_of_a_group_are_one_statement_with_a_kept_plan() {
    const ROUNDS: u64 = 8;
    // One connection: the lane's statements are prepared on it, where
    // pg_prepared_statements shows them.
    let store = fresh_store_with(|config| config.with_pool_size(1).with_append_lanes(1)).await;
    for name in ["x", "y", "z"] {
        create(&store, name).await;
    }
    let mut claimed = Vec::new();
    for round in 0..ROUNDS {
        let requests: Vec<AppendRequest> = ["x", "y", "z"]
            .into_iter()
            .map(|name| {
                AppendRequest::new(stream(name), ExpectedVersion::Exact(round + 1))
                    .event(added(round as i64))
                    .command_id(Uuid::now_v7())
            })
            .collect();
        claimed = requests
            .iter()
            .map(|request| request.command_id.unwrap())
            .collect();
        let outcomes = in_one_group(&store, &format!("held-{round}"), requests).await;
        let commits: HashSet<u64> = outcomes
            .iter()
            .map(|outcome| {
                let outcome = outcome.as_ref().unwrap();
                assert_eq!(
                    (
                        outcome.first_version,
                        outcome.last_version,
                        outcome.duplicate
                    ),
                    (round + 2, round + 2, false)
                );
                outcome.last_position.commit
            })
            .collect();
        assert_eq!(commits.len(), 1, "one transaction per group");
    }
    for (name, command) in ["x", "y", "z"].into_iter().zip(claimed) {
        let events = read_stream(&store, &stream(name)).await;
        let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
        assert_eq!(versions, (1..=ROUNDS + 1).collect::<Vec<_>>());
        // The command id a group append claimed finds its outcome.
        let outcome = store
            .command_outcome(command)
            .await
            .unwrap()
            .expect("the command's outcome is recorded");
        assert_eq!(outcome.last_position, events.last().unwrap().position);
        assert_eq!(outcome.stream, stream(name));
    }

    let client = store.pool().get().await.unwrap();
    let plans = client
        .query(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
              WHERE statement LIKE '%stream_2 AS (%' AND statement NOT LIKE '%stream_3 AS (%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(plans.len(), 1, "the statement for groups of three");
    let (generic, custom): (i64, i64) = (plans[0].get(0), plans[0].get(1));
    assert_eq!(generic + custom, ROUNDS as i64, "one execution per group");
    assert!(generic > 0, "{custom} custom plans, never the generic one");
}

/// A group of single events larger than a statement's exact sizes is padded
/// with appends that write nothing; appends whose expected version no longer
/// holds go again alone and say why, or answer their command's first
/// outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_padded_group_writes_what_holds_and_sends_the_rest_alone() {
    let store = one_lane_store().await;
    let names: Vec<String> = (0..9).map(|n| format!("s-{n}")).collect();
    for name in &names {
        create(&store, name).await;
    }
    let command = Uuid::now_v7();
    let ran = AppendRequest::new(stream("s-8"), ExpectedVersion::Exact(1))
        .event(added(2))
        .command_id(command);
    let first = store.append(ran.clone()).await.unwrap();

    // Nine appends: seven that hold, one expecting a version the stream has
    // not reached, and the command that ran already, sent again.
    let mut requests: Vec<AppendRequest> = names[..7]
        .iter()
        .map(|name| AppendRequest::new(stream(name), ExpectedVersion::Exact(1)).event(added(2)))
        .collect();
    requests.push(AppendRequest::new(stream("s-7"), ExpectedVersion::Exact(4)).event(added(2)));
    requests.push(ran);
    let outcomes = in_one_group(&store, "held", requests).await;

    let mut commits = HashSet::new();
    for outcome in &outcomes[..7] {
        let outcome = outcome.as_ref().unwrap();
        assert_eq!((outcome.last_version, outcome.duplicate), (2, false));
        commits.insert(outcome.last_position.commit);
    }
    assert_eq!(commits.len(), 1, "the seven that held went together");
    assert_conflict(&outcomes[7], "s-7", 4, 1);
    let resent = outcomes[8].as_ref().unwrap();
    assert!(resent.duplicate);
    assert_eq!(resent.last_position, first.last_position);
    for name in &names[..7] {
        assert_eq!(read_stream(&store, &stream(name)).await.len(), 2);
    }
    assert_eq!(read_stream(&store, &stream("s-7")).await.len(), 1);
    assert_eq!(read_stream(&store, &stream("s-8")).await.len(), 2);
}

/// A group in which no single event joins a group statement (new streams,
/// any version, several events) writes each append once, by its own
/// statement, and answers each with what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_appends_that_go_on_their_own_writes_each_once() {
    let store = one_lane_store().await;
    create(&store, "any").await;
    create(&store, "two").await;
    let outcomes = in_one_group(
        &store,
        "held",
        vec![
            AppendRequest::new(stream("new"), ExpectedVersion::NoStream).event(added(1)),
            AppendRequest::new(stream("any"), ExpectedVersion::Any).event(added(2)),
            AppendRequest::new(stream("two"), ExpectedVersion::Exact(1))
                .events([added(2), added(3)]),
            // One that could join, alone among the others.
            AppendRequest::new(stream("held"), ExpectedVersion::Exact(2)).event(added(3)),
        ],
    )
    .await;
    let versions: Vec<(u64, u64)> = outcomes
        .iter()
        .map(|outcome| {
            let outcome = outcome.as_ref().unwrap();
            assert!(!outcome.duplicate);
            (outcome.first_version, outcome.last_version)
        })
        .collect();
    assert_eq!(versions, [(1, 1), (2, 2), (2, 3), (3, 3)]);
    let commits: HashSet<u64> = outcomes
        .iter()
        .map(|outcome| outcome.as_ref().unwrap().last_position.commit)
        .collect();
    assert_eq!(commits.len(), 1, "one transaction");
    for (name, count) in [("new", 1), ("any", 2), ("two", 3), ("held", 3)] {
        assert_eq!(
            read_stream(&store, &stream(name)).await.len(),
            count,
            "{name}"
        );
    }
}

/// Appends that join group statements and appends that do not, mixed in
/// stream-id order, are written in that order (a run of joining appends per
/// statement), all in one transaction, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_of_single_events_between_other_appends_share_the_transaction() {
    let store = one_lane_store().await;
    for name in ["a", "b", "d", "e", "f"] {
        create(&store, name).await;
    }
    let outcomes = in_one_group(
        &store,
        "held",
        vec![
            AppendRequest::new(stream("e"), ExpectedVersion::Exact(1)).event(added(2)),
            AppendRequest::new(stream("a"), ExpectedVersion::Exact(1)).event(added(2)),
            AppendRequest::new(stream("c"), ExpectedVersion::NoStream).event(added(1)),
            AppendRequest::new(stream("f"), ExpectedVersion::Exact(1)).event(added(2)),
            AppendRequest::new(stream("b"), ExpectedVersion::Exact(1)).event(added(2)),
            AppendRequest::new(stream("d"), ExpectedVersion::Any).event(added(2)),
        ],
    )
    .await;
    let commits: HashSet<u64> = outcomes
        .iter()
        .map(|outcome| {
            let outcome = outcome.as_ref().unwrap();
            assert!(!outcome.duplicate);
            outcome.last_position.commit
        })
        .collect();
    assert_eq!(commits.len(), 1, "one transaction");
    let versions: Vec<u64> = outcomes
        .iter()
        .map(|outcome| outcome.as_ref().unwrap().last_version)
        .collect();
    assert_eq!(versions, [2, 2, 1, 2, 2, 2]);
    for (name, count) in [("a", 2), ("b", 2), ("c", 1), ("d", 2), ("e", 2), ("f", 2)] {
        assert_eq!(
            read_stream(&store, &stream(name)).await.len(),
            count,
            "{name}"
        );
    }
}
