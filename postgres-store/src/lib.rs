#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod inbox;
mod lease;
mod migrate;
mod pool;
mod projection;
mod schema;
mod store;
mod tx;
mod types;

pub use config::{Config, Notify, Tls};
pub use error::{Error, Result};
pub use inbox::PgInbox;
pub use migrate::{MigrationReport, migrate};
pub use projection::{PgProjectionBackend, PgProjectionLease};
pub use store::{BlockingTransaction, PgEventStore, PgShardLease};
pub use tx::PgTx;
pub use types::Xid8;

/// The driver and the pool, whose types appear in this API.
pub use {deadpool_postgres, tokio_postgres};
