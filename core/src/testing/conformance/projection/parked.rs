//! Events a handler cannot apply: parked, stopping the projection or
//! skipped, replayed once fixed; and resets.

use std::time::Duration;

use super::{Fixture, Tally, TallyModel, WAIT, append, assert_exact, reach, runner};
use crate::testing::conformance::{added, stream};
use crate::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, Metadata, NewEvent, Payload,
    ProjectionBackend, ProjectionExhausted, ProjectionHandle, ProjectionState, ProjectionStatus,
    ReplayReport,
};

/// An event the handler fails on, attempt after attempt, is parked with
/// everything it was recorded with, and stops the projection before the
/// events after it; once the cause is fixed, a restart applies it first.
pub async fn a_poison_event_is_parked_and_stops_the_projection_until_fixed<F: Fixture>(fixture: F) {
    let (store, backend, model) = fixture.parts();
    let tally = Tally::new(model.clone(), "any");
    tally.poison(&[13]);
    append(store, "s", &[1, 2]).await;
    append(store, "s", &[13, 4]).await;
    let last = append(store, "s", &[5]).await;

    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let status = stopped(&handle).await;
    match &status.state {
        ProjectionState::Stopped { error: Some(error) } => {
            assert!(error.contains("cannot apply 13"), "{error}")
        }
        other => panic!("expected a stop with an error, got {other:?}"),
    }
    assert_eq!(status.parked, 1);
    assert_eq!(
        model.read(Some(1)).await.streams.get("s"),
        Some(&(2, 3)),
        "nothing after the poison event is applied"
    );

    let parked = backend.parked("tally", 1).await.unwrap();
    assert_eq!(parked.len(), 1);
    let poison = store
        .read_all(GlobalPosition::START, 10)
        .await
        .unwrap()
        .into_iter()
        .nth(2)
        .unwrap();
    let parked = &parked[0];
    assert_eq!((parked.projection.as_str(), parked.version), ("tally", 1));
    assert_eq!(parked.attempts, 3);
    assert!(parked.error.contains("cannot apply 13"), "{}", parked.error);
    assert_eq!(parked.event.event_id, poison.event_id);
    assert_eq!(parked.event.position, poison.position);
    assert_eq!(parked.event.stream, poison.stream);
    assert_eq!(parked.event.version, 3);
    assert_eq!(parked.event.event_type, poison.event_type);
    assert_eq!(parked.event.event_version, poison.event_version);
    assert_eq!(parked.event.payload.get(), poison.payload.get());
    assert_eq!(parked.event.metadata, poison.metadata);
    assert_eq!(parked.event.recorded_at, poison.recorded_at);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !handle.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stopped runner ends"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Fixed: a restart applies the parked event first, then the rest.
    tally.set_broken(false);
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    assert_eq!(reach(&handle, last).await.checkpoint, last);
    assert_eq!(model.read(Some(1)).await.amount("s"), 25);
    assert_exact(&fixture, Some(1)).await;
    assert!(
        backend.parked("tally", 1).await.unwrap().is_empty(),
        "applied, so unparked"
    );
    handle.stop(WAIT).await.unwrap();
}

/// With [`ProjectionExhausted::Skip`], the event is parked, counted and
/// passed.
pub async fn with_skip_a_poison_event_is_parked_counted_and_passed<F: Fixture>(fixture: F) {
    let (store, backend, model) = fixture.parts();
    let tally = Tally::new(model.clone(), "any");
    tally.poison(&[13]);
    append(store, "s", &[1, 13, 2]).await;
    let last = append(store, "s", &[4]).await;
    let handle = runner(&fixture, &tally, ProjectionExhausted::Skip)
        .start()
        .expect("the runner starts");
    let status = reach(&handle, last).await;
    assert_eq!(status.checkpoint, last);
    assert_eq!((status.skipped, status.parked), (1, 1));
    assert_eq!(model.read(Some(1)).await.amount("s"), 7);
    assert_eq!(backend.parked("tally", 1).await.unwrap().len(), 1);
    handle.stop(WAIT).await.unwrap();
}

/// An event of a handled type whose payload does not decode stops the
/// projection, parked after its attempts.
pub async fn an_undecodable_event_of_a_known_type_stops_the_projection<F: Fixture>(fixture: F) {
    let (store, backend, model) = fixture.parts();
    let bad = NewEvent::raw(
        "Removed",
        1,
        Payload::encode(&"oops").unwrap(),
        Metadata::default(),
    );
    store
        .append(AppendRequest::new(stream("s"), ExpectedVersion::Any).events([added(1), bad]))
        .await
        .unwrap();
    let tally = Tally::new(model.clone(), "any");
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let status = stopped(&handle).await;
    let ProjectionState::Stopped { error: Some(error) } = &status.state else {
        panic!("expected a stop, got {:?}", status.state);
    };
    assert!(error.contains("cannot decode `Removed`"), "{error}");
    assert_eq!(status.applied, 1);
    assert_eq!(backend.parked("tally", 1).await.unwrap()[0].attempts, 3);
}

