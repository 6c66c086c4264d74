//! `NOTIFY` after commit ([`Notify::AfterCommit`](crate::Notify::AfterCommit)).
//!
//! `NOTIFY` in a transaction takes a cluster-wide lock at commit and holds it
//! through the commit's WAL flush, so concurrent notifying commits are
//! flushed one at a time instead of together. A background task sends the
//! notifications instead, each in a transaction of its own that writes
//! nothing, naming the newest transaction committed meanwhile: however many
//! appends commit while one notification is on its way, the next one covers
//! them all.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;

use super::PgEventStore;

/// The shortest time between two notifications: under load, commits come
/// far more often than readers need waking, and each notification is a
/// transaction of its own.
const MIN_INTERVAL: Duration = Duration::from_millis(5);

impl PgEventStore {
    pub(super) fn start_notifier(&self) {
        self.inner.notifier.get_or_init(|| {
            let mut committed = self.inner.signal.committed.subscribe();
            // The commit that starts the task is in the value already.
            committed.mark_changed();
            tokio::spawn(notify_after_commits(
                self.inner.pool.clone(),
                self.channel().to_owned(),
                self.inner.sql.notify,
                committed,
            ));
        });
    }
}

/// Runs until the store is dropped (its sender closes).
async fn notify_after_commits(
    pool: Pool,
    channel: String,
    sql: &'static str,
    mut committed: watch::Receiver<u64>,
) {
    while committed.changed().await.is_ok() {
        let newest = committed.borrow_and_update().to_string();
        let sent = async {
            let client = pool.get().await.map_err(crate::Error::from)?;
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, &[&channel, &newest]).await?;
            Ok::<_, crate::Error>(())
        };
        match sent.await {
            Ok(()) => tokio::time::sleep(MIN_INTERVAL).await,
            Err(error) => {
                tracing::debug!(%error, "cannot notify; readers elsewhere poll");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
