//! Loading an aggregate: its snapshot and the events after it, or all its
//! events when the snapshot cannot be used.

use futures::TryStreamExt;

use super::Repository;
use super::cache::CachedState;
use crate::{Aggregate, Error, EventStore, FromSnapshot, StreamId};

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore,
{
    pub(super) async fn load_stream(&self, stream: &StreamId) -> Result<CachedState<A>, Error> {
        let mut loaded = CachedState {
            state: A::default(),
            version: 0,
            last_snapshot: 0,
        };
        let mut records = if self.snapshots.uses_snapshots() {
            let FromSnapshot { snapshot, events } =
                self.store.read_from_snapshot(stream.clone()).await?;
            match snapshot {
                None => events,
                Some(snapshot) => match restore_snapshot::<A>(&snapshot) {
                    Some(state) => {
                        loaded.state = state;
                        loaded.version = snapshot.version;
                        loaded.last_snapshot = snapshot.version;
                        events
                    }
                    // The events after an unusable snapshot are not enough:
                    // read them all (done with the others, which may hold a
                    // connection).
                    None => {
                        drop(events);
                        self.store.read_stream(stream.clone(), 1)
                    }
                },
            }
        } else {
            self.store.read_stream(stream.clone(), 1)
        };
        while let Some(record) = records.try_next().await? {
            for event in record.decode::<A::Event>()? {
                loaded.state.apply(&event);
            }
            loaded.version = record.version;
        }
        Ok(loaded)
    }
}

/// The state in a snapshot, or `None` (with a warning) when it is of another
/// schema version or does not decode: the caller rebuilds from events.
fn restore_snapshot<A: Aggregate>(snapshot: &crate::Snapshot) -> Option<A> {
    if snapshot.state_version != A::SNAPSHOT_VERSION {
        tracing::warn!(
            stream = %snapshot.stream,
            version = snapshot.version,
            snapshot_state_version = snapshot.state_version,
            code_state_version = A::SNAPSHOT_VERSION,
            "ignoring a snapshot of another state version; rebuilding from events"
        );
        return None;
    }
    match serde_json::from_str(snapshot.state.get()) {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::warn!(
                stream = %snapshot.stream,
                version = snapshot.version,
                %error,
                "ignoring a snapshot that does not decode; rebuilding from events"
            );
            None
        }
    }
}
