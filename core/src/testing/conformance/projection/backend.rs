//! The backend's own side of the contract: checkpoints moved by
//! compare-and-set.

use uuid::Uuid;

use super::{Fixture, TallyModel};
use crate::{GlobalPosition, ProjectionBackend};

/// A checkpoint moves only from where it is: no checkpoint yet, only a move
/// from the start creates it, and a move from a stale position (another
/// runner moved it) is refused, not to be retried, and commits nothing of
/// the transaction where batches are atomic. Versions have checkpoints of
/// their own.
pub async fn checkpoints_move_only_from_where_they_are<F: Fixture>(fixture: F) {
    let (_, backend, model) = fixture.parts();
    let (first, second) = (GlobalPosition::new(7, 3), GlobalPosition::new(9, 1));
    let mut effects = Vec::new();
    let mut commit = async |effect: i64, from, to| {
        let mut tx = backend.begin("tally", 1).await.unwrap();
        model.setup(&mut tx, 1).await.unwrap();
        let event = Uuid::now_v7();
        model
            .apply(&mut tx, 1, "any", event, "s", effect)
            .await
            .unwrap();
        effects.push((effect, event));
        backend.commit(tx, "tally", 1, from, to).await
    };

    let error = commit(1, first, second).await.unwrap_err();
    assert!(!error.is_retriable(), "{error:?}");
    assert_eq!(backend.checkpoint("tally", 1).await.unwrap(), None);

    commit(2, GlobalPosition::START, first).await.unwrap();
    assert_eq!(backend.checkpoint("tally", 1).await.unwrap(), Some(first));

    // A stale `from` (another runner moved it) writes nothing.
    let error = commit(3, GlobalPosition::START, second).await.unwrap_err();
    assert!(!error.is_retriable(), "{error:?}");
    assert_eq!(backend.checkpoint("tally", 1).await.unwrap(), Some(first));

    commit(4, first, second).await.unwrap();
    assert_eq!(backend.checkpoint("tally", 1).await.unwrap(), Some(second));
    assert_eq!(
        backend.checkpoint("tally", 2).await.unwrap(),
        None,
        "versions have checkpoints of their own"
    );

    if backend.atomic_batches() {
        let mut committed: Vec<Uuid> = model
            .read(Some(1))
            .await
            .applied
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        committed.sort();
        let mut expected: Vec<Uuid> = effects
            .iter()
            .filter(|(effect, _)| [2, 4].contains(effect))
            .map(|(_, id)| *id)
            .collect();
        expected.sort();
        assert_eq!(committed, expected, "refused commits wrote nothing");
    }
}
