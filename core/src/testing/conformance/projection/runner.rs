//! Running: catching up and following, restarts, one active runner, the
//! backlog in the status.

use std::time::Duration;

use super::{Fixture, Tally, TallyModel, WAIT, append, assert_exact, reach, retries, runner};
use crate::testing::conformance::stream;
use crate::{
    AppendRequest, BoxError, Envelope, EventStore, ExpectedVersion, GlobalPosition, Metadata,
    NewEvent, Payload, Projection, ProjectionBackend, ProjectionExhausted, ProjectionRunner,
    ProjectionState,
};

/// A runner catches up with what was written before it started, then
/// follows new events live.
pub async fn catches_up_then_follows_live<F: Fixture>(fixture: F) {
    let (store, _, model) = fixture.parts();
    for n in 0..10 {
        append(store, &format!("s-{}", n % 3), &[1, 2]).await;
    }
    let tally = Tally::new(model.clone(), "any");
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let last = append(store, "s-0", &[100]).await;
    let status = reach(&handle, last).await;
    assert_eq!(status.checkpoint, last);
    assert_eq!(status.applied, 21);
    let tallies = model.read(Some(1)).await;
    assert_eq!(
        tallies.amount("s-0") + tallies.amount("s-1") + tallies.amount("s-2"),
        130
    );
    let status = handle
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.state, ProjectionState::Live);
    handle.stop(WAIT).await.unwrap();
    assert_exact(&fixture, Some(1)).await;
}

/// Runners stopped or aborted while events are written: the next one goes
/// on from the checkpoint, and every event is applied once.
pub async fn restarts_resume_from_the_checkpoint_applying_each_event_once<F: Fixture>(fixture: F) {
    let (store, _, model) = fixture.parts();
    let tally = Tally::new(model.clone(), "any");
    let mut last = GlobalPosition::START;
    for round in 0..5 {
        let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
            .start()
            .expect("the runner starts");
        for n in 0..20 {
            last = append(store, &format!("s-{}", n % 4), &[round + 1]).await;
        }
        if round % 2 == 0 {
            handle.abort().await;
        } else {
            handle.stop(WAIT).await.unwrap();
        }
    }
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    assert_eq!(reach(&handle, last).await.checkpoint, last);
    let applied = model.read(Some(1)).await.applied;
    let mut unique: Vec<_> = applied.iter().map(|(id, _)| *id).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(applied.len(), 100, "every event once");
    assert_eq!(unique.len(), 100, "no event twice");
    handle.stop(WAIT).await.unwrap();
    assert_exact(&fixture, Some(1)).await;
}

/// Events the projection does not handle move its checkpoint on without
/// reaching its handler.
pub async fn events_of_other_types_advance_the_checkpoint_without_the_handler<F: Fixture>(
    fixture: F,
) {
    let (store, _, model) = fixture.parts();
    append(store, "s", &[1]).await;
    let foreign = NewEvent::raw(
        "InventoryCounted",
        1,
        Payload::encode(&1).unwrap(),
        Metadata::default(),
    );
    let last = store
        .append(AppendRequest::new(stream("stock-1"), ExpectedVersion::Any).events([foreign]))
        .await
        .unwrap()
        .last_position;
    let tally = Tally::new(model.clone(), "any");
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .start()
        .expect("the runner starts");
    let status = reach(&handle, last).await;
    assert_eq!(status.checkpoint, last);
    assert_eq!(status.applied, 1);
    handle.stop(WAIT).await.unwrap();
}

