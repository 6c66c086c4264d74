//! An owned transaction over a pooled connection, for code that must hold
//! one across `await`s and hand it around by `&mut`.

use std::fmt;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::error::backend;

/// A PostgreSQL transaction that owns its pooled connection: `BEGIN` when
/// it starts, then [`PgTx::commit`] or [`PgTx::rollback`].
///
/// It is what [`PgInbox`](crate::PgInbox) hands to consumer handlers, so
/// that the handler's writes and the inbox claim commit together; it is
/// meant equally for projection handlers (an envelope and a transaction that
/// also moves the checkpoint) and anything else that must pass a
/// transaction by value or `&mut` between tasks: unlike
/// [`tokio_postgres::Transaction`], it borrows nothing, and it is `Send`.
///
/// The statement methods ([`PgTx::execute`], [`PgTx::query`], ...) return
/// [`annals::Error`], retriable when the connection was lost or the
/// transaction lost a serialization race or a deadlock, so that a handler
/// can pass them on with `?` and the runtime retries what is worth
/// retrying. [`PgTx::client`] gives the full driver API instead, with the
/// driver's errors.
///
/// **Failed statements abort the transaction.** As always in PostgreSQL,
/// after an error every further statement fails until the rollback; a
/// handler that wants to go on after an expected error (a unique violation)
/// must wrap that statement in a `SAVEPOINT`. [`PgTx::commit`] of an aborted
/// transaction is an error, never a silent rollback.
///
/// **Dropped without commit, it is rolled back**, and its connection goes
/// back to the pool only once the rollback succeeded; without a Tokio
/// runtime to run the rollback on, the connection is closed instead (the
/// server then rolls back). Either way no later user of the pool finds the
/// transaction open.
///
/// ```no_run
/// use annals_postgres::{Config, PgEventStore, PgTx};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(Config::from_url("postgres://postgres@localhost/app")?).await?;
/// let mut tx = PgTx::begin(store.pool()).await?;
/// tx.execute("UPDATE order_totals SET total = total + $1 WHERE id = $2", &[&250_i64, &7_i64])
///     .await?;
/// let row = tx.query_one("SELECT total FROM order_totals WHERE id = $1", &[&7_i64]).await?;
/// let total: i64 = row.get(0);
/// tx.commit().await?;
/// # let _ = total;
/// # Ok(())
/// # }
/// ```
pub struct PgTx {
    /// `Some` while the transaction is open; taken by commit, rollback and
    /// drop.
    connection: Option<Object>,
}

impl PgTx {
    /// Takes a connection from `pool` and begins a transaction on it (read
    /// committed, unless the server's default says otherwise).
    ///
    /// Errors: retriable when no connection could be had in time or the
    /// server cannot be reached.
    pub async fn begin(pool: &Pool) -> Result<PgTx, annals::Error> {
        // Owned by the transaction before BEGIN is sent, so that a caller
        // cancelled during it leaves the clean-up to the drop.
        let mut tx = PgTx {
            connection: Some(pool.get().await.map_err(crate::error::pool)?),
        };
        match tx.object().batch_execute("BEGIN").await {
            Ok(()) => Ok(tx),
            Err(error) => {
                // Whether the server saw the BEGIN is unknown.
                tx.discard();
                Err(backend(error))
            }
        }
    }

    /// The connection, for the whole driver API (prepared statements,
    /// `COPY`, [`tokio_postgres::GenericClient`] code). Its statements run in
    /// this transaction; do not end the transaction through it (`COMMIT`,
    /// `ROLLBACK`), use [`PgTx::commit`] and [`PgTx::rollback`].
    pub fn client(&self) -> &Client {
        self.object()
    }

