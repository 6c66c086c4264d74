//! Repository behaviour that the conformance suite does not pin down: warm
//! state, retries, metadata, snapshots by policy, units of work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use annals::testing::conformance::{FixtureEvent, Tally, TallyCommand, read_stream};
use annals::{
    AppendOutcome, AppendRequest, AppendSignal, Backoff, CommandContext, CommandError,
    CommandExhausted, Error, EventStore, EventStream, GlobalPosition, MemoryEventStore,
    RecordedEvent, Repository, RetryPolicy, Snapshot, SnapshotPolicy, StreamId, UnitOfWork,
};
use uuid::Uuid;

/// A memory store that counts reads and can fail the next appends.
#[derive(Clone, Default)]
struct Instrumented {
    inner: MemoryEventStore,
    stream_reads: Arc<AtomicUsize>,
    appends: Arc<AtomicUsize>,
    /// Appends to fail before passing through.
    failing_appends: Arc<AtomicUsize>,
    /// Whether failures are conflicts (else retriable backend errors).
    fail_with_conflict: bool,
}

impl EventStore for Instrumented {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failing_appends
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            return Err(if self.fail_with_conflict {
                Error::Conflict {
                    stream: request.stream,
                    expected: request.expected,
                    actual: Some(999),
                }
            } else {
                Error::backend("test", true, "connection reset")
            });
        }
        self.inner.append(request).await
    }

    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, Error> {
        self.inner.append_all(requests).await
    }

    fn read_stream(&self, stream: StreamId, from_version: u64) -> EventStream {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_stream(stream, from_version)
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_all(after, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, Error> {
        self.inner.stream_version(stream).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        self.inner.load_snapshot(stream).await
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, Error> {
        self.inner.command_outcome(command_id).await
    }

    fn append_signal(&self) -> AppendSignal {
        self.inner.append_signal()
    }
}

fn fast_retries() -> RetryPolicy<CommandExhausted> {
    RetryPolicy::default().with_backoff(
        Backoff::exponential(Duration::from_micros(10), Duration::from_micros(100))
            .with_jitter(1.0),
    )
}

#[tokio::test]
async fn a_warm_aggregate_is_not_read_again() {
    let store = Instrumented::default();
    let repository = Repository::<Tally, _>::new(store.clone());
    repository
        .execute("t", &TallyCommand::Add(1))
        .await
        .unwrap();
    assert_eq!(store.stream_reads.load(Ordering::SeqCst), 1);
    for _ in 0..5 {
        repository
            .execute("t", &TallyCommand::Add(1))
            .await
            .unwrap();
    }
    assert_eq!(
        store.stream_reads.load(Ordering::SeqCst),
        1,
        "warm commands read nothing"
    );
    assert_eq!(repository.load("t").await.unwrap().state.total, 6);
}

#[tokio::test]
async fn a_stale_warm_state_costs_one_conflict_and_a_reload() {
    let store = MemoryEventStore::new();
    let first = Repository::<Tally, _>::new(store.clone()).with_retry(fast_retries());
    let second = Repository::<Tally, _>::new(store.clone());
    first.execute("t", &TallyCommand::Add(1)).await.unwrap();
    second.execute("t", &TallyCommand::Add(10)).await.unwrap();
    // `first` still holds version 1; its next command conflicts, reloads and lands.
    let outcome = first.execute("t", &TallyCommand::Remove(11)).await.unwrap();
    assert_eq!(outcome.version, 3);
    assert_eq!(first.load("t").await.unwrap().state.total, 0);
}

#[tokio::test]
async fn conflicts_beyond_the_policy_are_returned() {
    let store = Instrumented {
        failing_appends: Arc::new(AtomicUsize::new(100)),
        fail_with_conflict: true,
        ..Instrumented::default()
    };
    let repository =
        Repository::<Tally, _>::new(store.clone()).with_retry(fast_retries().with_max_attempts(4));
    let error = repository
        .execute("t", &TallyCommand::Add(1))
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    assert_eq!(store.appends.load(Ordering::SeqCst), 4);
    assert_eq!(
        store.stream_reads.load(Ordering::SeqCst),
        4,
        "each attempt reloads"
    );
}

#[tokio::test]
async fn transient_errors_are_retried_and_the_command_lands_once() {
    let store = Instrumented {
        failing_appends: Arc::new(AtomicUsize::new(2)),
        ..Instrumented::default()
    };
    let repository = Repository::<Tally, _>::new(store.clone()).with_retry(fast_retries());
    let outcome = repository
        .execute("t", &TallyCommand::Add(3))
        .await
        .unwrap();
    assert_eq!(outcome.version, 1);
    assert_eq!(store.appends.load(Ordering::SeqCst), 3);

    let no_transient = Repository::<Tally, _>::new(Instrumented {
        failing_appends: Arc::new(AtomicUsize::new(1)),
        ..Instrumented::default()
    })
    .with_retry(fast_retries())
    .with_transient_retries(false);
    let error = no_transient
        .execute("t", &TallyCommand::Add(3))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::Store(ref e) if e.is_retriable()),
        "{error:?}"
    );
}