/// Skipped events are replayed through the handle of the running
/// projection: while still broken they stay parked with one more attempt;
/// once fixed they are applied and unparked together, once.
pub async fn skipped_events_are_replayed_through_the_handle_once_fixed<F: Fixture>(fixture: F) {
    let (store, backend, model) = fixture.parts();
    let tally = Tally::new(model.clone(), "any");
    tally.poison(&[13, 14]);
    append(store, "a", &[1, 13, 2]).await;
    let last = append(store, "b", &[14, 3]).await;
    let handle = runner(&fixture, &tally, ProjectionExhausted::Skip)
        .start()
        .expect("the runner starts");
    let status = reach(&handle, last).await;
    assert_eq!((status.checkpoint, status.skipped), (last, 2));
    assert_eq!((status.skipped, status.parked), (2, 2));
    let tallies = model.read(Some(1)).await;
    assert_eq!((tallies.amount("a"), tallies.amount("b")), (3, 3));

    // Still broken: both fail again and stay parked, with one more attempt.
    let report = handle.replay_parked().await.unwrap();
    assert_eq!((report.replayed, report.failed, report.ahead), (0, 2, 0));
    assert!(report.last_error.unwrap().contains("cannot apply 14"));
    let parked = backend.parked("tally", 1).await.unwrap();
    assert_eq!(
        parked
            .iter()
            .map(|parked| parked.attempts)
            .collect::<Vec<_>>(),
        [4, 4]
    );

    tally.set_broken(false);
    let report = handle.replay_parked().await.unwrap();
    assert_eq!((report.replayed, report.failed, report.ahead), (2, 0, 0));
    assert!(backend.parked("tally", 1).await.unwrap().is_empty());
    let tallies = model.read(Some(1)).await;
    assert_eq!((tallies.amount("a"), tallies.amount("b")), (16, 17));
    assert_eq!(tallies.applied.len(), 5);
    assert_exact(&fixture, Some(1)).await;

    let report = handle.replay_parked().await.unwrap();
    assert_eq!(report, ReplayReport::default(), "nothing left to replay");
    handle.stop(WAIT).await.unwrap();
}

/// A reset clears the version's read model, checkpoint and parked events;
/// the next run builds it again from the start, applying each event once.
pub async fn a_reset_clears_the_version_and_the_next_run_replays_everything_once<F: Fixture>(
    fixture: F,
) {
    let (store, backend, model) = fixture.parts();
    let tally = Tally::new(model.clone(), "any");
    tally.poison(&[4]);
    append(store, "a", &[1, 2]).await;
    let last = append(store, "b", &[3, 4]).await;
    let handle = runner(&fixture, &tally, ProjectionExhausted::Skip)
        .start()
        .expect("the runner starts");
    reach(&handle, last).await;
    handle.stop(WAIT).await.unwrap();
    assert_eq!(backend.parked("tally", 1).await.unwrap().len(), 1);

    tally.set_broken(false);
    runner(&fixture, &tally, ProjectionExhausted::Skip)
        .reset()
        .await
        .unwrap();
    assert_eq!(backend.checkpoint("tally", 1).await.unwrap(), None);
    assert!(backend.parked("tally", 1).await.unwrap().is_empty());
    let tallies = model.read(Some(1)).await;
    assert!(tallies.streams.is_empty(), "the read model is cleared");
    assert_eq!(tallies.amount("a"), 0);

    let handle = runner(&fixture, &tally, ProjectionExhausted::Skip)
        .start()
        .expect("the runner starts");
    let status = reach(&handle, last).await;
    assert_eq!(status.checkpoint, last);
    let tallies = model.read(Some(1)).await;
    assert_eq!((tallies.amount("a"), tallies.amount("b")), (3, 7));
    assert_eq!(tallies.applied.len(), 4);
    assert_exact(&fixture, Some(1)).await;
    handle.stop(WAIT).await.unwrap();
}

/// The status of the runner of `handle` once it has stopped.
async fn stopped(handle: &ProjectionHandle) -> ProjectionStatus {
    handle
        .wait_until(WAIT, |status| {
            matches!(status.state, ProjectionState::Stopped { .. })
        })
        .await
        .expect("the runner stops")
}
