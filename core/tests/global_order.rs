//! Property: whatever the history of appends (single streams, units of work,
//! conflicts), the global stream is a total order consistent with every
//! stream's versions, and reading after any checkpoint returns exactly the
//! suffix.

use std::collections::HashMap;

use annals::testing::conformance::{added, read_everything, stream};
use annals::{AppendRequest, EventStore, ExpectedVersion, GlobalPosition, MemoryEventStore};
use proptest::prelude::*;

/// One commit: a unit of work over distinct streams, each with a number of
/// events and whether its expected version is stale.
#[derive(Debug, Clone)]
struct Commit {
    parts: Vec<(usize, usize, bool)>,
}

fn commit() -> impl Strategy<Value = Commit> {
    proptest::collection::btree_map(0usize..6, (1usize..5, proptest::bool::weighted(0.15)), 1..4)
        .prop_map(|parts| Commit {
            parts: parts
                .into_iter()
                .map(|(stream, (count, stale))| (stream, count, stale))
                .collect(),
        })
}

fn run(history: Vec<Commit>, checkpoints: Vec<prop::sample::Index>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = MemoryEventStore::new();
        let mut versions: HashMap<usize, u64> = HashMap::new();
        for commit in history {
            let any_stale = commit.parts.iter().any(|&(stream_index, _, stale)| {
                stale && versions.get(&stream_index).copied().unwrap_or(0) > 0
            });
            let requests = commit
                .parts
                .iter()
                .map(|&(stream_index, count, stale)| {
                    let current = versions.get(&stream_index).copied().unwrap_or(0);
                    let expected = if stale && current > 0 {
                        current - 1
                    } else {
                        current
                    };
                    AppendRequest::new(
                        stream(&format!("s-{stream_index}")),
                        ExpectedVersion::Exact(expected),
                    )
                    .events((0..count).map(|n| added(n as i64)))
                })
                .collect();
            let result = store.append_all(requests).await;
            if any_stale {
                prop_assert!(result.unwrap_err().is_conflict());
                continue;
            }
            let outcomes = result.unwrap();
            for (&(stream_index, count, _), outcome) in commit.parts.iter().zip(&outcomes) {
                let version = versions.entry(stream_index).or_insert(0);
                *version += count as u64;
                prop_assert_eq!(outcome.last_version, *version);
            }
        }

        let everything = read_everything(&store, GlobalPosition::START).await;
        prop_assert_eq!(everything.len() as u64, versions.values().sum::<u64>());
        let mut seen: HashMap<String, u64> = HashMap::new();
        for pair in everything.windows(2) {
            prop_assert!(pair[0].position < pair[1].position, "a strict total order");
        }
        for event in &everything {
            let last = seen.entry(event.stream.to_string()).or_insert(0);
            prop_assert_eq!(
                event.version,
                *last + 1,
                "stream versions in order, no gaps"
            );
            *last = event.version;
        }
        if everything.is_empty() {
            return Ok(());
        }
        for index in checkpoints {
            let at = index.index(everything.len());
            let suffix = read_everything(&store, everything[at].position).await;
            let expected: Vec<_> = everything[at + 1..].iter().map(|e| e.event_id).collect();
            let actual: Vec<_> = suffix.iter().map(|e| e.event_id).collect();
            prop_assert_eq!(actual, expected);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn global_order_is_total_and_resumable(
        history in proptest::collection::vec(commit(), 1..40),
        checkpoints in proptest::collection::vec(any::<prop::sample::Index>(), 1..8),
    ) {
        run(history, checkpoints)?;
    }
}
