//! Projection checkpoints, parked events and leases in memory.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::{Error, GlobalPosition, ParkedEvent, ProjectionBackend};

/// Keeps projection checkpoints and parked events in memory, for tests and
/// single-process services. Handlers get `()`: the read model is the
/// projection's own state, so the runner commits after every event (an
/// in-memory read model cannot be rolled back).
///
/// ```
/// use annals::{MemoryEventStore, MemoryProjectionBackend, ProjectionRunner};
/// # use annals::{BoxError, Envelope, Projection};
/// # use annals::testing::conformance::FixtureEvent;
/// # struct Count(std::sync::atomic::AtomicU64);
/// # impl Projection<()> for Count {
/// #     type Event = FixtureEvent;
/// #     fn name(&self) -> &str { "count" }
/// #     async fn handle(&self, _: &mut (), _: &Envelope<FixtureEvent>) -> Result<(), BoxError> {
/// #         self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
/// #         Ok(())
/// #     }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let store = MemoryEventStore::new();
/// let handle = ProjectionRunner::new(store, MemoryProjectionBackend::new(), Count(Default::default()))
///     .start()?;
/// handle.stop(std::time::Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryProjectionBackend {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    released: Notify,
}

#[derive(Default)]
struct State {
    checkpoints: HashMap<(String, u32), GlobalPosition>,
    parked: Vec<ParkedEvent>,
    serving: HashMap<String, u32>,
    leases: HashSet<(String, u32)>,
}

impl fmt::Debug for MemoryProjectionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryProjectionBackend")
            .field("checkpoints", &state.checkpoints)
            .field("parked", &state.parked.len())
            .field("serving", &state.serving)
            .finish()
    }
}

impl MemoryProjectionBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a single step.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The active-runner lease of one version of a projection; released when
/// dropped.
#[derive(Debug)]
pub struct MemoryLease {
    backend: MemoryProjectionBackend,
    key: (String, u32),
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.backend.lock().leases.remove(&self.key);
        self.backend.inner.released.notify_waiters();
    }
}

impl ProjectionBackend for MemoryProjectionBackend {
    type Tx = ();
    type Lease = MemoryLease;

    fn atomic_batches(&self) -> bool {
        false
    }

    async fn acquire(&self, name: &str, version: u32) -> Result<MemoryLease, Error> {
        let key = (name.to_owned(), version);
        loop {
            let released = self.inner.released.notified();
            if self.lock().leases.insert(key.clone()) {
                return Ok(MemoryLease {
                    backend: self.clone(),
                    key,
                });
            }
            released.await;
        }
    }

    fn is_held(&self, _lease: &MemoryLease) -> bool {
        true
    }

    async fn checkpoint(&self, name: &str, version: u32) -> Result<Option<GlobalPosition>, Error> {
        Ok(self
            .lock()
            .checkpoints
            .get(&(name.to_owned(), version))
            .copied())
    }

    async fn begin(&self, _name: &str, _version: u32) -> Result<(), Error> {
        Ok(())
    }

    async fn commit(
        &self,
        _tx: (),
        name: &str,
        version: u32,
        from: GlobalPosition,
        to: GlobalPosition,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        let key = (name.to_owned(), version);
        let checkpoint = state
            .checkpoints
            .get(&key)
            .copied()
            .unwrap_or(GlobalPosition::START);
        if checkpoint != from {
            return Err(Error::backend(
                "memory",
                false,
                format!(
                    "projection `{name}` v{version} is at {checkpoint}, not {from}: another runner moved it"
                ),
            ));
        }
        state.checkpoints.insert(key, to);
        Ok(())
    }

    async fn rollback(&self, _tx: ()) -> Result<(), Error> {
        Ok(())
    }

    async fn serving(&self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.lock().serving.get(name).copied())
    }

    async fn promote(&self, _tx: (), name: &str, version: u32) -> Result<bool, Error> {
        let mut state = self.lock();
        let serving = state.serving.entry(name.to_owned()).or_insert(0);
        let promoted = *serving < version;
        *serving = (*serving).max(version);
        Ok(promoted)
    }

    async fn reset(&self, _tx: (), name: &str, version: u32) -> Result<(), Error> {
        let mut state = self.lock();
        state.checkpoints.remove(&(name.to_owned(), version));
        state
            .parked
            .retain(|parked| !(parked.projection == name && parked.version == version));
        Ok(())
    }

    async fn park(&self, parked: ParkedEvent) -> Result<(), Error> {
        let mut state = self.lock();
        // Parking an event again keeps the newest error, as in Postgres.
        state.parked.retain(|old| {
            !(old.projection == parked.projection
                && old.version == parked.version
                && old.event.event_id == parked.event.event_id)
        });
        state.parked.push(parked);
        state.parked.sort_by_key(|parked| parked.event.position);
        Ok(())
    }

    async fn parked(&self, name: &str, version: u32) -> Result<Vec<ParkedEvent>, Error> {
        Ok(self
            .lock()
            .parked
            .iter()
            .filter(|parked| parked.projection == name && parked.version == version)
            .cloned()
            .collect())
    }

    async fn unpark(
        &self,
        _tx: &mut (),
        name: &str,
        version: u32,
        event_id: Uuid,
    ) -> Result<(), Error> {
        self.lock().parked.retain(|parked| {
            !(parked.projection == name
                && parked.version == version
                && parked.event.event_id == event_id)
        });
        Ok(())
    }
}
