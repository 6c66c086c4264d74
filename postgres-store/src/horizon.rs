//! The horizon of the global stream's readers: what holds it back, and
//! reading below it.

use std::sync::Arc;
use std::time::Duration;

use annals::GlobalPosition;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PgEventStore;
use crate::database::Database;
use crate::error::backend;
use crate::types::{Xid8, position_params};

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

/// The horizon monitor of a [`PgEventStore`]'s database: which transaction
/// holds the readers of the global stream and the outbox back, and for how
/// long. Cheap to clone; shares the store's pool.
///
/// Every check sets the gauge `annals_oldest_blocking_transaction_seconds`
/// (0 when nothing holds the readers back) and logs a warning when the
/// transaction is older than
/// [`Config::with_horizon_warning`](crate::Config::with_horizon_warning).
/// The store checks by itself, every
/// [`Config::with_horizon_check_interval`](crate::Config::with_horizon_check_interval),
/// while a reader waits on its append signal, and whenever a projection
/// runner counts its backlog; call
/// [`PgHorizon::oldest_blocking_transaction`] from a health check to see it
/// on demand.
///
/// ```no_run
/// # async fn run(store: annals_postgres::PgEventStore) -> Result<(), annals::Error> {
/// let horizon = annals_postgres::PgHorizon::new(&store);
/// if let Some(blocking) = horizon.oldest_blocking_transaction().await? {
///     println!("pid {:?} has held readers back for {:?}", blocking.pid, blocking.age);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgHorizon {
    db: Arc<Database>,
}

impl PgHorizon {
    /// The monitor of `store`'s database.
    pub fn new(store: &PgEventStore) -> Self {
        PgHorizon {
            db: Arc::clone(store.database()),
        }
    }

    /// The oldest transaction holding back the readers, `None` when no
    /// transaction with an id is running.
    pub async fn oldest_blocking_transaction(
        &self,
    ) -> Result<Option<BlockingTransaction>, annals::Error> {
        let client = self.db.client().await?;
        let found = oldest_blocking(&client, &self.db.sql.horizon.oldest_blocking_transaction)
            .await
            .map_err(backend)?;
        report(found.as_ref(), self.db.horizon.warning);
        Ok(found)
    }
}

/// The oldest transaction holding the horizon back, by
/// `oldest_blocking_transaction.sql` on `client`.
pub(crate) async fn oldest_blocking(
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
pub(crate) fn report(found: Option<&BlockingTransaction>, warning: Duration) {
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

/// A page of rows below the horizon after `after` (the global stream's or
/// the outbox's): `page` with the parameters `(tx_id, position, limit)`;
/// `held_back` takes none. When the page is short and the store may wait
/// ([`Config::with_horizon_wait`](crate::Config::with_horizon_wait)), waits
/// for the transactions that hide rows committed already (`held_back` names
/// the youngest of those), and reads once more.
pub(crate) async fn read_below(
    db: &Database,
    page: &str,
    held_back: &str,
    after: GlobalPosition,
    limit: usize,
) -> Result<Vec<Row>, annals::Error> {
    let client = db.client().await?;
    let statement = client.prepare_cached(page).await.map_err(backend)?;
    let (commit, sequence) = position_params(after);
    let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
    let params: [&(dyn ToSql + Sync); 3] = [&commit, &sequence, &limit_param];
    let rows = client.query(&statement, &params).await.map_err(backend)?;
    let wait = db.horizon.wait;
    if rows.len() >= limit || wait.is_zero() {
        return Ok(rows);
    }
    let held_back = client.prepare_cached(held_back).await.map_err(backend)?;
    let youngest: Option<Xid8> = client
        .query_one(&held_back, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend)?;
    let Some(Xid8(youngest)) = youngest else {
        // Nothing is hidden now: the horizon moved between the two
        // statements, so what was hidden is readable.
        return client.query(&statement, &params).await.map_err(backend);
    };
    let deadline = tokio::time::Instant::now() + wait;
    let horizon = client
        .prepare_cached(&db.sql.horizon.horizon)
        .await
        .map_err(backend)?;
    let mut pause = Duration::from_millis(1);
    loop {
        let Xid8(now) = client
            .query_one(&horizon, &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        if now > youngest {
            break;
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(rows);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    client.query(&statement, &params).await.map_err(backend)
}
