//! Where the tests find PostgreSQL, and schemas of their own in it.
//!
//! The database is `ANNALS_TEST_DATABASE_URL` (a libpq URL) when set;
//! otherwise a PostgreSQL container started once per test binary with
//! testcontainers (which needs Docker). Every test works in a schema of its
//! own, dropped when the test is done; schemas left over by runs that
//! crashed are dropped when a test binary starts.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals_postgres::{Config, tokio_postgres};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::Container;
use testcontainers_modules::testcontainers::runners::SyncRunner;

/// The prefix of every schema a test creates.
const SCHEMA_PREFIX: &str = "annals_test_";

/// Schemas older than this are left over from runs that crashed before
/// dropping them, and are dropped when a test binary starts.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The database of the tests: `ANNALS_TEST_DATABASE_URL` (a libpq URL), or a
/// PostgreSQL container started once for this test binary when it is not
/// set.
pub fn database_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = match std::env::var("ANNALS_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => on_own_thread(start_container),
        };
        let stale = url.clone();
        on_own_thread(move || drop_stale_schemas(&stale));
        url
    })
}

/// Runs `work` on a thread of its own, outside any async runtime: the
/// callers are inside one, and these steps block.
fn on_own_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(work)
        .join()
        .expect("the set-up thread panicked")
}

fn start_container() -> String {
    static CONTAINER: OnceLock<Container<Postgres>> = OnceLock::new();
    let container = CONTAINER.get_or_init(|| {
        Postgres::default().start().expect(
            "ANNALS_TEST_DATABASE_URL is not set and a PostgreSQL container could not be started",
        )
    });
    let host = container.get_host().expect("the container's host");
    let port = container
        .get_host_port_ipv4(5432)
        .expect("the container's port");
    format!("postgres://postgres:postgres@{host}:{port}/postgres")
}

/// A new schema name, unique and stamped with its creation time.
pub fn new_schema_name() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    format!("{SCHEMA_PREFIX}{seconds}_{:08x}", fastrand::u32(..))
}

fn created_at(schema: &str) -> Option<u64> {
    schema
        .strip_prefix(SCHEMA_PREFIX)?
        .split('_')
        .next()?
        .parse()
        .ok()
}

fn drop_stale_schemas(url: &str) {
    let result = block_on(async {
        let client = connect(url).await?;
        let rows = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)",
                &[&SCHEMA_PREFIX],
            )
            .await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        for row in rows {
            let schema: String = row.get(0);
            let stale = created_at(&schema)
                .is_some_and(|created| now.saturating_sub(created) > STALE_AFTER.as_secs());
            if stale {
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await?;
            }
        }
        Ok::<_, tokio_postgres::Error>(())
    });
    if let Err(error) = result {
        eprintln!("could not drop stale test schemas: {error}");
    }
}

/// Drops `schema`, waiting at most a few seconds for locks.
fn drop_schema(url: &str, schema: &str) {
    let result = block_on(async {
        let client = connect(url).await?;
        client
            .batch_execute(&format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            ))
            .await
    });
    if let Err(error) = result {
        eprintln!("could not drop test schema {schema}: {error}");
    }
}

/// A connection of the test's own, outside the store's pool.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("test connection ended: {error}");
        }
    });
    Ok(client)
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for test set-up")
        .block_on(future)
}

/// How long a read of the global stream may wait for transactions that hide
/// rows committed before it. The horizon is cluster-wide: a transaction that
/// another test (or anything else on the server) has open hides what this
/// test committed after it, and the conformance cases read the global
/// stream right after writing.
const HORIZON_WAIT: Duration = Duration::from_secs(30);

/// The test database's server as `host:port`, for a proxy in front of it.
///
/// # Panics
///
/// When the database is reached over a Unix socket.
pub fn server_address() -> String {
    let config: tokio_postgres::Config = database_url()
        .parse()
        .expect("ANNALS_TEST_DATABASE_URL is a libpq URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        None => "localhost".to_owned(),
        Some(_) => panic!("the test database is reached over a Unix socket: no TCP to proxy"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// A schema of the test's own, dropped (with everything in it) when the last
/// handle to it goes.
#[derive(Debug)]
pub struct Schema {
    name: String,
}

impl Schema {
    /// Picks a new schema name; the schema is created by whatever migrates
    /// first.
    #[expect(
        clippy::new_without_default,
        reason = "every call names another schema; a default would suggest one fixed schema"
    )]
    pub fn new() -> Self {
        // Set up the database (and drop stale schemas) first.
        database_url();
        Schema {
            name: new_schema_name(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store configuration for this schema, with connections named after
    /// it so that a test can find (and kill) them.
    pub fn config(&self) -> Config {
        Config::from_url(database_url())
            .expect("ANNALS_TEST_DATABASE_URL is a libpq URL")
            .with_schema(self.name.clone())
            .with_application_name(&self.application_name())
            .with_pool_size(10)
            .with_pool_wait_timeout(Duration::from_secs(60))
            .with_horizon_wait(HORIZON_WAIT)
    }

    /// [`Schema::config`] through `proxy` (a [`TcpProxy`](crate::proxy::TcpProxy)
    /// started with [`server_address`]), with connections named
    /// `application_name`.
    pub fn config_through(&self, proxy: std::net::SocketAddr, application_name: &str) -> Config {
        let given: tokio_postgres::Config = database_url()
            .parse()
            .expect("ANNALS_TEST_DATABASE_URL is a libpq URL");
        let mut config = Config::new()
            .with_host(&proxy.ip().to_string())
            .with_port(proxy.port())
            .with_user(given.get_user().unwrap_or("postgres"));
        if let Some(password) = given.get_password() {
            config = config.with_password(password);
        }
        if let Some(dbname) = given.get_dbname() {
            config = config.with_dbname(dbname);
        }
        config
            .with_schema(self.name.clone())
            .with_application_name(application_name)
            .with_pool_size(10)
            .with_pool_wait_timeout(Duration::from_secs(60))
            .with_horizon_wait(HORIZON_WAIT)
    }

    /// The `application_name` of the connections of [`Schema::config`].
    pub fn application_name(&self) -> String {
        format!("t{}", &self.name[SCHEMA_PREFIX.len() - 1..])
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = database_url().to_owned();
        // The drop may run inside a runtime, where blocking on another
        // would panic: a thread of its own does the work.
        let dropped = std::thread::spawn(move || drop_schema(&url, &name)).join();
        if dropped.is_err() {
            eprintln!("dropping test schema {} panicked", self.name);
        }
    }
}
