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
/// the listener and the notifier.
#[derive(Clone)]
pub(crate) struct Sessions {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
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
            config: connection_config(config),
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
