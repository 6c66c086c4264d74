#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod database;
mod error;
mod horizon;
mod inbox;
mod lease;
mod migrate;
mod notifications;
mod outbox;
mod pool;
mod projection;
mod rows;
mod schema;
mod statements;
mod store;
mod tx;
mod types;

pub use config::{Config, Notify, Tls};
pub use error::{Error, Result};
pub use horizon::{BlockingTransaction, PgHorizon};
pub use inbox::PgInbox;
pub use lease::PgLease;
pub use migrate::{MigrationReport, migrate};
pub use outbox::PgOutbox;
pub use projection::PgProjectionBackend;
pub use store::PgEventStore;
pub use tx::PgTx;
pub use types::Xid8;

/// The driver and the pool, whose types appear in this API.
pub use {deadpool_postgres, tokio_postgres};

#[doc(hidden)]
pub mod __private {
    //! For the workspace's tests, not for users.

    use crate::schema::SchemaName;
    use crate::statements::Statements;

    use tokio_postgres::types::Type;

    /// Every statement the store runs in `schema`, named, with the types
    /// of its leading parameters as the store prepares it, and with the
    /// shard statements of the whole outbox and of one of `shards` shards.
    ///
    /// # Errors
    /// When `schema` is not a valid schema name.
    pub fn statements(
        schema: &str,
        shards: u32,
    ) -> crate::Result<Vec<(String, String, Vec<Type>)>> {
        Ok(Statements::new(&SchemaName::new(schema)?).all(shards))
    }
}
