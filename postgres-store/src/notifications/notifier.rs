//! `NOTIFY` after commit ([`Notify::AfterCommit`](crate::Notify::AfterCommit)).
//!
//! `NOTIFY` in a transaction takes a cluster-wide lock at commit and holds it
//! through the commit's WAL flush, so concurrent notifying commits are
//! flushed one at a time instead of together. A background task sends the
//! notifications instead, each in a transaction of its own that writes
//! nothing, naming the newest transaction committed meanwhile: however many
//! appends commit while one notification is on its way, the next one covers
//! them all. Appends only hand it their transaction id.
//!
//! The task keeps a connection of its own, so that it never waits for a
//! pooled connection nor takes one from an append, on which a notification's
//! commit does not wait for a WAL flush (`sql/notify/no_flush_wait.sql`). A
//! lost connection is opened again with backoff, and the newest transaction
//! id is sent then.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::{Shared, reconnect_pause};
use crate::database::Sessions;

/// The shortest time between two notifications: under load, commits come
/// far more often than readers need waking, and each notification is a
/// transaction of its own.
const MIN_INTERVAL: Duration = Duration::from_millis(5);

pub(super) struct Notifier {
    sessions: Sessions,
    channel: String,
    notify: String,
    no_flush_wait: String,
    connection: Option<(Client, Statement)>,
}

impl Notifier {
    /// Holds no reference to the store, whose drop ends the task.
    pub(super) fn new(shared: &Shared) -> Self {
        Notifier {
            sessions: shared.sessions.clone(),
            channel: shared.schema.as_str().to_owned(),
            notify: shared.sql.notify.notify.clone(),
            no_flush_wait: shared.sql.notify.no_flush_wait.clone(),
            connection: None,
        }
    }

    /// Runs until the store is dropped (its sender closes).
    pub(super) async fn run(mut self, mut committed: watch::Receiver<u64>) {
        let mut failures = 0;
        while committed.changed().await.is_ok() {
            loop {
                let newest = *committed.borrow_and_update();
                match self.send(newest).await {
                    Ok(()) => {
                        failures = 0;
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "cannot notify; readers elsewhere poll meanwhile");
                        self.connection = None;
                        tokio::time::sleep(reconnect_pause(failures)).await;
                        failures = failures.saturating_add(1);
                        // A store gone meanwhile has nobody left to notify for.
                        if committed.has_changed().is_err() {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(MIN_INTERVAL).await;
        }
    }

    async fn send(&mut self, newest: u64) -> Result<(), tokio_postgres::Error> {
        let (client, statement) = match &self.connection {
            Some(connection) => connection,
            None => self.connection.insert(self.connect().await?),
        };
        client
            .execute(statement, &[&self.channel, &newest.to_string()])
            .await?;
        Ok(())
    }

    async fn connect(&self) -> Result<(Client, Statement), tokio_postgres::Error> {
        let (client, connection) = self.sessions.open().await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "the notifying connection ended");
            }
        });
        client.batch_execute(&self.no_flush_wait).await?;
        let statement = client
            .prepare_typed(&self.notify, &[Type::TEXT, Type::TEXT])
            .await?;
        Ok((client, statement))
    }
}
