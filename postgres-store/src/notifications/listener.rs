//! The listener: a connection of its own that `LISTEN`s on the store's
//! channel and wakes the readers once the commits it hears of are below
//! the horizon; it also checks what holds the horizon back, periodically.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, Statement};

use super::{Shared, reconnect_pause};
use crate::horizon::{oldest_blocking, report};
use crate::types::Xid8;

/// The first and the longest wait before looking at the horizon again while
/// a commit is not yet readable.
const MIN_RECHECK: Duration = Duration::from_millis(1);
const MAX_RECHECK: Duration = Duration::from_millis(200);

enum End {
    /// Nobody listens any more.
    Stop,
    /// The connection broke.
    Lost,
}

/// Runs until nobody holds an append signal any more.
pub(super) async fn listen(shared: Arc<Shared>) {
    let mut committed = shared.committed.subscribe();
    let mut failures = 0;
    loop {
        let end = match Session::open(&shared).await {
            Ok(session) => {
                failures = 0;
                session.run(&shared, &mut committed).await
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    schema = shared.schema.as_str(),
                    %error,
                    "cannot listen for appends; readers poll until the connection is back"
                );
                End::Lost
            }
        };
        if let End::Stop = end {
            return;
        }
        // Notifications may have been missed: readers should look now.
        shared.wake(0);
        tokio::select! {
            () = tokio::time::sleep(reconnect_pause(failures)) => {}
            () = shared.readable.closed() => {}
        }
        if shared.stop_if_unobserved() {
            return;
        }
    }
}

struct Session {
    client: Client,
    horizon: Statement,
    notifications: mpsc::UnboundedReceiver<String>,
}

impl Session {
    async fn open(shared: &Shared) -> Result<Self, tokio_postgres::Error> {
        let (client, mut connection) = shared.sessions.open().await?;
        let (sender, notifications) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        if sender.send(notification.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "the listening connection ended");
                        return;
                    }
                }
            }
        });
        client.batch_execute(&shared.sql.notify.listen).await?;
        let horizon = client.prepare(&shared.sql.horizon.horizon).await?;
        Ok(Session {
            client,
            horizon,
            notifications,
        })
    }

    async fn run(mut self, shared: &Shared, committed: &mut watch::Receiver<u64>) -> End {
        let mut pending: Option<u64> = None;
        let mut recheck = MIN_RECHECK;
        let mut checks = tokio::time::interval(shared.horizon.check_interval);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let oldest = &shared.sql.horizon.oldest_blocking_transaction;
        loop {
            tokio::select! {
                () = shared.readable.closed() => {
                    if shared.stop_if_unobserved() {
                        return End::Stop;
                    }
                }
                changed = committed.changed() => {
                    if changed.is_err() {
                        return End::Stop;
                    }
                    pending = pending.max(Some(*committed.borrow_and_update()));
                }
                payload = self.notifications.recv() => {
                    let Some(payload) = payload else {
                        return End::Lost;
                    };
                    for payload in std::iter::once(payload).chain(self.drain()) {
                        match payload.parse::<u64>() {
                            Ok(commit) => pending = pending.max(Some(commit)),
                            // Someone else's notification: let readers look.
                            Err(_) => shared.wake(0),
                        }
                    }
                }
                _ = checks.tick() => {
                    match oldest_blocking(&self.client, oldest).await {
                        Ok(found) => report(found.as_ref(), shared.horizon.warning),
                        Err(error) if error.is_closed() => return End::Lost,
                        Err(error) => tracing::debug!(%error, "cannot see the oldest transaction"),
                    }
                }
                () = tokio::time::sleep(recheck), if pending.is_some() => {}
            }
            let Some(commit) = pending else { continue };
            match self.client.query_one(&self.horizon, &[]).await {
                Ok(row) => match row.try_get::<_, Xid8>(0) {
                    Ok(Xid8(horizon)) if horizon > commit => {
                        shared.wake(commit);
                        pending = None;
                        recheck = MIN_RECHECK;
                    }
                    Ok(_) => recheck = (recheck * 2).min(MAX_RECHECK),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the horizon");
                        return End::Lost;
                    }
                },
                Err(error) => {
                    tracing::debug!(%error, "the listening connection failed");
                    return End::Lost;
                }
            }
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = String> + '_ {
        std::iter::from_fn(|| self.notifications.try_recv().ok())
    }
}
