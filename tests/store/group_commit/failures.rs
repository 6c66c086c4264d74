//! A group the server refuses writes nothing; its appends go again alone,
//! and only the one at fault fails.

use annals::testing::conformance::{added, read_stream, stream};
use annals::{AppendRequest, ExpectedVersion};

use super::{assert_stored_event_id_refused, create, in_one_group, one_lane_store, stored_event};

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
