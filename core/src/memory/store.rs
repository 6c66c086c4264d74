//! An event store in memory: the same contract as the Postgres store, for
//! tests, examples and single-process tools.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use futures::stream;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::{
    AppendOutcome, AppendRequest, AppendSignal, Error, EventStore, EventStream, GlobalPosition,
    Limits, OutboxReader, OutboxRecord, OutboxShard, RecordedEvent, Snapshot, StreamId,
};

/// An event store held in memory, thread-safe, cheap to clone (clones share
/// the data).
///
/// Every append is one commit: positions are (commit number, sequence
/// number), so the global order is the commit order, as in Postgres.
///
/// ```
/// use annals::{Limits, MemoryEventStore};
///
/// let store = MemoryEventStore::with_limits(Limits::default().with_max_payload_bytes(4096));
/// let same = store.clone(); // shares the events
/// # let _ = same;
/// ```
#[derive(Clone)]
pub struct MemoryEventStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    state: Mutex<State>,
    limits: Limits,
    appended: watch::Sender<u64>,
    /// Wakes relays waiting for a shard lease.
    pub(super) lease_released: Notify,
}

#[derive(Default)]
pub(super) struct State {
    /// Every event in global order.
    log: Vec<RecordedEvent>,
    /// Indexes into `log` per stream, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    event_ids: HashSet<Uuid>,
    commands: HashMap<Uuid, AppendOutcome>,
    snapshots: HashMap<StreamId, Snapshot>,
    /// The outbox in position order (pruned records removed).
    pub(super) outbox: Vec<OutboxRecord>,
    /// Relay state, keyed by relay name and shard.
    pub(super) relays: super::outbox::RelayState,
    commits: u64,
    sequence: u64,
}

impl State {
    fn version(&self, stream: &StreamId) -> Option<u64> {
        self.streams.get(stream).map(|indexes| indexes.len() as u64)
    }
}

impl fmt::Debug for MemoryEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryEventStore")
            .field("events", &state.log.len())
            .field("streams", &state.streams.len())
            .field("outbox", &state.outbox.len())
            .field("limits", &self.inner.limits)
            .finish()
    }
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEventStore {
    /// An empty store with default limits.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// An empty store with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        MemoryEventStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                limits,
                appended: watch::Sender::new(0),
                lease_released: Notify::new(),
            }),
        }
    }

    /// The number of events stored.
    pub fn len(&self) -> usize {
        self.lock().log.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().log.is_empty()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Appends validate everything before the first write, so a panic
        // cannot leave a half-written commit behind a poisoned lock.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn commit(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, Error> {
        AppendRequest::validate_unit(&requests, &self.inner.limits)?;
        let mut state = self.lock();
        // Check everything first: a unit is written entirely or not at all.
        let mut duplicates = Vec::with_capacity(requests.len());
        for request in &requests {
            let duplicate = request
                .command_id
                .and_then(|id| state.commands.get(&id).cloned());
            if duplicate.is_none() {
                let actual = state.version(&request.stream);
                if !request.expected.accepts(actual) {
                    return Err(Error::Conflict {
                        stream: request.stream.clone(),
                        expected: request.expected,
                        actual,
                    });
                }
                if let Some(event) = request
                    .events
                    .iter()
                    .find(|event| state.event_ids.contains(&event.event_id))
                {
                    return Err(Error::invalid_append(
                        &request.stream,
                        format!("event id {} is already stored", event.event_id),
                    ));
                }
            }
            duplicates.push(duplicate);
        }
        state.commits += 1;
        let commit = state.commits;
        let now = Utc::now();
        let mut outcomes = Vec::with_capacity(requests.len());
        for (request, duplicate) in requests.into_iter().zip(duplicates) {
            if let Some(mut first) = duplicate {
                first.duplicate = true;
                outcomes.push(first);
                continue;
            }
            let first_version = state.version(&request.stream).unwrap_or(0) + 1;
            let mut version = first_version - 1;
            let mut position = GlobalPosition::START;
            for event in request.events {
                version += 1;
                state.sequence += 1;
                position = GlobalPosition::new(commit, state.sequence);
                let index = state.log.len();
                state.event_ids.insert(event.event_id);
                state.log.push(RecordedEvent {
                    event_id: event.event_id,
                    stream: request.stream.clone(),
                    version,
                    position,
                    recorded_at: now,
                    event_type: event.event_type,
                    event_version: event.event_version,
                    payload: event.payload,
                    metadata: event.metadata,
                });
                state
                    .streams
                    .entry(request.stream.clone())
                    .or_default()
                    .push(index);
            }
            if let Some(snapshot) = request.snapshot {
                state.snapshots.insert(
                    request.stream.clone(),
                    Snapshot {
                        stream: request.stream.clone(),
                        version,
                        state_version: snapshot.state_version,
                        state: snapshot.state,
                        taken_at: now,
                    },
                );
            }
            for message in request.outbox {
                state.sequence += 1;
                let position = GlobalPosition::new(commit, state.sequence);
                state.outbox.push(OutboxRecord {
                    position,
                    recorded_at: now,
                    message,
                });
            }
            let outcome = AppendOutcome {
                stream: request.stream,
                first_version,
                last_version: version,
                last_position: position,
                duplicate: false,
            };
            if let Some(command_id) = request.command_id {
                state.commands.insert(command_id, outcome.clone());
            }
            outcomes.push(outcome);
        }
        drop(state);
        self.inner.appended.send_modify(|commits| *commits = commit);
        Ok(outcomes)
    }
}

impl EventStore for MemoryEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        let mut outcomes = self.commit(vec![request])?;
        Ok(outcomes.pop().expect("one request, one outcome"))
    }

    async fn append_all(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, Error> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(requests)
    }

    fn read_stream(&self, stream: StreamId, from_version: u64) -> EventStream {
        let state = self.lock();
        let events: Vec<Result<RecordedEvent, Error>> = match state.streams.get(&stream) {
            Some(indexes) => {
                let skip = usize::try_from(from_version.saturating_sub(1)).unwrap_or(usize::MAX);
                indexes
                    .iter()
                    .skip(skip)
                    .map(|&index| Ok(state.log[index].clone()))
                    .collect()
            }
            None => Vec::new(),
        };
        Box::pin(stream::iter(events))
    }

    async fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let state = self.lock();
        let start = state.log.partition_point(|event| event.position <= after);
        Ok(state.log[start..].iter().take(limit).cloned().collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, Error> {
        Ok(self.lock().version(stream))
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, Error> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    async fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, Error> {
        Ok(self
            .lock()
            .commands
            .get(&command_id)
            .cloned()
            .map(|mut outcome| {
                outcome.duplicate = true;
                outcome
            }))
    }

    fn append_signal(&self) -> AppendSignal {
        AppendSignal::new(self.inner.appended.subscribe())
    }
}

impl MemoryEventStore {
    /// Up to `limit` records of `shard` after `after`, in position order.
    pub(super) fn shard_records(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Vec<OutboxRecord> {
        let state = self.lock();
        let start = state
            .outbox
            .partition_point(|record| record.position <= after);
        state.outbox[start..]
            .iter()
            .filter(|record| shard.contains(&record.message.key))
            .take(limit)
            .cloned()
            .collect()
    }
}

impl OutboxReader for MemoryEventStore {
    async fn read_outbox(
        &self,
        shard: OutboxShard,
        after: GlobalPosition,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, Error> {
        Ok(self.shard_records(shard, after, limit))
    }
}
