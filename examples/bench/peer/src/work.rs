//! The measurements the peer makes on request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{CqrsFramework, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

use crate::account::{Account, Deposit};

type Store = PersistedEventStore<PostgresEventRepository, Account>;
type Cqrs = CqrsFramework<Account, Store>;

/// Aggregates each command writer takes turns over, as annals-bench's
/// command writers do.
const AGGREGATES_PER_WRITER: usize = 64;
/// Events per command when writing the aggregate the loads read.
const LOAD_COMMAND_EVENTS: usize = 100;
/// The aggregate the loads read.
const LOAD_AGGREGATE: &str = "load";

/// The peer's state: its connection settings, its schema's tables, and a
/// framework per pool size asked for.
pub(crate) struct Peer {
    options: PgConnectOptions,
    events_table: String,
    snapshots_table: String,
    frameworks: HashMap<u32, Arc<Cqrs>>,
    loads: Option<(Store, u64)>,
    windows: u64,
}

impl Peer {
    /// Connects to `url` and creates postgres-es's tables in `schema`.
    pub(crate) async fn create(url: &str, schema: &str) -> Result<Self, String> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "the schema name {schema:?} is not a plain lower-case identifier"
            ));
        }
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|error| format!("bad ANNALS_TEST_DATABASE_URL: {error}"))?
            .application_name("annals-bench-peer");
        let quoted = format!("\"{schema}\"");
        let pool = pool(&options, 1).await?;
        pool.execute(
            include_str!("../sql/tables.sql")
                .replace("{schema}", &quoted)
                .as_str(),
        )
        .await
        .map_err(|error| format!("creating the tables: {error}"))?;
        Ok(Peer {
            options,
            events_table: format!("{quoted}.events"),
            snapshots_table: format!("{quoted}.snapshots"),
            frameworks: HashMap::new(),
            loads: None,
            windows: 0,
        })
    }

    /// The answer to one request line.
    pub(crate) async fn answer(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["commands", writers, pool, events, warm_up, measured] => {
                let rate = self
                    .commands(
                        number(writers)?,
                        number(pool)?,
                        number(events)?,
                        Duration::from_millis(number(warm_up)?),
                        Duration::from_millis(number(measured)?),
                    )
                    .await?;
                Ok(format!("{rate}"))
            }
            ["write-load", events] => self
                .write_load(number(events)?)
                .await
                .map(|v| v.to_string()),
            ["load"] => self.load().await.map(|took| took.as_nanos().to_string()),
            _ => Err(format!("unknown request {line:?}")),
        }
    }

    fn store(&self, pool: PgPool) -> Store {
        let repository = PostgresEventRepository::new(pool)
            .with_tables(&self.events_table, &self.snapshots_table);
        PersistedEventStore::new_event_store(repository)
    }

    async fn framework(&mut self, connections: u32) -> Result<Arc<Cqrs>, String> {
        if let Some(framework) = self.frameworks.get(&connections) {
            return Ok(framework.clone());
        }
        let store = self.store(pool(&self.options, connections).await?);
        let framework = Arc::new(CqrsFramework::new(store, Vec::new(), ()));
        self.frameworks.insert(connections, framework.clone());
        Ok(framework)
    }

    /// Commands per second of `writers` writers during `measured`, after
    /// `warm_up`.
    async fn commands(
        &mut self,
        writers: usize,
        connections: u32,
        events: usize,
        warm_up: Duration,
        measured: Duration,
    ) -> Result<f64, String> {
        let framework = self.framework(connections).await?;
        self.windows += 1;
        let round = format!("{}-{}", started_at(), self.windows);
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let (framework, done, stop) = (framework.clone(), done.clone(), stop.clone());
                let ids: Vec<String> = (0..AGGREGATES_PER_WRITER)
                    .map(|index| format!("{round}-{writer}-{index}"))
                    .collect();
                tokio::spawn(async move {
                    let mut commands = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let command = Deposit {
                            amount: (commands * events) as i64,
                            times: events,
                        };
                        framework
                            .execute(&ids[commands % ids.len()], command)
                            .await
                            .map_err(|error| error.to_string())?;
                        commands += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        tokio::time::sleep(warm_up).await;
        let (before, started) = (done.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(measured).await;
        let (after, elapsed) = (done.load(Ordering::Relaxed), started.elapsed());
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await
                .map_err(|error| format!("a writer panicked: {error}"))??;
        }
        Ok((after - before) as f64 / elapsed.as_secs_f64())
    }

    /// Writes the aggregate the loads read: `events` deposits in commands
    /// of 100.
    async fn write_load(&mut self, events: u64) -> Result<u64, String> {
        let framework = self.framework(1).await?;
        let mut written = 0;
        while written < events {
            let times = LOAD_COMMAND_EVENTS.min((events - written) as usize);
            let command = Deposit {
                amount: written as i64,
                times,
            };
            framework
                .execute(LOAD_AGGREGATE, command)
                .await
                .map_err(|error| error.to_string())?;
            written += times as u64;
        }
        let store = self.store(pool(&self.options, 1).await?);
        self.loads = Some((store, events));
        Ok(written)
    }

    /// How long one load of the aggregate took.
    async fn load(&self) -> Result<Duration, String> {
        let Some((store, events)) = &self.loads else {
            return Err("load before write-load".to_owned());
        };
        let started = Instant::now();
        let context = store
            .load_aggregate(LOAD_AGGREGATE)
            .await
            .map_err(|error| error.to_string())?;
        let took = started.elapsed();
        if context.aggregate.deposits != *events {
            return Err(format!(
                "loaded {} deposits, not {events}",
                context.aggregate.deposits
            ));
        }
        Ok(took)
    }
}

async fn pool(options: &PgConnectOptions, connections: u32) -> Result<PgPool, String> {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options.clone())
        .await
        .map_err(|error| format!("connecting: {error}"))
}

fn number<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("{word:?} is not a number"))
}

/// Seconds since the epoch, to tell this process's aggregates from those of
/// another run in the same schema.
fn started_at() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
