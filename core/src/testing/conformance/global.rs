//! The global stream: a stable total order that readers can resume.

use std::collections::HashMap;
use std::time::Duration;

use super::{added, read_everything, stream};
use crate::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, OutboxReader, RecordedEvent,
    StreamId,
};

/// Checks that `events` are in strictly increasing position order and that
/// each stream's versions appear in increasing order without gaps.
pub(crate) fn assert_total_order(events: &[RecordedEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions must strictly increase: {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
    let mut versions: HashMap<&StreamId, u64> = HashMap::new();
    for event in events {
        let last = versions.entry(&event.stream).or_insert(0);
        assert_eq!(
            event.version,
            *last + 1,
            "stream `{}` must appear in version order without gaps",
            event.stream
        );
        *last = event.version;
    }
}

/// Later commits have later positions.
pub async fn positions_strictly_increase_in_commit_order<S: EventStore + OutboxReader>(store: S) {
    let mut last = GlobalPosition::START;
    for index in 0..10 {
        let outcome = store
            .append(
                AppendRequest::new(
                    stream(&format!("order-{}", index % 3)),
                    ExpectedVersion::Any,
                )
                .events([added(index), added(index)]),
            )
            .await
            .unwrap();
        assert!(outcome.last_position > last);
        last = outcome.last_position;
    }
    let events = read_everything(&store, GlobalPosition::START).await;
    assert_eq!(events.len(), 20);
    assert_total_order(&events);
    assert_eq!(events.last().unwrap().position, last);
}

/// Reading after the position of event k returns exactly events k+1...
pub async fn read_all_after_any_checkpoint_returns_exactly_the_suffix<
    S: EventStore + OutboxReader,
>(
    store: S,
) {
    for index in 0..12 {
        store
            .append(
                AppendRequest::new(
                    stream(&format!("order-{}", index % 4)),
                    ExpectedVersion::Any,
                )
                .events((0..=(index % 3)).map(added)),
            )
            .await
            .unwrap();
    }
    let everything = read_everything(&store, GlobalPosition::START).await;
    for (index, event) in everything.iter().enumerate() {
        let suffix = read_everything(&store, event.position).await;
        let expected: Vec<_> = everything[index + 1..].iter().map(|e| e.event_id).collect();
        let actual: Vec<_> = suffix.iter().map(|e| e.event_id).collect();
        assert_eq!(actual, expected, "after {}", event.position);
    }
    let last = everything.last().unwrap().position;
    assert!(store.read_all(last, 10).await.unwrap().is_empty());
}

/// Pages of any size, chained by their last position, read everything once.
pub async fn read_all_pages_without_gaps_or_repeats<S: EventStore + OutboxReader>(store: S) {
    for index in 0..7 {
        store
            .append(
                AppendRequest::new(stream(&format!("order-{index}")), ExpectedVersion::NoStream)
                    .events((0..5).map(added)),
            )
            .await
            .unwrap();
    }
    let everything = read_everything(&store, GlobalPosition::START).await;
    assert_eq!(everything.len(), 35);
    for limit in [1usize, 2, 3, 7, 34, 35, 36] {
        let mut paged = Vec::new();
        let mut checkpoint = GlobalPosition::START;
        loop {
            let page = store.read_all(checkpoint, limit).await.unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            checkpoint = last.position;
            paged.extend(page.into_iter().map(|event| event.event_id));
        }
        let expected: Vec<_> = everything.iter().map(|event| event.event_id).collect();
        assert_eq!(paged, expected, "pages of {limit}");
    }
}

/// Concurrent writers on several streams: the global order is total and each
/// stream's versions appear in order, while a reader follows along.
pub async fn global_order_agrees_with_stream_versions_under_concurrency<
    S: EventStore + OutboxReader,
>(
    store: S,
) {
    const WRITERS: usize = 6;
    const APPENDS: usize = 30;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut checkpoint = GlobalPosition::START;
            while seen.len() < WRITERS * APPENDS * 2 {
                let page = store.read_all(checkpoint, 50).await.unwrap();
                match page.last() {
                    Some(last) => checkpoint = last.position,
                    None => tokio::time::sleep(Duration::from_millis(2)).await,
                }
                seen.extend(page);
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for index in 0..APPENDS {
                // Two writers share each stream, so some appends conflict.
                let id = stream(&format!("shared-{}", (writer + index) % 4));
                loop {
                    let version = store.stream_version(&id).await.unwrap().unwrap_or(0);
                    let request = AppendRequest::new(id.clone(), ExpectedVersion::Exact(version))
                        .events([added(1), added(2)]);
                    match store.append(request).await {
                        Ok(_) => break,
                        Err(error) if error.is_conflict() => continue,
                        Err(error) => panic!("{error}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let followed = reader.await.unwrap();
    assert_eq!(followed.len(), WRITERS * APPENDS * 2);
    assert_total_order(&followed);
    let after_the_fact = read_everything(&store, GlobalPosition::START).await;
    let followed_ids: Vec<_> = followed.iter().map(|event| event.event_id).collect();
    let read_ids: Vec<_> = after_the_fact.iter().map(|event| event.event_id).collect();
    assert_eq!(
        followed_ids, read_ids,
        "a live reader sees the same order as a late one"
    );
}

/// One append's events are adjacent in the global order and share a commit;
/// appends sent one after another commit one after another.
pub async fn events_of_one_append_are_contiguous_and_share_a_commit<
    S: EventStore + OutboxReader,
>(
    store: S,
) {
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                store
                    .append(
                        AppendRequest::new(
                            stream(&format!("order-{writer}")),
                            ExpectedVersion::Any,
                        )
                        .events((0..4).map(added)),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = read_everything(&store, GlobalPosition::START).await;
    assert_eq!(events.len(), 160);
    for chunk in events.chunks(4) {
        assert!(chunk.iter().all(|event| event.stream == chunk[0].stream));
        assert!(
            chunk
                .iter()
                .all(|event| event.position.commit == chunk[0].position.commit)
        );
        assert_eq!(
            chunk[0].version % 4,
            1,
            "an append starts every fourth version"
        );
    }
    // Appends of different writers may share a commit (a store may commit
    // concurrent appends together); a writer's appends, each sent after the
    // one before returned, commit one after another.
    for writer in 0..4 {
        let writer_stream = stream(&format!("order-{writer}"));
        let commits: Vec<u64> = events
            .iter()
            .filter(|event| event.stream == writer_stream)
            .map(|event| event.position.commit)
            .collect();
        assert_eq!(commits.len(), 40);
        for (before, after) in commits.chunks(4).zip(commits.chunks(4).skip(1)) {
            assert!(
                before[0] < after[0],
                "a later append of {writer_stream} commits later"
            );
        }
    }
}

/// A reader waiting on the append signal wakes when an append commits.
pub async fn append_signal_wakes_a_waiting_reader<S: EventStore + OutboxReader>(store: S) {
    let mut signal = store.append_signal();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            store
                .append(AppendRequest::new(stream("order-1"), ExpectedVersion::Any).event(added(1)))
                .await
                .unwrap();
        })
    };
    let started = tokio::time::Instant::now();
    let mut woken = false;
    while !woken && started.elapsed() < Duration::from_secs(10) {
        woken = signal.wait(Duration::from_secs(10)).await;
    }
    assert!(woken, "the signal woke within 10 s of the append");
    writer.await.unwrap();
    let events = store.read_all(GlobalPosition::START, 10).await.unwrap();
    assert_eq!(events.len(), 1, "after the wake-up the event is readable");
}

/// Seeded random histories (appends, conflicts, units of work across five
/// streams): the global stream is a total order consistent with each
/// stream's versions, and reading after any position returns exactly the
/// suffix.
pub async fn random_histories_keep_a_total_order<S: EventStore + OutboxReader>(store: S) {
    for seed in 0..4u64 {
        let mut random = fastrand::Rng::with_seed(seed);
        let prefix = format!("history{seed}");
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        for _ in 0..40 {
            let streams: Vec<StreamId> = (0..5).map(|n| stream(&format!("{prefix}-{n}"))).collect();
            let mut requests = Vec::new();
            let mut chosen = streams.clone();
            random.shuffle(&mut chosen);
            let unit_size = if random.u8(0..4) == 0 {
                random.usize(2..=3)
            } else {
                1
            };
            for id in chosen.into_iter().take(unit_size) {
                let current = versions.get(&id).copied().unwrap_or(0);
                let stale = random.u8(0..6) == 0 && current > 0;
                let expected = if stale {
                    ExpectedVersion::Exact(current - 1)
                } else if random.bool() {
                    ExpectedVersion::Exact(current)
                } else {
                    ExpectedVersion::Any
                };
                let count = random.usize(1..=4);
                requests.push((
                    stale,
                    AppendRequest::new(id, expected).events((0..count).map(|n| added(n as i64))),
                ));
            }
            let any_stale = requests.iter().any(|(stale, _)| *stale);
            let requests: Vec<AppendRequest> = requests.into_iter().map(|(_, r)| r).collect();
            let counts: Vec<(StreamId, u64)> = requests
                .iter()
                .map(|request| (request.stream.clone(), request.events.len() as u64))
                .collect();
            let result = store.append_all(requests).await;
            if any_stale {
                assert!(result.unwrap_err().is_conflict());
                continue;
            }
            result.unwrap();
            for (id, count) in counts {
                *versions.entry(id).or_insert(0) += count;
            }
        }
        let everything: Vec<RecordedEvent> = read_everything(&store, GlobalPosition::START)
            .await
            .into_iter()
            .filter(|event| event.stream.as_str().starts_with(&format!("{prefix}-")))
            .collect();
        assert_total_order(&everything);
        let expected_total: u64 = versions.values().sum();
        assert_eq!(everything.len() as u64, expected_total, "seed {seed}");
        for _ in 0..10 {
            let index = random.usize(0..everything.len());
            let suffix: Vec<_> = read_everything(&store, everything[index].position)
                .await
                .into_iter()
                .filter(|event| event.stream.as_str().starts_with(&format!("{prefix}-")))
                .map(|event| event.event_id)
                .collect();
            let expected: Vec<_> = everything[index + 1..].iter().map(|e| e.event_id).collect();
            assert_eq!(suffix, expected, "seed {seed}, after event #{index}");
        }
    }
}
