//! The projection runner's backend in PostgreSQL: read models written in the
//! batch's transaction, checkpoints moved by compare-and-set in that same
//! transaction, parked events in a table, the serving version of each
//! projection in another, one runner per projection version by advisory
//! lock.

use std::sync::Arc;

use annals::{Error, GlobalPosition, ParkedEvent, ProjectionBackend};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::database::Database;
use crate::error::{backend, corrupt};
use crate::lease::PgLease;
use crate::tx::PgTx;
use crate::types::{JsonText, integer_version, position_params, rest_of_metadata};
use crate::{PgEventStore, rows};

/// The [`ProjectionBackend`] of read models kept in PostgreSQL, beside a
/// [`PgEventStore`]: its schema's `checkpoints`, `projection_parked` and
/// `projection_serving` tables, over the store's pool. Cheap to clone.
///
/// - Handlers get a [`PgTx`] and write the read model with it; the runner
///   commits a whole batch of events and the checkpoint in that transaction
///   ([`ProjectionBackend::atomic_batches`] is true), so a crash at any point
///   leaves the read model and the checkpoint in step.
/// - The checkpoint (`projection:{name}:v{version}` in `checkpoints`) moves
///   by compare-and-set: a runner whose checkpoint is stale (another one
///   moved it) commits nothing.
/// - One runner per projection version applies: the others wait for a
///   session advisory lock held on a connection of the active runner's own,
///   and take over when that session ends (the runner stopped, crashed or
///   lost its connection). Runners of two versions run side by side.
/// - The version that serves queries is kept in `projection_serving` and
///   changes in the transaction that promotes a rebuilt version, the one in
///   which [`Projection::promote`](annals::Projection::promote) can repoint a
///   view at the new version's tables; readers that pick tables by version
///   ask [`ProjectionBackend::serving`].
/// - Events a handler cannot apply are parked in `projection_parked`, with
///   the error, until they are applied (unparked in the transaction that
///   applies them).
///
/// ```no_run
/// use annals::{BoxError, DomainEvent, Envelope, Projection, ProjectionRunner};
/// use annals_postgres::{Config, PgEventStore, PgProjectionBackend, PgTx};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
/// enum OrderEvent {
///     #[event(name = "OrderPlaced")]
///     Placed { customer: String },
/// }
///
/// /// Orders per customer, in the table `orders_per_customer`.
/// struct OrdersPerCustomer;
///
/// impl Projection<PgTx> for OrdersPerCustomer {
///     type Event = OrderEvent;
///
///     fn name(&self) -> &str {
///         "orders_per_customer"
///     }
///
///     async fn setup(&self, tx: &mut PgTx) -> Result<(), BoxError> {
///         tx.batch_execute(
///             "CREATE TABLE IF NOT EXISTS orders_per_customer \
///              (customer text PRIMARY KEY, orders bigint NOT NULL)",
///         )
///         .await?;
///         Ok(())
///     }
///
///     async fn handle(&self, tx: &mut PgTx, event: &Envelope<OrderEvent>) -> Result<(), BoxError> {
///         let OrderEvent::Placed { customer } = &event.event;
///         tx.execute(
///             "INSERT INTO orders_per_customer (customer, orders) VALUES ($1, 1) \
///              ON CONFLICT (customer) DO UPDATE SET orders = orders_per_customer.orders + 1",
///             &[customer],
///         )
///         .await?;
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect(Config::from_url("postgres://postgres@localhost/app")?).await?;
/// let backend = PgProjectionBackend::new(&store);
/// let handle = ProjectionRunner::new(store, backend, OrdersPerCustomer).start()?;
/// // ... serve queries from `orders_per_customer` ...
/// handle.stop(std::time::Duration::from_secs(30)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgProjectionBackend {
    db: Arc<Database>,
}

impl PgProjectionBackend {
    /// The backend in `store`'s schema, sharing its pool. The tables are
    /// created by the store's migrations.
    pub fn new(store: &PgEventStore) -> Self {
        PgProjectionBackend {
            db: Arc::clone(store.database()),
        }
    }
}

/// The projection's row in the checkpoints table.
fn checkpoint_name(name: &str, version: u32) -> String {
    format!("projection:{name}:v{version}")
}

/// A parked event from a row of `sql/projection/parked.sql`.
fn parked_event(row: &Row, name: &str, version: u32) -> Result<ParkedEvent, Error> {
    let stream = rows::stream_id_column(row, 0, None)?;
    let event = rows::recorded_event(row, 1, stream)?;
    let attempts: i64 = row.try_get(14).map_err(backend)?;
    Ok(ParkedEvent {
        projection: name.to_owned(),
        version,
        event,
        error: row.try_get(13).map_err(backend)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("stored attempts {attempts}")))?,
        parked_at: row.try_get::<_, DateTime<Utc>>(15).map_err(backend)?,
    })
}

impl ProjectionBackend for PgProjectionBackend {
    type Tx = PgTx;
    type Lease = PgLease;

    fn atomic_batches(&self) -> bool {
        true
    }

    async fn acquire(&self, name: &str, version: u32) -> Result<PgLease, Error> {
        // Per version: a new version rebuilds while the old one serves.
        let key = format!(
            "annals.projection.{}.{name}.v{version}",
            self.db.schema.as_str()
        );
        PgLease::acquire(&self.db, key, format!("projection `{name}` v{version}")).await
    }

