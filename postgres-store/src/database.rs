//! What the parts of a store share: one pool, the schema and its
//! statements, sessions of their own outside the pool, the settings, and
//! the wake-ups of readers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use annals::{GlobalPosition, Limits};
use deadpool_postgres::{Object, Pool};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{backend, corrupt, pool};
use crate::notifications::Notifications;
use crate::pool::{build_pool, connection_config, tls_connector};
use crate::schema::SchemaName;
use crate::statements::Statements;
use crate::types::Xid8;
use crate::{Config, Error, Notify};

/// The database of one store and of every part built beside it
/// ([`PgOutbox`](crate::PgOutbox), [`PgInbox`](crate::PgInbox),
/// [`PgProjectionBackend`](crate::PgProjectionBackend),
/// [`PgHorizon`](crate::PgHorizon)).
pub(crate) struct Database {
    pub(crate) pool: Pool,
    pub(crate) schema: SchemaName,
    pub(crate) sql: Arc<Statements>,
    pub(crate) sessions: Sessions,
    pub(crate) limits: Limits,
    pub(crate) notify: Notify,
    pub(crate) horizon: HorizonSettings,
    pub(crate) notifications: Notifications,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("schema", &self.schema.as_str())
            .finish_non_exhaustive()
    }
}

/// How the horizon of the global stream's readers is watched and waited
/// for (see [`Config`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HorizonSettings {
    pub(crate) warning: Duration,
    pub(crate) check_interval: Duration,
    pub(crate) wait: Duration,
}

/// How connections of their own are opened, outside the pool: for leases,
/// the listener and the notifier. The server is told to drop such a session
/// once its client went silent ([`server_drops_silent_clients`]), so that a
/// lease whose holder vanished (a host gone, a network cut) is freed within
/// seconds, not the operating system's two hours of TCP keepalive.
#[derive(Clone)]
pub(crate) struct Sessions {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

/// Server-side TCP settings of a session of its own, in seconds
/// (milliseconds for the user timeout): keepalive probes after 2 s without
/// traffic, one a second, and the connection dropped once what the server
/// sent, or its probes, went unacknowledged for 5 s.
const SERVER_KEEPALIVES_IDLE: u32 = 2;
const SERVER_KEEPALIVES_INTERVAL: u32 = 1;
const SERVER_KEEPALIVES_COUNT: u32 = 5;
const SERVER_USER_TIMEOUT_MS: u32 = 5_000;

/// How long after the last packet it received from a session's client the
/// server drops the session: the user timeout, and the probe that finds it
/// out comes at most one probe interval later. (Over a Unix socket the
/// server notices a vanished client at once; these settings do not apply
/// there.)
pub(crate) const SERVER_DROP_BOUND: Duration =
    Duration::from_secs(SERVER_USER_TIMEOUT_MS as u64 / 1_000 + SERVER_KEEPALIVES_INTERVAL as u64);

/// `config`, with the server told to drop the session when its client goes
/// silent (added to any `options` already given).
pub(crate) fn server_drops_silent_clients(
    config: &tokio_postgres::Config,
) -> tokio_postgres::Config {
    let mut config = config.clone();
    let ours = format!(
        "-c tcp_keepalives_idle={SERVER_KEEPALIVES_IDLE} \
         -c tcp_keepalives_interval={SERVER_KEEPALIVES_INTERVAL} \
         -c tcp_keepalives_count={SERVER_KEEPALIVES_COUNT} \
         -c tcp_user_timeout={SERVER_USER_TIMEOUT_MS}"
    );
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {ours}"),
        _ => ours,
    };
    config.options(&options);
    config
}

/// The connection half of a session, which its owner drives.
pub(crate) type SessionConnection =
    Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

impl Sessions {
    /// Opens a connection; the caller drives the connection's task.
    pub(crate) async fn open(&self) -> Result<(Client, SessionConnection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

impl Database {
    /// Checks `config`, builds the pool and, unless the configuration says
    /// otherwise, runs the migrations.
    pub(crate) async fn open(config: &Config) -> Result<Arc<Self>, Error> {
        config.validate()?;
        let schema = SchemaName::new(&config.schema)?;
        let tls = tls_connector(config)?;
        let pool = build_pool(config, tls.clone())?;
        if config.migrate {
            let mut client = pool.get().await?;
            crate::migrate(&mut client, schema.as_str()).await?;
        }
        let sql = Arc::new(Statements::new(&schema));
        let sessions = Sessions {
            config: server_drops_silent_clients(&connection_config(config)),
            tls,
        };
        let horizon = HorizonSettings {
            warning: config.horizon_warning,
            check_interval: config.horizon_check_interval,
            wait: config.horizon_wait,
        };
        Ok(Arc::new(Database {
            notifications: Notifications::new(
                sessions.clone(),
                schema.clone(),
                Arc::clone(&sql),
                horizon,
                config.notify,
            ),
            pool,
            schema,
            sql,
            sessions,
            limits: config.limits,
            notify: config.notify,
            horizon,
        }))
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object, annals::Error> {
        self.pool.get().await.map_err(pool)
    }

    /// The checkpoint `name` of the checkpoints table, `None` when there is
    /// none: a relay's of one shard, or a projection version's.
    pub(crate) async fn checkpoint(
        &self,
        name: &str,
    ) -> Result<Option<GlobalPosition>, annals::Error> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.read.checkpoint)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&statement, &[&name])
            .await
            .map_err(backend)?;
        row.map(|row| {
            let Xid8(commit) = row.try_get(0).map_err(backend)?;
            let position: i64 = row.try_get(1).map_err(backend)?;
            let sequence = u64::try_from(position)
                .map_err(|_| corrupt(format!("stored checkpoint position {position}")))?;
            Ok(GlobalPosition::new(commit, sequence))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_asks_the_server_to_drop_it_when_its_client_goes_silent() {
        let config: tokio_postgres::Config = "postgres://u@h/db?options=-c%20search_path%3Dapp"
            .parse()
            .unwrap();
        let options = server_drops_silent_clients(&config)
            .get_options()
            .unwrap()
            .to_owned();
        assert!(
            options.starts_with("-c search_path=app "),
            "the given options stay: {options}"
        );
        for setting in [
            "tcp_keepalives_idle=2",
            "tcp_keepalives_interval=1",
            "tcp_keepalives_count=5",
            "tcp_user_timeout=5000",
        ] {
            assert!(options.contains(&format!("-c {setting}")), "{options}");
        }
        let bare = server_drops_silent_clients(&"postgres://u@h/db".parse().unwrap());
        assert!(
            bare.get_options()
                .unwrap()
                .starts_with("-c tcp_keepalives_idle")
        );
        assert_eq!(SERVER_DROP_BOUND, Duration::from_secs(6));
    }
}
