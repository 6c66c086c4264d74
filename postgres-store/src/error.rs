//! The one error type of the crate, and which Postgres failures are worth
//! retrying.

use std::error::Error as _;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong configuring, connecting to or migrating the store.
///
/// The [`EventStore`](annals::EventStore) methods return [`annals::Error`]
/// instead, as the contract requires; this type converts into it
/// ([`annals::Error::Config`] or [`annals::Error::Backend`] with its
/// retriability).
///
/// How a caller should react: [`Error::is_retriable`] errors (the server is
/// unreachable, restarting or refused the connection for now) may succeed
/// when tried again after a pause; the others need a change of
/// configuration, database or code.
///
/// ```
/// use annals_postgres::{Config, Error};
///
/// let error = Config::new().with_schema("1bad").validate().unwrap_err();
/// assert!(matches!(error, Error::InvalidSchemaName { .. }));
/// assert!(!error.is_retriable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value that cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A schema name that is not a plain identifier; refused before any SQL
    /// runs.
    #[error("invalid schema name {name:?}: {reason}")]
    InvalidSchemaName {
        /// The refused name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// TLS could not be set up (e.g. an unreadable certificate file).
    #[error("cannot set up TLS: {0}")]
    Tls(String),

    /// No connection could be had from the pool.
    #[error("no PostgreSQL connection from the pool")]
    Pool(#[source] PoolError),

    /// PostgreSQL failed a statement or the connection broke.
    #[error("PostgreSQL failed")]
    Postgres(#[source] tokio_postgres::Error),

    /// A migration failed; the transaction that ran it was rolled back, so the
    /// schema is as it was before.
    #[error("migration {version} ({name}) failed")]
    Migration {
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: &'static str,
        /// What PostgreSQL reported.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The database records a migration that differs from this build's
    /// migration of the same version: it was edited after it ran.
    #[error(
        "migration {version} recorded in the database ({found}) differs from this build's ({expected})"
    )]
    MigrationMismatch {
        /// The migration's version.
        version: u32,
        /// This build's name and checksum.
        expected: String,
        /// The database's name and checksum.
        found: String,
    },
}

impl Error {
    /// True when the same call may succeed later: the connection was lost or
    /// refused, the server is restarting, or a transaction could not be
    /// serialised.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Pool(error) => pool_error_is_transient(error),
            Error::Postgres(error) | Error::Migration { source: error, .. } => is_transient(error),
            Error::Config(_)
            | Error::InvalidSchemaName { .. }
            | Error::Tls(_)
            | Error::MigrationMismatch { .. } => false,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Postgres(error)
    }
}

impl From<PoolError> for Error {
    fn from(error: PoolError) -> Self {
        Error::Pool(error)
    }
}

impl From<Error> for annals::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Config(reason) => annals::Error::Config(reason),
            error @ Error::InvalidSchemaName { .. } => annals::Error::Config(error.to_string()),
            error => annals::Error::backend("postgres", error.is_retriable(), error),
        }
    }
}

/// SQLSTATEs after which the same statement may succeed: the connection
/// broke or was refused, the server is shutting down or starting, or the
/// transaction lost a race that a retry resolves.
const TRANSIENT: [SqlState; 15] = [
    SqlState::CONNECTION_EXCEPTION,
    SqlState::CONNECTION_DOES_NOT_EXIST,
    SqlState::CONNECTION_FAILURE,
    SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
    SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION,
    SqlState::TRANSACTION_RESOLUTION_UNKNOWN,
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::T_R_DEADLOCK_DETECTED,
    SqlState::T_R_STATEMENT_COMPLETION_UNKNOWN,
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::IDLE_SESSION_TIMEOUT,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::LOCK_NOT_AVAILABLE,
];

/// Whether `error` is worth retrying: see [`TRANSIENT`]; without a SQLSTATE,
/// a closed connection or an I/O failure is, anything else (a value that
/// does not convert, a protocol surprise) is a bug.
pub(crate) fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => TRANSIENT.contains(code),
        None => error
            .source()
            .is_some_and(|source| source.is::<std::io::Error>()),
    }
}

fn pool_error_is_transient(error: &PoolError) -> bool {
    match error {
        PoolError::Timeout(_) => true,
        PoolError::Backend(error) => is_transient(error),
        _ => false,
    }
}

/// A statement's failure as the store contract reports it.
pub(crate) fn backend(error: tokio_postgres::Error) -> annals::Error {
    annals::Error::backend("postgres", is_transient(&error), error)
}

/// A pool's failure as the store contract reports it.
pub(crate) fn pool(error: PoolError) -> annals::Error {
    Error::Pool(error).into()
}

/// A stored value that does not make sense (a bug or a hand-edited row).
pub(crate) fn corrupt(what: impl Into<String>) -> annals::Error {
    annals::Error::backend("postgres", false, what.into())
}
