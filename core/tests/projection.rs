//! What only the in-memory projection backend does (the contract it shares
//! with every backend is in the conformance suite, `conformance.rs`).

use std::time::Duration;

use annals::testing::conformance::projection::{
    MemoryTally, ProjectionFixture, Tally, WAIT, append, runner,
};
use annals::{MemoryEventStore, MemoryProjectionBackend, ProjectionExhausted};

#[tokio::test]
async fn nothing_holds_a_memory_store_back() {
    let fixture = ProjectionFixture {
        store: MemoryEventStore::new(),
        backend: MemoryProjectionBackend::new(),
        model: MemoryTally::new(),
    };
    for n in 0..5 {
        append(&fixture.store, &format!("s-{n}"), &[1, 2]).await;
    }
    let handle = runner(
        &fixture,
        &Tally::new(fixture.model.clone(), "any"),
        ProjectionExhausted::Stop,
    )
    .progress(Duration::ZERO, 40)
    .start()
    .unwrap();
    let status = handle
        .wait_until(WAIT, |status| status.lag_events.is_some())
        .await
        .unwrap();
    assert_eq!(
        status.horizon_held_for, None,
        "nothing holds a memory store back"
    );
    handle.stop(WAIT).await.unwrap();
}
