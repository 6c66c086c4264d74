//! The lone append statements, prepared once on each pooled connection and
//! found again by number.
//!
//! deadpool's statement cache finds a statement by hashing its whole text
//! at every use: some 2,500 instructions for the single-event append (740
//! bytes), an eighth of what the store's client does per command. Here a
//! connection is told apart by its statement cache, an `Arc` that lives as
//! long as the connection; the weak reference kept to it pins its address,
//! so that no later connection can be taken for it. Entries of connections
//! that are gone are dropped when a statement is next kept.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use deadpool_postgres::StatementCache;
use tokio_postgres::Statement;
use tokio_postgres::types::Type;

/// Statements by connection and number.
#[derive(Debug)]
pub(super) struct Prepared {
    /// How many numbers there are.
    statements: usize,
    connections: Mutex<Vec<Connection>>,
}

#[derive(Debug)]
struct Connection {
    /// The connection's statement cache, as its identity.
    identity: Weak<StatementCache>,
    statements: Vec<Option<Statement>>,
}

impl Prepared {
    /// A table for statements numbered from 0 to `statements - 1`.
    pub(super) fn new(statements: usize) -> Self {
        Prepared {
            statements,
            connections: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        // Every change leaves the table consistent.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Statement `number`, `sql` with parameters of `types`, as prepared on
    /// `client`: prepared now if it was not before.
    pub(super) async fn statement(
        &self,
        client: &deadpool_postgres::Client,
        number: usize,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        let identity = &client.statement_cache;
        if let Some(statement) = self.find(identity, number) {
            return Ok(statement);
        }
        let statement = client.prepare_typed(sql, types).await?;
        self.keep(identity, number, statement.clone());
        Ok(statement)
    }

    fn find(&self, identity: &Arc<StatementCache>, number: usize) -> Option<Statement> {
        let connections = self.lock();
        let connection = connections
            .iter()
            .find(|connection| connection.identity.as_ptr() == Arc::as_ptr(identity))?;
        connection.statements.get(number)?.clone()
    }

    fn keep(&self, identity: &Arc<StatementCache>, number: usize, statement: Statement) {
        let mut connections = self.lock();
        connections.retain(|connection| connection.identity.strong_count() > 0);
        let index = match connections
            .iter()
            .position(|connection| connection.identity.as_ptr() == Arc::as_ptr(identity))
        {
            Some(index) => index,
            None => {
                connections.push(Connection {
                    identity: Arc::downgrade(identity),
                    statements: vec![None; self.statements],
                });
                connections.len() - 1
            }
        };
        if let Some(slot) = connections[index].statements.get_mut(number) {
            *slot = Some(statement);
        }
    }
}