    /// Prepares `query` once per connection, from the pool's statement
    /// cache: a statement a handler runs for every message then costs one
    /// round trip instead of two.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, annals::Error> {
        self.object().prepare_cached(query).await.map_err(backend)
    }

    /// Runs `statement` with `params`; returns the number of rows it
    /// changed.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, annals::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement,
    {
        self.object()
            .execute(statement, params)
            .await
            .map_err(backend)
    }

    /// Runs `statement` with `params`; returns its rows.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, annals::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement,
    {
        self.object()
            .query(statement, params)
            .await
            .map_err(backend)
    }

    /// Runs `statement` with `params`; returns its one row, and an error
    /// when it returns none or several.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, annals::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement,
    {
        self.object()
            .query_one(statement, params)
            .await
            .map_err(backend)
    }

    /// Runs `statement` with `params`; returns its row if there is one, and
    /// an error when there are several.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, annals::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement,
    {
        self.object()
            .query_opt(statement, params)
            .await
            .map_err(backend)
    }

    /// Runs `statements`, one or more separated by semicolons, without
    /// parameters.
    pub async fn batch_execute(&self, statements: &str) -> Result<(), annals::Error> {
        self.object()
            .batch_execute(statements)
            .await
            .map_err(backend)
    }

    /// Commits. An error means nothing was committed, except when the
    /// connection broke during the `COMMIT` itself (a retriable error): then
    /// the outcome is unknown, and a retry must find out what is there
    /// (which is what the inbox's claim does for consumers).
    pub async fn commit(mut self) -> Result<(), annals::Error> {
        // PostgreSQL answers COMMIT of an aborted transaction with a
        // rollback, not an error; the SELECT before it fails instead (in
        // the same round trip), so a handler that swallowed a failed
        // statement cannot have its message counted as handled.
        match self.object().batch_execute("SELECT 1; COMMIT").await {
            Ok(()) => {
                self.release();
                Ok(())
            }
            Err(error) => {
                // A failed COMMIT ended the transaction, a failed SELECT
                // left it open and aborted. The rollback's own failure
                // would only hide the error that matters.
                let _ = self.rollback().await;
                Err(backend(error))
            }
        }
    }

    /// Rolls back. An error means the connection broke, which rolled back
    /// too; the connection is closed rather than returned to the pool.
    pub async fn rollback(mut self) -> Result<(), annals::Error> {
        // The connection stays in `self` until the answer, so that a caller
        // cancelled meanwhile leaves it to the drop.
        match self.object().batch_execute("ROLLBACK").await {
            Ok(()) => {
                self.release();
                Ok(())
            }
            Err(error) => {
                self.discard();
                Err(backend(error))
            }
        }
    }

    fn object(&self) -> &Object {
        // Only `release`, `discard` and the drop take the connection, and
        // only as the transaction ends.
        self.connection
            .as_ref()
            .expect("an open transaction has its connection")
    }

    /// Returns the connection to the pool: the transaction has ended.
    fn release(&mut self) {
        drop(self.connection.take());
    }

    /// Closes the connection instead of returning it to the pool: the server
    /// rolls back whatever it had open, and the pool opens a new one when
    /// needed.
    fn discard(&mut self) {
        if let Some(connection) = self.connection.take() {
            drop(Object::take(connection));
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let abandoned = Abandoned(Some(connection));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // If the runtime shuts down before the task runs, dropping
                // the task drops `abandoned`, which closes the connection.
                runtime.spawn(abandoned.roll_back());
            }
            Err(_) => drop(abandoned),
        }
    }
}

impl fmt::Debug for PgTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTx")
            .field("open", &self.connection.is_some())
            .finish()
    }
}

/// The connection of a transaction nobody will finish: it goes back to the
/// pool only after a successful rollback, and is closed in every other case
/// (including when it is dropped before the rollback ran or answered). It
/// never spawns anything, so that a runtime shutting down cannot make it
/// loop.
struct Abandoned(Option<Object>);

impl Abandoned {
    async fn roll_back(mut self) {
        let Some(connection) = self.0.as_ref() else {
            return;
        };
        match connection.batch_execute("ROLLBACK").await {
            Ok(()) => drop(self.0.take()),
            Err(error) => {
                tracing::debug!(%error, "rolling back an abandoned transaction failed; closing its connection");
            }
        }
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(Object::take(connection));
        }
    }
}
