//! Appends that wait for a lane go together, each with an outcome of its
//! own, one per stream, and nothing is lost when they outrun the lanes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use annals::testing::conformance::{added, read_stream, stream};
use annals::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, GlobalPosition, StreamId};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{assert_conflict, create, hold_the_lane, one_lane_store, queue};
use crate::common::{eventually, fresh_store_with};

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
