//! Where the store connects and how it behaves.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use annals::Limits;
use tokio_postgres::config::SslMode;

use crate::schema::SchemaName;
use crate::{Error, Result};

/// Whether connections use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Tls {
    /// Plain TCP or Unix sockets (the default).
    #[default]
    Disable,
    /// TLS, with the server's certificate verified against the system's root
    /// certificates and any added with [`Config::with_tls_root_certificate`],
    /// and its name against the host (libpq's `verify-full`).
    Require,
}

/// How readers in other processes learn that something was appended.
///
/// Readers in the same process are woken directly in every mode; a reader
/// that misses a wake-up finds the events at its next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Notify {
    /// After each commit, a background task sends `NOTIFY` on a connection
    /// of its own (outside the pool), coalescing the commits that happen
    /// while it is sending. Appends stay free of the lock that `NOTIFY`
    /// takes at commit; a crash between a commit and its notification costs
    /// remote readers one poll interval.
    #[default]
    AfterCommit,
    /// `NOTIFY` inside each append transaction: the wake-up is as certain as
    /// the commit, but every notifying commit takes a cluster-wide lock, so
    /// concurrent appends commit one at a time.
    InTransaction,
    /// No `NOTIFY`: readers in other processes poll.
    Off,
}

/// The configuration of a [`PgEventStore`](crate::PgEventStore): where to
/// connect, the pool, the schema, TLS, limits and notifications.
///
/// ```
/// use annals_postgres::{Config, Notify};
///
/// let config: Config = "postgres://app:secret@db.internal:5432/orders".parse()?;
/// let config = config
///     .with_schema("orders_events")
///     .with_pool_size(32)
///     .with_notify(Notify::InTransaction);
/// assert_eq!(config.schema(), "orders_events");
/// // The password is never shown.
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), annals_postgres::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) postgres: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    /// `None`: derived from the pool size.
    pub(crate) append_lanes: Option<usize>,
    pub(crate) tls: Tls,
    pub(crate) tls_root_certificates: Vec<PathBuf>,
    pub(crate) limits: Limits,
    pub(crate) notify: Notify,
    pub(crate) migrate: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_wait_timeout: Duration,
    pub(crate) horizon_warning: Duration,
    pub(crate) horizon_check_interval: Duration,
    pub(crate) horizon_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// The default schema name.
    pub const DEFAULT_SCHEMA: &'static str = "annals";

    /// A configuration for user `postgres` on `localhost:5432` (unless hosts
    /// are added), with every other setting at its default: schema
    /// `annals`, 16 connections, no TLS, default [`Limits`],
    /// [`Notify::AfterCommit`], migrations on connect.
    pub fn new() -> Self {
        let mut postgres = tokio_postgres::Config::new();
        postgres.user("postgres").application_name("annals");
        Config {
            postgres,
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            append_lanes: None,
            tls: Tls::Disable,
            tls_root_certificates: Vec::new(),
            limits: Limits::default(),
            notify: Notify::default(),
            migrate: true,
            connect_timeout: Duration::from_secs(10),
            pool_wait_timeout: Duration::from_secs(30),
            horizon_warning: Duration::from_secs(30),
            horizon_check_interval: Duration::from_secs(15),
            horizon_wait: Duration::ZERO,
        }
    }

    /// A configuration from a libpq URL or key-value string, e.g.
    /// `postgres://user:password@host:5432/database?application_name=orders`.
    ///
    /// `sslmode=require` turns on [`Tls::Require`]; `prefer` (libpq's
    /// default, which does not verify the server) is treated as `disable`:
    /// ask for `require` to use TLS.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut postgres = tokio_postgres::Config::from_str(url)
            .map_err(|error| Error::Config(format!("cannot parse the database URL: {error}")))?;
        if postgres.get_application_name().is_none() {
            postgres.application_name("annals");
        }
        let tls = match postgres.get_ssl_mode() {
            SslMode::Require => Tls::Require,
            _ => Tls::Disable,
        };
        Ok(Config {
            postgres,
            tls,
            ..Self::new()
        })
    }

    /// Adds a host name, IP address or Unix socket directory; with several,
    /// each is tried in order. Without any, `localhost` is used.
    pub fn with_host(mut self, host: &str) -> Self {
        self.postgres.host(host);
        self
    }

    /// Adds a port: one for all hosts, or one per host (default 5432).
    pub fn with_port(mut self, port: u16) -> Self {
        self.postgres.port(port);
        self
    }

    /// Sets the user.
    pub fn with_user(mut self, user: &str) -> Self {
        self.postgres.user(user);
        self
    }

    /// Sets the password.
    pub fn with_password(mut self, password: impl AsRef<[u8]>) -> Self {
        self.postgres.password(password);
        self
    }

    /// Sets the database name (by default the user name).
    pub fn with_dbname(mut self, dbname: &str) -> Self {
        self.postgres.dbname(dbname);
        self
    }

    /// Sets the `application_name` the connections report (default
    /// `annals`): it shows in `pg_stat_activity` and server logs.
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.postgres.application_name(name);
        self
    }

    /// Sets the schema that holds the store's tables (default `annals`). It
    /// must be a plain identifier: ASCII letters, digits and underscores, at
    /// most 63 bytes, not starting with a digit or `pg_`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the largest number of pooled connections (default 16).
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Sets how many transactions lone appends
    /// ([`EventStore::append`](annals::EventStore::append)) use at once
    /// (default: a quarter of the pool, at least two). An append that finds
    /// a lane free goes at once, alone; appends that arrive while every lane
    /// is busy wait, and go together in the next free one (group commit):
    /// one round trip, one commit and, for the single events of most
    /// commands, one statement serve many of them, each still atomic with
    /// an outcome of its own.
    ///
    /// More lanes let more appends run on the server at once; fewer make
    /// groups form sooner, each append costing the server less, at the
    /// price of waiting for a lane sooner. A quarter of the pool keeps the
    /// rest of the connections for reads, units of work and appends in
    /// your transactions (which go on their own, as before), and, with
    /// several instances of a service, keeps their appends from crowding
    /// the server. Measured on a 2-vCPU machine (server on the same
    /// machine), a pool of eight: with 8 writers, two lanes ran 1.1 times
    /// the commands of eight, with 32 writers 1.15 times; with 2 and 4
    /// writers the same within the noise.
    pub fn with_append_lanes(mut self, lanes: usize) -> Self {
        self.append_lanes = Some(lanes);
        self
    }

    /// The number of append lanes in effect.
    pub(crate) fn append_lanes(&self) -> usize {
        self.append_lanes
            .unwrap_or_else(|| (self.pool_size / 4).max(2).min(self.pool_size))
    }

    /// Sets whether connections use TLS.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts the CA certificates in a PEM file as well as the system's, for
    /// [`Tls::Require`].
    pub fn with_tls_root_certificate(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_root_certificates.push(pem_file.into());
        self
    }

    /// Sets the size limits checked before anything is written.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how other processes are woken after appends.
    pub fn with_notify(mut self, notify: Notify) -> Self {
        self.notify = notify;
        self
    }

    /// Sets whether [`PgEventStore::connect`](crate::PgEventStore::connect)
    /// runs the migrations (default true).
    pub fn with_migrations_on_connect(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets how long connecting may take (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a call waits for a free pooled connection (default 30 s).
    pub fn with_pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// Sets the age past which a transaction holding back the readers of the
    /// global stream is logged as a warning (default 30 s).
    pub fn with_horizon_warning(mut self, age: Duration) -> Self {
        self.horizon_warning = age;
        self
    }

    /// Sets how often the oldest blocking transaction is checked while a
    /// reader waits on the append signal (default 15 s).
    pub fn with_horizon_check_interval(mut self, interval: Duration) -> Self {
        self.horizon_check_interval = interval;
        self
    }

    /// Sets how long `read_all` and `read_outbox`, when they would return a
    /// short page, wait for transactions that still hide rows committed
    /// after them (default: not at all).
    ///
    /// Readers only see rows below the oldest transaction still running, so
    /// right after an append its events may be hidden for a moment by an
    /// unrelated transaction that started earlier. With a wait, a read waits
    /// (at most this long) for the transactions that hide the rows already
    /// committed when it started, then reads again: a reader sees its own
    /// appends, and a test does not depend on what else runs on the server.
    /// Readers that follow the append signal need no wait.
    pub fn with_horizon_wait(mut self, wait: Duration) -> Self {
        self.horizon_wait = wait;
        self
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The size limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The connection settings as the driver takes them, e.g. to open a
    /// connection of one's own; `localhost` when no host was given.
    pub fn postgres(&self) -> tokio_postgres::Config {
        let mut postgres = self.postgres.clone();
        if postgres.get_hosts().is_empty() {
            postgres.host("localhost");
        }
        postgres
    }

    /// Checks the settings that can be checked without a server.
    pub fn validate(&self) -> Result<()> {
        SchemaName::new(&self.schema)?;
        if self.pool_size == 0 {
            return Err(Error::Config(
                "the pool needs at least one connection".into(),
            ));
        }
        match self.append_lanes {
            Some(0) => return Err(Error::Config("appends need at least one lane".into())),
            Some(lanes) if lanes > self.pool_size => {
                return Err(Error::Config(format!(
                    "{lanes} append lanes need as many connections; the pool has {}",
                    self.pool_size
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let postgres = &self.postgres;
        f.debug_struct("Config")
            .field("hosts", &postgres.get_hosts())
            .field("ports", &postgres.get_ports())
            .field("user", &postgres.get_user())
            .field("password", &postgres.get_password().map(|_| "<redacted>"))
            .field("dbname", &postgres.get_dbname())
            .field("application_name", &postgres.get_application_name())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("append_lanes", &self.append_lanes())
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .field("notify", &self.notify)
            .field("migrate", &self.migrate)
            .field("horizon_warning", &self.horizon_warning)
            .field("horizon_wait", &self.horizon_wait)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_setters_agree() {
        let config =
            Config::from_url("postgres://u:pw@example.org:6543/db?sslmode=require").unwrap();
        assert_eq!(config.tls, Tls::Require);
        assert_eq!(config.postgres.get_ports(), [6543]);
        assert_eq!(config.postgres.get_dbname(), Some("db"));
        assert_eq!(config.postgres.get_password(), Some(&b"pw"[..]));
        assert_eq!(config.postgres.get_application_name(), Some("annals"));
        assert_eq!(
            Config::from_url("postgres://h/db").unwrap().tls,
            Tls::Disable
        );
        let fields = Config::new().with_host("db.internal").with_port(6000);
        assert_eq!(fields.postgres().get_ports(), [6000]);
        assert_eq!(Config::new().postgres().get_hosts().len(), 1);
        assert!(Config::from_url("postgres://[bad").is_err());
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = Config::new().with_password("hunter2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn validation_catches_bad_settings() {
        assert!(Config::new().validate().is_ok());
        assert!(Config::new().with_pool_size(0).validate().is_err());
        assert!(Config::new().with_append_lanes(0).validate().is_err());
        assert!(
            Config::new()
                .with_pool_size(4)
                .with_append_lanes(5)
                .validate()
                .is_err()
        );
        let lanes = |pool| Config::new().with_pool_size(pool).append_lanes();
        assert_eq!(
            [1, 2, 4, 8, 16, 32].map(lanes),
            [1, 2, 2, 2, 4, 8],
            "a quarter of the pool, at least two"
        );
        let config = Config::new().with_pool_size(4);
        assert_eq!(config.with_append_lanes(4).append_lanes(), 4);
        assert!(Config::new().with_schema("a;drop").validate().is_err());
    }
}
