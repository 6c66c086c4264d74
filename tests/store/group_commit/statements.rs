//! How a group is written: the single events of its appends as one group
//! statement with a kept plan, padded to the statement's size, and every
//! other append as a statement of its own, in stream-id order.

use std::collections::HashSet;

use annals::testing::conformance::{added, read_stream, stream};
use annals::{AppendRequest, EventStore, ExpectedVersion};
use uuid::Uuid;

use super::{assert_conflict, create, in_one_group, one_lane_store};
use crate::common::fresh_store_with;

/// The single-event appends of a group are one statement
/// (`sql/append/group.sql`), whose plan the server keeps: after the
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
