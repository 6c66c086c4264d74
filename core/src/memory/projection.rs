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
///     .spawn();
/// handle.stop().await?;
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
    leases: HashSet<String>,
}

impl fmt::Debug for MemoryProjectionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryProjectionBackend")
            .field("checkpoints", &state.checkpoints)
            .field("parked", &state.parked.len())
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

/// The active-runner lease of one projection; released when dropped.
#[derive(Debug)]
pub struct MemoryLease {
    backend: MemoryProjectionBackend,
    name: String,
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.backend.lock().leases.remove(&self.name);
        self.backend.inner.released.notify_waiters();
    }
}

impl ProjectionBackend for MemoryProjectionBackend {
    type Tx = ();
    type Lease = MemoryLease;

    fn atomic_batches(&self) -> bool {
        false
    }

    async fn acquire(&self, name: &str) -> Result<MemoryLease, Error> {
        loop {
            let released = self.inner.released.notified();
            if self.lock().leases.insert(name.to_owned()) {
                return Ok(MemoryLease {
                    backend: self.clone(),
                    name: name.to_owned(),
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
        let checkpoint = state
            .checkpoints
            .entry((name.to_owned(), version))
            .or_default();
        if *checkpoint != from {
            return Err(Error::backend(
                "memory",
                false,
                format!(
                    "projection `{name}` v{version} is at {checkpoint}, not {from}: another runner moved it"
                ),
            ));
        }
        *checkpoint = to;
        Ok(())
    }

    async fn rollback(&self, _tx: ()) -> Result<(), Error> {
        Ok(())
    }

    async fn park(&self, parked: ParkedEvent) -> Result<(), Error> {
        self.lock().parked.push(parked);
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

    async fn unpark(&self, name: &str, version: u32, event_id: Uuid) -> Result<(), Error> {
        self.lock().parked.retain(|parked| {
            !(parked.projection == name
                && parked.version == version
                && parked.event.event_id == event_id)
        });
        Ok(())
    }
}