#[tokio::test]
async fn rejections_are_typed_and_write_nothing() {
    let store = MemoryEventStore::new();
    let repository = Repository::<Tally, _>::new(store.clone());
    let error = repository
        .execute("t", &TallyCommand::Remove(1))
        .await
        .unwrap_err();
    let rejection = error.rejection().expect("a rejection");
    assert_eq!((rejection.total, rejection.amount), (0, 1));
    assert!(store.is_empty());
}

#[tokio::test]
async fn events_carry_the_commands_metadata() {
    let store = MemoryEventStore::new();
    let repository = Repository::<Tally, _>::new(store.clone());
    let correlation = Uuid::now_v7();
    let context = CommandContext::new()
        .with_correlation_id(correlation)
        .with_tenant("acme")
        .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .with_header("channel", "api");
    repository
        .execute_with("t", &TallyCommand::Add(1), context.clone())
        .await
        .unwrap();
    repository
        .execute("t", &TallyCommand::Add(1))
        .await
        .unwrap();
    let events = read_stream(&store, &StreamId::new("tally-t").unwrap()).await;
    let metadata = &events[0].metadata;
    assert_eq!(metadata.command_id, Some(context.command_id));
    assert_eq!(metadata.correlation_id, Some(correlation));
    assert_eq!(metadata.causation_id, Some(context.command_id));
    assert_eq!(metadata.tenant.as_deref(), Some("acme"));
    assert!(metadata.traceparent.is_some());
    assert_eq!(metadata.headers["channel"], "api");
    let second = &events[1].metadata;
    assert_eq!(
        second.correlation_id, second.command_id,
        "a new command correlates to itself"
    );
}

#[tokio::test]
async fn custom_snapshot_policy_decides_from_versions() {
    let store = MemoryEventStore::new();
    let repository =
        Repository::<Tally, _>::new(store.clone()).with_snapshots(SnapshotPolicy::Custom(
            Arc::new(|decision| decision.version_after - decision.last_snapshot >= 3),
        ));
    for _ in 0..7 {
        repository
            .execute("t", &TallyCommand::Add(1))
            .await
            .unwrap();
    }
    let stream = StreamId::new("tally-t").unwrap();
    assert_eq!(
        store.load_snapshot(&stream).await.unwrap().unwrap().version,
        6
    );
}

#[tokio::test]
async fn a_unit_of_work_conflict_writes_nothing_and_can_be_redone() {
    let store = MemoryEventStore::new();
    let tallies = Repository::<Tally, _>::new(store.clone());
    tallies.execute("a", &TallyCommand::Add(10)).await.unwrap();

    let mut unit = UnitOfWork::new(store.clone());
    unit.execute(
        &tallies,
        "a",
        &TallyCommand::Remove(4),
        CommandContext::new(),
    )
    .await
    .unwrap();
    unit.execute(&tallies, "b", &TallyCommand::Add(4), CommandContext::new())
        .await
        .unwrap();
    assert!(
        unit.execute(&tallies, "a", &TallyCommand::Add(1), CommandContext::new())
            .await
            .is_err()
    );
    // Someone else moves `a` before the unit commits.
    Repository::<Tally, _>::new(store.clone())
        .execute("a", &TallyCommand::Add(1))
        .await
        .unwrap();
    assert!(unit.commit().await.unwrap_err().is_conflict());
    assert_eq!(tallies.load("b").await.unwrap().version, 0);

    let mut again = UnitOfWork::new(store.clone());
    again
        .execute(
            &tallies,
            "a",
            &TallyCommand::Remove(4),
            CommandContext::new(),
        )
        .await
        .unwrap();
    again
        .execute(&tallies, "b", &TallyCommand::Add(4), CommandContext::new())
        .await
        .unwrap();
    again.commit().await.unwrap();
    assert_eq!(tallies.load("a").await.unwrap().state.total, 7);
    assert_eq!(tallies.load("b").await.unwrap().state.total, 4);
}

#[tokio::test]
async fn a_command_that_changes_nothing_appends_nothing() {
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    struct Idle;
    impl annals::Aggregate for Idle {
        const TYPE: &'static str = "idle";
        type Command = ();
        type Event = FixtureEvent;
        type Error = std::convert::Infallible;
        type Services = ();
        fn handle(&self, _: &(), _: &()) -> Result<Vec<FixtureEvent>, std::convert::Infallible> {
            Ok(Vec::new())
        }
        fn apply(&mut self, _: &FixtureEvent) {}
    }
    let store = MemoryEventStore::new();
    let outcome = Repository::<Idle, _>::new(store.clone())
        .execute("x", &())
        .await
        .unwrap();
    assert_eq!(
        (outcome.version, outcome.position, outcome.events.len()),
        (0, None, 0)
    );
    assert!(store.is_empty());
}