/// Of two runners of one projection version, one applies and the other
/// stands by; when the active one dies, the standby takes over from the
/// shared checkpoint.
pub async fn one_runner_applies_and_a_standby_takes_over_from_its_checkpoint<F: Fixture>(
    fixture: F,
) {
    let (store, _, model) = fixture.parts();
    let first = runner(
        &fixture,
        &Tally::new(model.clone(), "first"),
        ProjectionExhausted::Stop,
    )
    .start()
    .expect("the runner starts");
    let second = runner(
        &fixture,
        &Tally::new(model.clone(), "second"),
        ProjectionExhausted::Stop,
    )
    .start()
    .expect("the runner starts");
    let mut last = GlobalPosition::START;
    for n in 0..40 {
        last = append(store, &format!("s-{}", n % 4), &[1, 2, 3]).await;
    }

    // Whichever got the lease applies everything; the other stands by.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (active, standby, active_name, standby_name) = loop {
        if first.status().checkpoint >= last {
            break (first, second, "first", "second");
        }
        if second.status().checkpoint >= last {
            break (second, first, "second", "first");
        }
        assert!(tokio::time::Instant::now() < deadline, "nobody applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stood_by = standby
        .wait_until(Duration::from_millis(300), |status| status.applied > 0)
        .await;
    assert!(stood_by.is_err(), "the standby applied: {stood_by:?}");
    assert_eq!(standby.status().state, ProjectionState::Standby);
    assert_eq!(standby.status().applied, 0);
    assert_eq!(active.status().applied, 120);
    let applied = assert_exact(&fixture, Some(1)).await;
    assert!(applied.values().all(|runner| runner == active_name));

    // The active one dies, and with it its lease; the standby takes over
    // from the shared checkpoint.
    active.abort().await;
    for n in 0..10 {
        last = append(store, &format!("s-{}", n % 4), &[4]).await;
    }
    let status = standby
        .wait_for(last, WAIT)
        .await
        .expect("the standby took over");
    assert!(status.checkpoint >= last, "{status:?}");
    assert_eq!(status.applied, 10);
    let applied = assert_exact(&fixture, Some(1)).await;
    assert_eq!(
        applied
            .values()
            .filter(|runner| *runner == standby_name)
            .count(),
        10,
        "it continued from the shared checkpoint"
    );
    standby.stop(WAIT).await.unwrap();
}

/// Applies nothing; has no way to clear a read model.
struct NoReset;

impl<Tx: Send> Projection<Tx> for NoReset {
    type Event = crate::testing::conformance::FixtureEvent;

    fn name(&self) -> &str {
        "no_reset"
    }

    async fn handle(
        &self,
        _: &mut Tx,
        _: &Envelope<crate::testing::conformance::FixtureEvent>,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A projection that cannot clear its read model refuses a reset and
/// forgets nothing.
pub async fn a_projection_that_cannot_clear_its_read_model_refuses_a_reset<F: Fixture>(fixture: F) {
    let (store, backend, _) = fixture.parts();
    let last = append(store, "a", &[1]).await;
    let handle = ProjectionRunner::new(store.clone(), backend.clone(), NoReset)
        .start()
        .unwrap();
    handle.wait_for(last, WAIT).await.unwrap();
    handle.stop(WAIT).await.unwrap();
    let error = ProjectionRunner::new(store.clone(), backend.clone(), NoReset)
        .reset()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Projection::reset"), "{error}");
    assert_eq!(
        backend.checkpoint("no_reset", 1).await.unwrap(),
        Some(last),
        "nothing forgotten"
    );
}

/// The status counts the events still to read, up to a limit, while the
/// runner is held, and none once it has caught up.
pub async fn the_status_counts_the_backlog_and_reaches_zero_when_caught_up<F: Fixture>(fixture: F) {
    let (store, _, model) = fixture.parts();
    for n in 0..50 {
        append(store, &format!("s-{}", n % 5), &[1, 2]).await;
    }
    let last = append(store, "s-0", &[1]).await;
    let tally = Tally::new(model.clone(), "any");
    tally.poison(&[2]);
    let handle = runner(&fixture, &tally, ProjectionExhausted::Stop)
        .progress(Duration::ZERO, 40)
        .retry_policy(retries(u32::MAX, Duration::from_millis(5)))
        .start()
        .expect("the runner starts");
    // Held at the first event of amount 2: the backlog behind it is counted,
    // up to the limit.
    let status = handle
        .wait_until(WAIT, |status| status.lag_events.is_some())
        .await
        .unwrap();
    assert_eq!(status.lag_events, Some(40), "{status:?}");
    assert!(status.lag_events_capped);

    tally.set_broken(false);
    let status = reach(&handle, last).await;
    assert_eq!(status.checkpoint, last);
    let status = handle
        .wait_until(WAIT, |status| status.state == ProjectionState::Live)
        .await
        .unwrap();
    assert_eq!(status.lag_events, Some(0));
    assert!(!status.lag_events_capped);
    handle.stop(WAIT).await.unwrap();
    assert_exact(&fixture, Some(1)).await;
}
