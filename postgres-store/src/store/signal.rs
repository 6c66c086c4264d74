//! Waking readers of the global stream when new events are readable: not
//! merely committed, but below the readers' horizon.
//!
//! While anyone holds an [`AppendSignal`], a listener task keeps a
//! connection of its own that `LISTEN`s on the store's channel. Commits come
//! to it from this process directly and from other processes by `NOTIFY`
//! (the payload is the transaction id); it wakes the readers once the
//! horizon has passed that transaction, so a woken reader finds the events
//! instead of an older transaction still holding them back. A lost
//! connection is reopened with backoff; meanwhile readers poll.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use annals::AppendSignal;
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, Statement};

use super::horizon::{oldest_blocking, report};
use super::{Inner, PgEventStore};
use crate::types::Xid8;

/// The first and the longest wait before looking at the horizon again while
/// a commit is not yet readable.
const MIN_RECHECK: Duration = Duration::from_millis(1);
const MAX_RECHECK: Duration = Duration::from_millis(200);

pub(super) struct Signal {
    /// Wakes the readers; holds the newest transaction id known readable.
    readable: watch::Sender<u64>,
    /// The newest transaction id this process appended in.
    pub(super) committed: watch::Sender<u64>,
    /// Whether the listener task runs.
    listening: Mutex<bool>,
}

impl Signal {
    pub(super) fn new() -> Self {
        Signal {
            readable: watch::Sender::new(0),
            committed: watch::Sender::new(0),
            listening: Mutex::new(false),
        }
    }

    fn wake(&self, commit: u64) {
        self.readable
            .send_modify(|newest| *newest = (*newest).max(commit));
    }

    fn listening(&self) -> MutexGuard<'_, bool> {
        // The flag is a plain bool: a panic elsewhere cannot leave it torn.
        self.listening
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Under the same lock that [`PgEventStore::subscribe`] starts the
    /// listener with: stops it when nobody listens any more.
    fn stop_if_unobserved(&self) -> bool {
        let mut listening = self.listening();
        if self.readable.receiver_count() == 0 {
            *listening = false;
            return true;
        }
        false
    }
}

impl PgEventStore {
    /// Records a commit of this process in transaction `commit`.
    pub(super) fn appended(&self, commit: u64) {
        self.inner.signal.committed.send_if_modified(|newest| {
            let newer = commit > *newest;
            if newer {
                *newest = commit;
            }
            newer
        });
        if self.inner.notify == crate::Notify::AfterCommit {
            self.start_notifier();
        }
    }

    pub(super) fn subscribe(&self) -> AppendSignal {
        let signal = &self.inner.signal;
        let receiver = signal.readable.subscribe();
        let mut listening = signal.listening();
        // Without a runtime there is nobody to listen: readers poll.
        if !*listening && let Ok(runtime) = Handle::try_current() {
            *listening = true;
            runtime.spawn(listen(Arc::clone(&self.inner)));
        }
        AppendSignal::new(receiver)
    }
}

/// The pause before opening a lost connection again (the listener's, the
/// notifier's) after `failures` failed attempts in a row: 50 ms doubling up
/// to 3.2 s, each between half and all of that, so that processes that lost
/// their connections together do not all come back at once.
pub(super) fn reconnect_pause(failures: u32) -> Duration {
    let bound = annals::exponential_backoff(
        Duration::from_millis(50),
        Duration::from_millis(3200),
        failures.saturating_add(1),
    );
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(millis / 2..=millis))
}

enum End {
    /// Nobody listens any more.
    Stop,
    /// The connection broke.
    Lost,
}

async fn listen(inner: Arc<Inner>) {
    let mut committed = inner.signal.committed.subscribe();
    let mut failures = 0;
    loop {
        let end = match Session::open(&inner).await {
            Ok(session) => {
                failures = 0;
                session.run(&inner, &mut committed).await
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(
                    schema = inner.schema.as_str(),
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
        inner.signal.wake(0);
        tokio::select! {
            () = tokio::time::sleep(reconnect_pause(failures)) => {}
            () = inner.signal.readable.closed() => {}
        }
        if inner.signal.stop_if_unobserved() {
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
    async fn open(inner: &Inner) -> Result<Self, tokio_postgres::Error> {
        let (client, mut connection) = inner.listen_config.connect(inner.tls.clone()).await?;
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
        client
            .batch_execute(&format!("LISTEN {}", inner.schema.quoted()))
            .await?;
        let horizon = client.prepare(inner.sql.horizon).await?;
        Ok(Session {
            client,
            horizon,
            notifications,
        })
    }

    async fn run(mut self, inner: &Inner, committed: &mut watch::Receiver<u64>) -> End {
        let mut pending: Option<u64> = None;
        let mut recheck = MIN_RECHECK;
        let mut checks = tokio::time::interval(inner.horizon_check_interval);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = inner.signal.readable.closed() => {
                    if inner.signal.stop_if_unobserved() {
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
                            Err(_) => inner.signal.wake(0),
                        }
                    }
                }
                _ = checks.tick() => {
                    match oldest_blocking(&self.client, inner.sql.oldest_blocking_transaction).await {
                        Ok(found) => report(found.as_ref(), inner.horizon_warning),
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
                        inner.signal.wake(commit);
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