    fn is_held(&self, lease: &PgLease) -> bool {
        lease.holds()
    }

    async fn checkpoint(&self, name: &str, version: u32) -> Result<Option<GlobalPosition>, Error> {
        self.db.checkpoint(&checkpoint_name(name, version)).await
    }

    async fn begin(&self, _name: &str, _version: u32) -> Result<PgTx, Error> {
        PgTx::begin(&self.db.pool).await
    }

    async fn commit(
        &self,
        tx: PgTx,
        name: &str,
        version: u32,
        from: GlobalPosition,
        to: GlobalPosition,
    ) -> Result<(), Error> {
        let checkpoint = checkpoint_name(name, version);
        let (from_commit, from_sequence) = position_params(from);
        let (to_commit, to_sequence) = position_params(to);
        let statement = tx
            .prepare_cached(&self.db.sql.projection.move_checkpoint)
            .await?;
        let mut moved = tx
            .execute(
                &statement,
                &[
                    &checkpoint,
                    &from_commit,
                    &from_sequence,
                    &to_commit,
                    &to_sequence,
                ],
            )
            .await?;
        if moved == 0 && from == GlobalPosition::START {
            let statement = tx
                .prepare_cached(&self.db.sql.projection.create_checkpoint)
                .await?;
            moved = tx
                .execute(&statement, &[&checkpoint, &to_commit, &to_sequence])
                .await?;
        }
        if moved == 0 {
            // The rollback's own failure would only hide the error that
            // matters; the connection is closed then, which rolls back too.
            let _ = tx.rollback().await;
            return Err(Error::backend(
                "postgres",
                false,
                format!(
                    "projection `{name}` v{version} is no longer at {from}: another runner moved it"
                ),
            ));
        }
        tx.commit().await
    }

    async fn rollback(&self, tx: PgTx) -> Result<(), Error> {
        tx.rollback().await
    }

    async fn serving(&self, name: &str) -> Result<Option<u32>, Error> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.projection.serving)
            .await
            .map_err(backend)?;
        let Some(row) = client
            .query_opt(&statement, &[&name])
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let version: i64 = row.try_get(0).map_err(backend)?;
        u32::try_from(version)
            .map(Some)
            .map_err(|_| corrupt(format!("serving version {version} of projection `{name}`")))
    }

    async fn promote(&self, tx: PgTx, name: &str, version: u32) -> Result<bool, Error> {
        let statement = tx.prepare_cached(&self.db.sql.projection.promote).await?;
        let promoted = tx
            .execute(&statement, &[&name, &i64::from(version)])
            .await?;
        tx.commit().await?;
        Ok(promoted == 1)
    }

    async fn reset(&self, tx: PgTx, name: &str, version: u32) -> Result<(), Error> {
        let statement = tx.prepare_cached(&self.db.sql.projection.reset).await?;
        tx.execute(
            &statement,
            &[&checkpoint_name(name, version), &name, &i64::from(version)],
        )
        .await?;
        tx.commit().await
    }

    async fn park(&self, parked: ParkedEvent) -> Result<(), Error> {
        let event = &parked.event;
        let event_version = integer_version(
            event.event_version,
            &format_args!("event {}", event.event_id),
        )?;
        let metadata = rest_of_metadata(&event.metadata).map_err(|source| Error::Encode {
            what: format!("the metadata of event {}", event.event_id),
            source,
        })?;
        let (commit, sequence) = position_params(event.position);
        let stream_version = i64::try_from(event.version).unwrap_or(i64::MAX);
        let version = i64::from(parked.version);
        let attempts = i64::from(parked.attempts);
        let params: [&(dyn ToSql + Sync); 18] = [
            &parked.projection,
            &version,
            &event.event_id,
            &event.stream.as_str(),
            &stream_version,
            &commit,
            &sequence,
            &event.event_type,
            &event_version,
            &JsonText(event.payload.get()),
            &event.metadata.correlation_id,
            &event.metadata.causation_id,
            &event.metadata.command_id,
            &metadata.as_deref().map(JsonText),
            &event.recorded_at,
            &parked.error,
            &attempts,
            &parked.parked_at,
        ];
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.projection.park)
            .await
            .map_err(backend)?;
        client.execute(&statement, &params).await.map_err(backend)?;
        Ok(())
    }

    async fn parked(&self, name: &str, version: u32) -> Result<Vec<ParkedEvent>, Error> {
        let client = self.db.client().await?;
        let statement = client
            .prepare_cached(&self.db.sql.projection.parked)
            .await
            .map_err(backend)?;
        let rows = client
            .query(&statement, &[&name, &i64::from(version)])
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| parked_event(row, name, version))
            .collect()
    }

    async fn unpark(
        &self,
        tx: &mut PgTx,
        name: &str,
        version: u32,
        event_id: Uuid,
    ) -> Result<(), Error> {
        let statement = tx.prepare_cached(&self.db.sql.projection.unpark).await?;
        tx.execute(&statement, &[&name, &i64::from(version), &event_id])
            .await?;
        Ok(())
    }
}
