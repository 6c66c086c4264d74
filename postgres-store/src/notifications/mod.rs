//! Waking readers of the global stream and the outbox when new rows are
//! readable: not merely committed, but below the readers' horizon.
//!
//! Commits of this process are recorded as they happen
//! ([`Notifications::appended`]). While anyone holds an [`AppendSignal`], a
//! listener task keeps a connection of its own that `LISTEN`s on the
//! store's channel; commits come to it from this process directly and from
//! other processes by `NOTIFY` (the payload is the transaction id), and it
//! wakes the readers once the horizon has passed that transaction, so that
//! a woken reader finds the rows instead of an older transaction still
//! holding them back. With [`Notify::AfterCommit`] a notifier task sends
//! the `NOTIFY` of this process's commits. Lost connections are reopened
//! with backoff; meanwhile readers poll.

mod listener;
mod notifier;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use annals::AppendSignal;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::Notify;
use crate::database::{HorizonSettings, Sessions};
use crate::schema::SchemaName;
use crate::statements::Statements;

/// The wake-ups of one store's readers.
pub(crate) struct Notifications {
    shared: Arc<Shared>,
    notify: Notify,
    /// Set once the after-commit notifier runs.
    notifier: OnceLock<()>,
}

/// What the listener task shares with the store.
struct Shared {
    /// Wakes the readers; holds the newest transaction id known readable.
    readable: watch::Sender<u64>,
    /// The newest transaction id this process appended in.
    committed: watch::Sender<u64>,
    /// Whether the listener task runs.
    listening: Mutex<bool>,
    sessions: Sessions,
    schema: SchemaName,
    sql: Arc<Statements>,
    horizon: HorizonSettings,
}

impl Notifications {
    pub(crate) fn new(
        sessions: Sessions,
        schema: SchemaName,
        sql: Arc<Statements>,
        horizon: HorizonSettings,
        notify: Notify,
    ) -> Self {
        Notifications {
            shared: Arc::new(Shared {
                readable: watch::Sender::new(0),
                committed: watch::Sender::new(0),
                listening: Mutex::new(false),
                sessions,
                schema,
                sql,
                horizon,
            }),
            notify,
            notifier: OnceLock::new(),
        }
    }

    /// Records a commit of this process in transaction `commit`.
    pub(crate) fn appended(&self, commit: u64) {
        self.shared.committed.send_if_modified(|newest| {
            let newer = commit > *newest;
            if newer {
                *newest = commit;
            }
            newer
        });
        if self.notify == Notify::AfterCommit {
            self.notifier.get_or_init(|| {
                let mut committed = self.shared.committed.subscribe();
                // The commit that starts the task is in the value already.
                committed.mark_changed();
                tokio::spawn(notifier::Notifier::new(&self.shared).run(committed));
            });
        }
    }

    /// A signal that wakes when rows committed since are readable.
    pub(crate) fn subscribe(&self) -> AppendSignal {
        let shared = &self.shared;
        let receiver = shared.readable.subscribe();
        let mut listening = shared.listening();
        // Without a runtime there is nobody to listen: readers poll.
        if !*listening && let Ok(runtime) = Handle::try_current() {
            *listening = true;
            runtime.spawn(listener::listen(Arc::clone(shared)));
        }
        AppendSignal::new(receiver)
    }
}

impl Shared {
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

    /// Under the same lock that [`Notifications::subscribe`] starts the
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

/// The pause before opening a lost connection again (the listener's, the
/// notifier's) after `failures` failed attempts in a row: 50 ms doubling up
/// to 3.2 s, each between half and all of that, so that processes that lost
/// their connections together do not all come back at once.
fn reconnect_pause(failures: u32) -> Duration {
    let bound = annals::exponential_backoff(
        Duration::from_millis(50),
        Duration::from_millis(3200),
        failures.saturating_add(1),
    );
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(millis / 2..=millis))
}
