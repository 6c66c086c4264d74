//! The horizon of the global stream's readers, and what holds it back.

use std::time::Duration;

use annals::{GlobalBacklog, GlobalPosition};

use super::PgEventStore;
use super::read::checkpoint;
use crate::error::{backend, pool};

/// The oldest transaction still running that holds back the readers of the
/// global stream and the outbox: they see nothing that it, or any younger
/// transaction, committed until it ends. Found anywhere in the cluster, as
/// transaction ids are.
///
/// Other roles' sessions are visible only to a role with the privileges of
/// `pg_read_all_stats` (or a superuser).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BlockingTransaction {
    /// The backend's process id; `None` for a prepared (two-phase)
    /// transaction.
    pub pid: Option<i32>,
    /// The database it runs in.
    pub database: Option<String>,
    /// The `application_name` of its session (for a prepared transaction,
    /// its global id).
    pub application_name: Option<String>,
    /// Its session's state, e.g. `idle in transaction`.
    pub state: Option<String>,
    /// How long it has been running.
    pub age: Duration,
}

impl PgEventStore {
    /// The oldest transaction holding back the readers, `None` when no
    /// transaction with an id is running. Also sets the gauge
    /// `annals_oldest_blocking_transaction_seconds` (0 when none) and logs a
    /// warning when it is older than the configured threshold
    /// ([`Config::with_horizon_warning`](crate::Config::with_horizon_warning)).
    ///
    /// The store checks this by itself periodically while a reader waits on
    /// its append signal; call it from a health check to see it on demand.
    ///
    /// ```no_run
    /// # async fn run(store: annals_postgres::PgEventStore) -> Result<(), annals::Error> {
    /// if let Some(blocking) = store.oldest_blocking_transaction().await? {
    ///     println!("pid {:?} has held readers back for {:?}", blocking.pid, blocking.age);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn oldest_blocking_transaction(
        &self,
    ) -> Result<Option<BlockingTransaction>, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let found = oldest_blocking(&client, self.inner.sql.oldest_blocking_transaction)
            .await
            .map_err(backend)?;
        report(found.as_ref(), self.inner.horizon_warning);
        Ok(found)
    }
}

impl PgEventStore {
    /// The events after `after` below the horizon, counted up to `limit`,
    /// and the age of the transaction holding the horizon back.
    pub(super) async fn backlog_after(
        &self,
        after: GlobalPosition,
        limit: u64,
    ) -> Result<GlobalBacklog, annals::Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.backlog)
            .await
            .map_err(backend)?;
        let (commit, sequence) = checkpoint(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let row = client
            .query_one(&statement, &[&commit, &sequence, &limit])
            .await
            .map_err(backend)?;
        let events: i64 = row.try_get(0).map_err(backend)?;
        let blocking = oldest_blocking(&client, self.inner.sql.oldest_blocking_transaction)
            .await
            .map_err(backend)?;
        report(blocking.as_ref(), self.inner.horizon_warning);
        Ok(GlobalBacklog::new(
            u64::try_from(events).unwrap_or_default(),
            events >= limit,
            blocking.map(|transaction| transaction.age),
        ))
    }
}

pub(super) async fn oldest_blocking(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Option<BlockingTransaction>, tokio_postgres::Error> {
    let Some(row) = client.query_opt(sql, &[]).await? else {
        return Ok(None);
    };
    let age: Option<f64> = row.try_get(4)?;
    Ok(Some(BlockingTransaction {
        pid: row.try_get(0)?,
        database: row.try_get(1)?,
        application_name: row.try_get(2)?,
        state: row.try_get(3)?,
        age: Duration::try_from_secs_f64(age.unwrap_or(0.0)).unwrap_or_default(),
    }))
}

/// Publishes the age of `found` and warns when it is past `warning`.
pub(super) fn report(found: Option<&BlockingTransaction>, warning: Duration) {
    let age = found.map_or(Duration::ZERO, |transaction| transaction.age);
    metrics::gauge!("annals_oldest_blocking_transaction_seconds").set(age.as_secs_f64());
    if let Some(transaction) = found
        && transaction.age > warning
    {
        tracing::warn!(
            pid = transaction.pid,
            database = transaction.database.as_deref(),
            application_name = transaction.application_name.as_deref(),
            state = transaction.state.as_deref(),
            age_seconds = transaction.age.as_secs_f64(),
            "a long transaction holds back the readers of the global stream"
        );
    }
}
