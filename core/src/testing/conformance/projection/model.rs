//! The read model of the projection cases, as each backend keeps it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use crate::BoxError;

/// What one version of the [`Tally`](super::Tally) read model holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Per stream, the events applied and the sum of their amounts.
    pub streams: BTreeMap<String, (i64, i64)>,
    /// Every application of an event: its id and the runner that applied
    /// it, in no particular order.
    pub applied: Vec<(Uuid, String)>,
}

impl Tallies {
    /// The amount of `stream`, 0 when it has none.
    pub fn amount(&self, stream: &str) -> i64 {
        self.streams.get(stream).map_or(0, |(_, amount)| *amount)
    }
}

/// The read model of [`Tally`](super::Tally), written with the
/// transactions of a backend whose handlers get `Tx`: a backend's test
/// harness implements it over its own storage (tables in the backend's
/// database, say), versions side by side.
pub trait TallyModel<Tx>: Clone + Send + Sync + 'static {
    /// Creates what version `version` keeps, if missing.
    fn setup(&self, tx: &mut Tx, version: u32)
    -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Records in `tx` that `runner` applied event `event_id` of `stream`,
    /// adding `amount`; fails when version `version` applied the event
    /// before (an event applied twice is a failure of the backend).
    fn apply(
        &self,
        tx: &mut Tx,
        version: u32,
        runner: &str,
        event_id: Uuid,
        stream: &str,
        amount: i64,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Makes version `version` the one queries read, in `tx`.
    fn promote(
        &self,
        tx: &mut Tx,
        version: u32,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Clears version `version`, in `tx`.
    fn reset(&self, tx: &mut Tx, version: u32)
    -> impl Future<Output = Result<(), BoxError>> + Send;

    /// What version `version` holds, as committed; the version queries
    /// read when `None` (empty before any was promoted).
    fn read(&self, version: Option<u32>) -> impl Future<Output = Tallies> + Send;

    /// Whether queries read exactly what version `version` holds, seen at
    /// one moment (while runners go on applying).
    fn serves(&self, version: u32) -> impl Future<Output = bool> + Send;
}

/// The model in memory, for the in-memory backend, whose handlers get
/// `()`: applied at once (the in-memory backend commits after every
/// event). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryTally {
    state: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    versions: HashMap<u32, Tallies>,
    /// The events each version applied.
    applied: HashMap<u32, HashSet<Uuid>>,
    served: Option<u32>,
}

impl MemoryTally {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TallyModel<()> for MemoryTally {
    async fn setup(&self, _: &mut (), version: u32) -> Result<(), BoxError> {
        self.lock().versions.entry(version).or_default();
        Ok(())
    }

    async fn apply(
        &self,
        _: &mut (),
        version: u32,
        runner: &str,
        event_id: Uuid,
        stream: &str,
        amount: i64,
    ) -> Result<(), BoxError> {
        let mut state = self.lock();
        if !state.applied.entry(version).or_default().insert(event_id) {
            return Err(format!("event {event_id} was applied before").into());
        }
        let tallies = state.versions.entry(version).or_default();
        tallies.applied.push((event_id, runner.to_owned()));
        let entry = tallies.streams.entry(stream.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += amount;
        Ok(())
    }

    async fn promote(&self, _: &mut (), version: u32) -> Result<(), BoxError> {
        self.lock().served = Some(version);
        Ok(())
    }

    async fn reset(&self, _: &mut (), version: u32) -> Result<(), BoxError> {
        let mut state = self.lock();
        state.versions.remove(&version);
        state.applied.remove(&version);
        Ok(())
    }

    async fn read(&self, version: Option<u32>) -> Tallies {
        let state = self.lock();
        version
            .or(state.served)
            .and_then(|version| state.versions.get(&version).cloned())
            .unwrap_or_default()
    }

    async fn serves(&self, version: u32) -> bool {
        self.lock().served == Some(version)
    }
}
