//! What every store test shares: a database, a schema of its own, and a
//! store over it that drops the schema when the test is done.

mod database;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use annals::{
    AppendOutcome, AppendRequest, AppendSignal, EventStore, EventStream, GlobalPosition,
    OutboxReader, OutboxRecord, RecordedEvent, Snapshot, StreamId,
};
use annals_postgres::{Config, PgEventStore};
use uuid::Uuid;

pub(crate) use database::{connect, database_url, new_schema_name};

/// How long a read of the global stream may wait for transactions that hide
/// rows committed before it. The horizon is cluster-wide: a transaction that
/// another test (or anything else on the server) has open hides what this
/// test committed after it, and the conformance cases read the global
/// stream right after writing.
const HORIZON_WAIT: Duration = Duration::from_secs(30);

/// A schema of the test's own, dropped (with everything in it) when the last
/// handle to it goes.
#[derive(Debug)]
pub(crate) struct Schema {
    name: String,
}

impl Schema {
    /// Picks a new schema name; the schema is created by whatever migrates
    /// first.
    pub(crate) fn new() -> Self {
        // Set up the database (and drop stale schemas) first.
        database_url();
        Schema {
            name: new_schema_name(),
        }
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The store configuration for this schema, with connections named after
    /// it so that a test can find (and kill) them.
    pub(crate) fn config(&self) -> Config {
        Config::from_url(database_url())
            .expect("ANNALS_TEST_DATABASE_URL is a libpq URL")
            .with_schema(self.name.clone())
            .with_application_name(&self.application_name())
            .with_pool_size(10)
            .with_pool_wait_timeout(Duration::from_secs(60))
            .with_horizon_wait(HORIZON_WAIT)
    }

    /// The `application_name` of the connections of [`Schema::config`].
    pub(crate) fn application_name(&self) -> String {
        format!("t{}", &self.name[database::SCHEMA_PREFIX.len() - 1..])
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = database_url().to_owned();
        // The drop may run inside a runtime, where blocking on another
        // would panic: a thread of its own does the work.
        let dropped = std::thread::spawn(move || database::drop_schema(&url, &name)).join();
        if dropped.is_err() {
            eprintln!("dropping test schema {} panicked", self.name);
        }
    }
}

/// A [`PgEventStore`] in a schema of its own, dropped at the end of the test.
#[derive(Debug, Clone)]
pub(crate) struct TestStore {
    store: PgEventStore,
    schema: Arc<Schema>,
}

impl TestStore {
    /// The schema the store is in.
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }
}

impl Deref for TestStore {
    type Target = PgEventStore;

    fn deref(&self) -> &PgEventStore {
        &self.store
    }
}

/// A store over a new, empty schema, with the test configuration.
pub(crate) async fn fresh_store() -> TestStore {
    fresh_store_with(|config| config).await
}

/// A store over a new, empty schema, with the test configuration changed by
/// `configure`.
pub(crate) async fn fresh_store_with(configure: impl FnOnce(Config) -> Config) -> TestStore {
    let schema = Arc::new(Schema::new());
    let store = PgEventStore::connect(configure(schema.config()))
        .await
        .expect("connecting to the test database");
    TestStore { store, schema }
}

/// Another store over the same schema, as a second process would have.
pub(crate) async fn second_store(of: &TestStore) -> TestStore {
    let store = PgEventStore::connect(of.schema.config())
        .await
        .expect("connecting to the test database");
    TestStore {
        store,
        schema: Arc::clone(&of.schema),
    }
}

impl EventStore for TestStore {
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, annals::Error>> + Send {
        self.store.append(request)
    }

    fn append_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, annals::Error>> + Send {
        self.store.append_all(requests)
    }

    fn read_stream(&self, stream: StreamId, from_version: u64) -> EventStream {
        self.store.read_stream(stream, from_version)
    }

    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, annals::Error>> + Send {
        self.store.read_all(after, limit)
    }

    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<u64>, annals::Error>> + Send {
        self.store.stream_version(stream)
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, annals::Error>> + Send {
        self.store.load_snapshot(stream)
    }

    fn command_outcome(
        &self,
        command_id: Uuid,
    ) -> impl Future<Output = Result<Option<AppendOutcome>, annals::Error>> + Send {
        self.store.command_outcome(command_id)
    }

    fn append_signal(&self) -> AppendSignal {
        self.store.append_signal()
    }
}

impl OutboxReader for TestStore {
    fn read_outbox(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, annals::Error>> + Send {
        self.store.read_outbox(after, limit)
    }
}

/// Waits until `condition` holds, polling every few milliseconds, and fails
/// the test when it does not within `deadline`.
pub(crate) async fn eventually<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
