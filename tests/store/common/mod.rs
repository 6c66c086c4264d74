//! What every store test shares: a database, a schema of its own, and a
//! store over it that drops the schema when the test is done.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use annals::{
    AppendOutcome, AppendRequest, AppendSignal, EventStore, EventStream, FromSnapshot,
    GlobalBacklog, GlobalPosition, OutboxReader, OutboxRecord, OutboxShard, RecordedEvent,
    Snapshot, StreamId,
};
use annals_postgres::{Config, PgEventStore, PgOutbox};
use uuid::Uuid;

pub(crate) use annals_tests::postgres::{Schema, connect, database_url};
pub(crate) use annals_tests::wait::eventually;

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

    /// The schema, kept while the guard lives.
    pub(crate) fn schema_guard(&self) -> Arc<Schema> {
        Arc::clone(&self.schema)
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
    second_store_with(of, |config| config).await
}

/// Another store over the same schema, with the test configuration changed
/// by `configure`.
pub(crate) async fn second_store_with(
    of: &TestStore,
    configure: impl FnOnce(Config) -> Config,
) -> TestStore {
    let store = PgEventStore::connect(configure(of.schema.config()))
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

    fn read_from_snapshot(
        &self,
        stream: StreamId,
    ) -> impl Future<Output = Result<FromSnapshot, annals::Error>> + Send {
        self.store.read_from_snapshot(stream)
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

    fn global_backlog(
        &self,
        after: GlobalPosition,
        limit: u64,
    ) -> impl Future<Output = Result<GlobalBacklog, annals::Error>> + Send {
        self.store.global_backlog(after, limit)
    }
}

impl OutboxReader for TestStore {
    fn read_outbox(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, annals::Error>> + Send {
        let outbox = PgOutbox::new(&self.store);
        async move { outbox.read_outbox(shard, after, limit).await }
    }
}

/// Waits until one connection of `store` waits on a lock (another session
/// holds a row it writes), watching through `observer`.
pub(crate) async fn wait_for_one_lock_wait(
    observer: &annals_postgres::tokio_postgres::Client,
    store: &TestStore,
) {
    let application_name = store.schema().application_name();
    eventually(
        Duration::from_secs(10),
        "an append waits on the lock",
        || {
            let application_name = &application_name;
            async move {
                let row = observer
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        &[application_name],
                    )
                    .await
                    .unwrap();
                row.get::<_, i64>(0) == 1
            }
        },
    )
    .await;
}
