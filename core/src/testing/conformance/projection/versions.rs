//! Versions: a new version rebuilds beside the serving one and is promoted
//! once it has caught up.

use std::time::Duration;

use super::{
    BATCH, Fixture, Tally, TallyModel, WAIT, Writer, append, assert_exact, reach, retries, runner,
};
use crate::{ProjectionBackend, ProjectionExhausted, ProjectionState};

/// The first version of a projection serves at once; a second version
/// rebuilds from the start while the first keeps serving and applying,
/// and is promoted once it has caught up. An older version started again
/// does not take the serving place back.
pub async fn the_first_version_serves_at_once_and_a_new_version_rebuilds_beside_it<F: Fixture>(
    fixture: F,
) {
    let (store, backend, model) = fixture.parts();
    for n in 0..30 {
        append(store, &format!("s-{}", n % 4), &[1, 2, 3]).await;
    }
    let v1 = Tally::new(model.clone(), "v1");
    let first = runner(&fixture, &v1, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let last = append(store, "s-0", &[10]).await;
    let status = reach(&first, last).await;
    assert_eq!(status.serving_version, Some(1));
    assert_eq!(backend.serving("tally").await.unwrap(), Some(1));
    assert!(model.serves(1).await);

    // Version 2 rebuilds from the start while version 1 keeps serving and
    // applying; a handler that keeps failing holds it in the rebuild.
    let v2 = v1.version(2, "v2");
    v2.poison(&[10]);
    let second = runner(&fixture, &v2, ProjectionExhausted::Stop)
        .retry_policy(retries(u32::MAX, Duration::from_millis(5)))
        .start()
        .expect("the runner starts");
    let status = second
        .wait_until(WAIT, |status| status.applied >= 7)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Rebuilding, "{status:?}");
    assert_eq!(status.serving_version, Some(1));
    assert_eq!(backend.serving("tally").await.unwrap(), Some(1));
    let later = append(store, "s-1", &[5]).await;
    let status = reach(&first, later).await;
    assert_eq!(status.checkpoint, later, "the serving version keeps up");

    // Unblocked, it catches up and is promoted.
    v2.set_broken(false);
    let status = second
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Live, "{status:?}");
    assert_eq!(status.checkpoint, later);
    assert_eq!(status.serving_version, Some(2));
    assert_eq!(backend.serving("tally").await.unwrap(), Some(2));
    assert!(model.serves(2).await);
    assert_eq!(
        model.read(Some(2)).await.streams,
        model.read(Some(1)).await.streams,
        "both versions hold the same read model"
    );
    assert_eq!(model.read(Some(2)).await.applied.len(), 92);

    // An older version started again does not take the serving place back.
    first.stop(WAIT).await.unwrap();
    let again = runner(&fixture, &v1, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let status = again
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.serving_version, Some(2));
    assert!(model.serves(2).await);
    again.stop(WAIT).await.unwrap();
    second.stop(WAIT).await.unwrap();
}

/// A rebuild held between batches shows its progress (what is applied,
/// what is left) while the serving version keeps up with new events and
/// queries read it whole; released, the rebuild catches up, is promoted,
/// and the old runner sees the switch.
pub async fn a_held_rebuild_shows_its_progress_while_the_serving_version_keeps_up<F: Fixture>(
    fixture: F,
) {
    let (store, backend, model) = fixture.parts();
    for n in 0..300 {
        append(store, &format!("s-{}", n % 7), &[n % 50 + 1]).await;
    }
    let v1 = Tally::new(model.clone(), "v1");
    let serving = runner(&fixture, &v1, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let writer = Writer::start(store);
    reach(&serving, append(store, "s-0", &[1]).await).await;
    assert_eq!(backend.serving("tally").await.unwrap(), Some(1));
    assert!(model.serves(1).await);

    // Version 2 rebuilds from the start, held after three batches (of
    // single events where the backend commits each event alone).
    let v2 = v1.version(2, "v2");
    v2.hold_after(3);
    let held = if backend.atomic_batches() {
        3 * BATCH
    } else {
        3
    } as u64;
    let rebuild = runner(&fixture, &v2, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let status = rebuild
        .wait_until(WAIT, |status| status.applied >= held)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Rebuilding, "{status:?}");
    assert_eq!(status.serving_version, Some(1));
    let moved = rebuild
        .wait_until(Duration::from_millis(300), |status| status.applied > held)
        .await;
    assert!(moved.is_err(), "it went past its hold: {moved:?}");
    let status = rebuild
        .wait_until(WAIT, |status| {
            status.lag_events.is_some_and(|events| events > 0)
        })
        .await
        .unwrap();
    assert_eq!(status.applied, held, "held after three batches: {status:?}");

    // Meanwhile queries keep answering from version 1, which keeps up.
    let now = append(store, "s-1", &[7]).await;
    reach(&serving, now).await;
    assert_eq!(backend.serving("tally").await.unwrap(), Some(1));
    assert!(model.serves(1).await, "queries read version 1, all of it");
    let served: i64 = model
        .read(None)
        .await
        .streams
        .values()
        .map(|(events, _)| events)
        .sum();
    assert!(served > 300, "version 1 serves what it applied: {served}");

    // Released, it catches up with the writer and is promoted.
    v2.release();
    let status = rebuild
        .wait_until(WAIT, |status| status.serving_version == Some(2))
        .await
        .unwrap();
    assert_eq!(status.serving_version, Some(2), "{status:?}");
    assert_eq!(backend.serving("tally").await.unwrap(), Some(2));
    assert!(model.serves(2).await);

    let last = writer.finish().await;
    reach(&rebuild, last).await;
    reach(&serving, last).await;
    let status = rebuild
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Live, "{status:?}");
    // Both versions are complete, each event applied once by its version.
    let by_v2 = assert_exact(&fixture, Some(2)).await;
    assert!(by_v2.values().all(|runner| runner == "v2"));
    let by_v1 = assert_exact(&fixture, Some(1)).await;
    assert!(by_v1.values().all(|runner| runner == "v1"));
    assert_exact(&fixture, None).await;
    let status = serving
        .wait_until(WAIT, |status| status.serving_version == Some(2))
        .await
        .unwrap();
    assert_eq!(
        status.serving_version,
        Some(2),
        "the old runner sees the switch"
    );
    serving.stop(WAIT).await.unwrap();
    rebuild.stop(WAIT).await.unwrap();
}
