//! The event store contract every backend implements.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use tokio::sync::watch;
use uuid::Uuid;

use crate::outbox::validate_type_name;
use crate::{
    Error, ExpectedVersion, GlobalPosition, NewEvent, OutboxMessage, Payload, RecordedEvent,
    StreamId,
};

/// The events of one stream, read lazily in version order.
pub type EventStream = BoxStream<'static, Result<RecordedEvent, Error>>;

/// Size limits checked before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest event, snapshot or outbox payload, in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// The largest metadata of one event or message, as JSON, in bytes
    /// (default 64 KiB).
    pub max_metadata_bytes: usize,
    /// The most events in one append (default 10,000).
    pub max_events_per_append: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 1024 * 1024,
            max_metadata_bytes: 64 * 1024,
            max_events_per_append: 10_000,
        }
    }
}

impl Limits {
    /// Sets the largest payload.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets the largest metadata.
    pub fn with_max_metadata_bytes(mut self, bytes: usize) -> Self {
        self.max_metadata_bytes = bytes;
        self
    }

    /// Sets the most events in one append.
    pub fn with_max_events_per_append(mut self, events: usize) -> Self {
        self.max_events_per_append = events;
        self
    }
}

/// Aggregate state to store beside an append, at the append's last version.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    /// The schema version of the state; a snapshot whose version differs from
    /// the code's is ignored on load.
    pub state_version: u32,
    /// The state as JSON.
    pub state: Payload,
}

/// A stored snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// The stream version whose state it holds.
    pub version: u64,
    /// The schema version of the state.
    pub state_version: u32,
    /// The state as JSON.
    pub state: Payload,
    /// When it was written.
    pub taken_at: DateTime<Utc>,
}

/// The newest snapshot of a stream and the stream's events after it: all
/// of them when it has no snapshot. What [`EventStore::read_from_snapshot`]
/// returns.
pub struct FromSnapshot {
    /// The newest snapshot, if the stream has one.
    pub snapshot: Option<Snapshot>,
    /// The events after the snapshot's version (from version 1 without a
    /// snapshot), in version order.
    pub events: EventStream,
}

impl std::fmt::Debug for FromSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromSnapshot")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

/// Everything one append writes, atomically: events, an optional snapshot and
/// outbox messages.
///
/// ```
/// use annals::{AppendRequest, ExpectedVersion, Metadata, NewEvent, StreamId};
/// use annals::Payload;
///
/// let request = AppendRequest::new(StreamId::new("order-1")?, ExpectedVersion::NoStream)
///     .event(NewEvent::raw("OrderPlaced", 1, Payload::encode(&5)?, Metadata::default()))
///     .command_id(uuid::Uuid::now_v7());
/// assert_eq!(request.events.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The stream written to.
    pub stream: StreamId,
    /// The version the stream must be at.
    pub expected: ExpectedVersion,
    /// The events, at least one.
    pub events: Vec<NewEvent>,
    /// The command that produced them. A second append with the same command
    /// id writes nothing and returns the first outcome.
    pub command_id: Option<Uuid>,
    /// A snapshot of the state after these events.
    pub snapshot: Option<NewSnapshot>,
    /// Messages for other services.
    pub outbox: Vec<OutboxMessage>,
}

impl AppendRequest {
    /// An append to `stream` expecting `expected`, with nothing in it yet.
    pub fn new(stream: StreamId, expected: ExpectedVersion) -> Self {
        AppendRequest {
            stream,
            expected,
            events: Vec::new(),
            command_id: None,
            snapshot: None,
            outbox: Vec::new(),
        }
    }

    /// Adds an event.
    pub fn event(mut self, event: NewEvent) -> Self {
        self.events.push(event);
        self
    }

    /// Adds events.
    pub fn events(mut self, events: impl IntoIterator<Item = NewEvent>) -> Self {
        self.events.extend(events);
        self
    }

    /// Sets the command id that makes the append idempotent.
    pub fn command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = Some(command_id);
        self
    }

    /// Adds a snapshot at the append's last version.
    pub fn snapshot(mut self, snapshot: NewSnapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Adds an outbox message.
    pub fn outbox_message(mut self, message: OutboxMessage) -> Self {
        self.outbox.push(message);
        self
    }

    /// Checks the request against `limits` and the rules every store shares.
    /// Stores call it before writing anything.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        let stream = &self.stream;
        if self.events.is_empty() {
            return Err(Error::invalid_append(
                stream,
                "an append needs at least one event",
            ));
        }
        if self.events.len() > limits.max_events_per_append {
            return Err(Error::invalid_append(
                stream,
                format!(
                    "{} events in one append, over the limit of {}",
                    self.events.len(),
                    limits.max_events_per_append
                ),
            ));
        }
        // Most appends hold one event: no set of ids to build for those.
        let mut ids = HashSet::with_capacity(if self.events.len() > 1 {
            self.events.len()
        } else {
            0
        });
        for (index, event) in self.events.iter().enumerate() {
            let what = || format!("event #{index} ({})", event.event_type);
            validate_type_name(&event.event_type).map_err(|reason| {
                Error::invalid_append(stream, format!("event #{index}: {reason}"))
            })?;
            if event.event_version == 0 {
                return Err(Error::invalid_append(
                    stream,
                    format!("{}: schema versions start at 1", what()),
                ));
            }
            if self.events.len() > 1 && !ids.insert(event.event_id) {
                return Err(Error::invalid_append(
                    stream,
                    format!("{}: event id {} appears twice", what(), event.event_id),
                ));
            }
            check_payload(stream, what, event.payload.get().len(), limits)?;
            check_metadata(stream, what, &event.metadata, limits)?;
        }
        if let Some(snapshot) = &self.snapshot {
            check_payload(
                stream,
                || "snapshot".to_owned(),
                snapshot.state.get().len(),
                limits,
            )?;
        }
        for (index, message) in self.outbox.iter().enumerate() {
            message
                .validate()
                .map_err(|reason| Error::invalid_append(stream, reason))?;
            let what = || format!("outbox message #{index} ({})", message.event_type);
            check_payload(stream, what, message.payload.get().len(), limits)?;
            check_metadata(stream, what, &message.metadata, limits)?;
        }
        Ok(())
    }

    /// Checks every request of a unit of work, and the rules of the unit:
    /// each stream and each command id at most once. Stores call it before
    /// writing anything.
    pub fn validate_unit(requests: &[AppendRequest], limits: &Limits) -> Result<(), Error> {
        if let [request] = requests {
            return request.validate(limits);
        }
        let mut streams = HashSet::with_capacity(requests.len());
        let mut commands = HashSet::with_capacity(requests.len());
        for request in requests {
            request.validate(limits)?;
            if !streams.insert(&request.stream) {
                return Err(Error::invalid_append(
                    &request.stream,
                    "a unit of work changes each stream at most once",
                ));
            }
            if let Some(command_id) = request.command_id
                && !commands.insert(command_id)
            {
                return Err(Error::invalid_append(
                    &request.stream,
                    format!("command id {command_id} appears twice in one unit of work"),
                ));
            }
        }
        Ok(())
    }
}

fn check_payload(
    stream: &StreamId,
    what: impl FnOnce() -> String,
    size: usize,
    limits: &Limits,
) -> Result<(), Error> {
    if size > limits.max_payload_bytes {
        return Err(Error::PayloadTooLarge {
            stream: stream.clone(),
            what: what(),
            size,
            limit: limits.max_payload_bytes,
        });
    }
    Ok(())
}

fn check_metadata(
    stream: &StreamId,
    what: impl FnOnce() -> String,
    metadata: &crate::Metadata,
    limits: &Limits,
) -> Result<(), Error> {
    if metadata_size_bound(metadata) <= limits.max_metadata_bytes {
        return Ok(());
    }
    let size = serde_json::to_vec(metadata)
        .map_err(|source| Error::Encode {
            what: "metadata".to_owned(),
            source,
        })?
        .len();
    if size > limits.max_metadata_bytes {
        return Err(Error::invalid_append(
            stream,
            format!(
                "metadata of {} is {size} bytes, over the limit of {}",
                what(),
                limits.max_metadata_bytes
            ),
        ));
    }
    Ok(())
}

/// At least as many bytes as `metadata` takes as JSON, found without
/// writing it: field names, punctuation and ids take under 256 bytes, and
/// an escaped character at most 6 bytes per byte (`\u00XX`). Most metadata
/// is far below the limit by this bound, and is not serialised to measure.
fn metadata_size_bound(metadata: &crate::Metadata) -> usize {
    let texts = [&metadata.tenant, &metadata.user, &metadata.traceparent]
        .into_iter()
        .flatten()
        .map(String::len)
        .sum::<usize>()
        + metadata
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>();
    256 + 6 * texts + 6 * metadata.headers.len()
}

/// What an append wrote, or for a repeated command id, what the first append
/// with that id wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream written to.
    pub stream: StreamId,
    /// The version of the first event written.
    pub first_version: u64,
    /// The version of the last event written: the stream's version after the
    /// append.
    pub last_version: u64,
    /// The global position of the last event written.
    pub last_position: GlobalPosition,
    /// True when the command id had been seen before and this call wrote
    /// nothing.
    pub duplicate: bool,
}

/// Wakes readers of the global stream when something may have been appended.
///
/// Wake-ups are hints: a reader reads, and when it finds nothing new waits on
/// the signal with a timeout, so that a lost notification costs at most one
/// poll interval.
#[derive(Debug, Clone)]
pub struct AppendSignal {
    receiver: watch::Receiver<u64>,
}

impl AppendSignal {
    /// A signal fed by `receiver`; stores create it from the sending half they
    /// notify after each commit.
    pub fn new(receiver: watch::Receiver<u64>) -> Self {
        AppendSignal { receiver }
    }

    /// Waits until something was appended since the signal was created or
    /// last woke, or until `timeout`. Returns whether it was woken.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, self.receiver.changed()).await {
            Ok(Ok(())) => true,
            Ok(Err(_closed)) => {
                // Nobody notifies any more: fall back to polling.
                tokio::time::sleep(timeout).await;
                false
            }
            Err(_elapsed) => false,
        }
    }
}

/// How far the global stream reaches past a reader's position: what a
/// reader there has still to read, and what keeps events from being
/// readable yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GlobalBacklog {
    /// Events readable after the position, counted up to the limit asked for.
    pub events: u64,
    /// Whether counting stopped at the limit: there may be more.
    pub capped: bool,
    /// How long the oldest running transaction has been holding readers
    /// back: what commits after it began is not readable until it ends.
    /// `None` when nothing holds them back, or the store cannot tell.
    pub horizon_held_for: Option<Duration>,
}

impl GlobalBacklog {
    /// A backlog of `events`, `capped` when counting stopped at the limit.
    pub fn new(events: u64, capped: bool, horizon_held_for: Option<Duration>) -> Self {
        GlobalBacklog {
            events,
            capped,
            horizon_held_for,
        }
    }
}

/// An event store: streams of events with optimistic concurrency, a global
/// stream in a stable total order, snapshots and an outbox written in the same
/// transaction as the events.
///
/// Every implementation passes the same conformance suite
/// (`annals::testing::conformance`, feature `testing`).
///
/// ```
/// use annals::{AppendRequest, EventStore, ExpectedVersion, GlobalPosition, MemoryEventStore,
///     Metadata, NewEvent, StreamId};
/// use futures::TryStreamExt;
/// use annals::Payload;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryEventStore::new();
/// let stream = StreamId::new("counter-1")?;
/// let event = NewEvent::raw("Incremented", 1, Payload::encode(&1)?, Metadata::default());
/// let outcome = store
///     .append(AppendRequest::new(stream.clone(), ExpectedVersion::NoStream).event(event))
///     .await?;
/// assert_eq!(outcome.last_version, 1);
///
/// let events: Vec<_> = store.read_stream(stream, 1).try_collect().await?;
/// assert_eq!(events[0].event_type, "Incremented");
/// let all = store.read_all(GlobalPosition::START, 100).await?;
/// assert_eq!(all.len(), 1);
/// # Ok(())
/// # }
/// ```
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends to one stream if it is at the expected version; writes the
    /// events, the snapshot and the outbox messages in one transaction.
    ///
    /// Errors: [`Error::Conflict`] when the version does not match (nothing
    /// written); validation errors before anything is written.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, Error>> + Send;

    /// Appends to several streams in one transaction: all or nothing. A
    /// stream may appear once.
    fn append_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, Error>> + Send;

    /// The events of `stream` from `from_version` on, in version order. A
    /// stream that does not exist is empty.
    fn read_stream(&self, stream: StreamId, from_version: u64) -> EventStream;

    /// Up to `limit` events of the global stream after `after`, in position
    /// order. Only events of finished commits are returned, so that no event
    /// can ever appear behind a position once it was read.
    ///
    /// "Finished" may reach beyond the reader's own writes: a store can
    /// hold an event back while a transaction that began before it
    /// committed is still open. The PostgreSQL store returns only events
    /// below the oldest transaction open anywhere on the server, so right
    /// after an append, `read_all` can return nothing while another
    /// session (another test, a `psql` window, a long report) has a
    /// transaction open, and by default it does not wait. Readers that
    /// follow [`append_signal`](EventStore::append_signal) (projections,
    /// the outbox relay) catch up when that transaction ends. A test that
    /// reads right after writing should let the store wait
    /// (`annals_postgres::Config::with_horizon_wait`); what holds readers
    /// back is named by `PgEventStore::oldest_blocking_transaction` and the
    /// gauge `annals_oldest_blocking_transaction_seconds`. The in-memory
    /// store's commits finish at once.
    fn read_all(
        &self,
        after: GlobalPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// The version of `stream`, `None` when it does not exist.
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// The newest snapshot of `stream`.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, Error>> + Send;

    /// The newest snapshot of `stream` and its events after it (all of them
    /// when it has none): the events start right after the snapshot
    /// returned, also when another is written meanwhile. A repository with
    /// snapshots loads aggregates with it. The default reads the snapshot,
    /// then the events after it; a store that can read both at once
    /// overrides it (a wrapper around a store should delegate it).
    fn read_from_snapshot(
        &self,
        stream: StreamId,
    ) -> impl Future<Output = Result<FromSnapshot, Error>> + Send {
        async move {
            let snapshot = self.load_snapshot(&stream).await?;
            let from = snapshot.as_ref().map_or(1, |snapshot| snapshot.version + 1);
            let events = self.read_stream(stream, from);
            Ok(FromSnapshot { snapshot, events })
        }
    }

    /// The outcome recorded for `command_id`, if an append carried it.
    fn command_outcome(
        &self,
        command_id: Uuid,
    ) -> impl Future<Output = Result<Option<AppendOutcome>, Error>> + Send;

    /// A signal that wakes when something may have been appended.
    fn append_signal(&self) -> AppendSignal;

    /// The events a reader of the global stream at `after` has still to
    /// read, counted up to `limit`, and what holds readers back. The default
    /// counts by reading and cannot see the horizon; a store with a cheaper
    /// way overrides it (a wrapper around a store should delegate it).
    fn global_backlog(
        &self,
        after: GlobalPosition,
        limit: u64,
    ) -> impl Future<Output = Result<GlobalBacklog, Error>> + Send {
        async move {
            const PAGE: usize = 1_000;
            let (mut position, mut events) = (after, 0_u64);
            while events < limit {
                let page = self.read_all(position, PAGE).await?;
                let Some(last) = page.last() else {
                    return Ok(GlobalBacklog::new(events, false, None));
                };
                position = last.position;
                events += page.len() as u64;
                if page.len() < PAGE {
                    return Ok(GlobalBacklog::new(events.min(limit), events > limit, None));
                }
            }
            Ok(GlobalBacklog::new(limit, true, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Metadata;

    fn metadata_with_header(value: &str) -> Metadata {
        Metadata {
            command_id: Some(Uuid::now_v7()),
            correlation_id: Some(Uuid::now_v7()),
            causation_id: Some(Uuid::now_v7()),
            tenant: Some("tenant-\u{1}".to_owned()),
            user: Some("ünïcode \"user\"".to_owned()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
            headers: BTreeMap::from([("h\n".to_owned(), value.to_owned())]),
        }
    }

    fn json_len(metadata: &Metadata) -> usize {
        serde_json::to_vec(metadata).unwrap().len()
    }

    #[test]
    fn the_size_bound_is_never_below_the_json_size() {
        for value in ["", "plain", "\u{0}\u{1f}\"\\", "ü€😀"] {
            let metadata = metadata_with_header(&value.repeat(50));
            assert!(metadata_size_bound(&metadata) >= json_len(&metadata));
        }
        let empty = Metadata::default();
        assert!(metadata_size_bound(&empty) >= json_len(&empty));
    }

    #[test]
    fn metadata_is_refused_one_byte_over_its_limit_and_kept_at_it() {
        let stream = StreamId::new("limits-1").unwrap();
        let metadata = metadata_with_header(&"\u{1}".repeat(200));
        let size = json_len(&metadata);
        let at = Limits::default().with_max_metadata_bytes(size);
        assert!(check_metadata(&stream, String::new, &metadata, &at).is_ok());
        let below = Limits::default().with_max_metadata_bytes(size - 1);
        let error = check_metadata(&stream, String::new, &metadata, &below).unwrap_err();
        assert!(matches!(error, Error::InvalidAppend { .. }), "{error:?}");
    }

    #[test]
    fn a_repeated_event_id_is_refused_and_a_lone_event_needs_no_set() {
        let stream = StreamId::new("limits-2").unwrap();
        let event = NewEvent::raw(
            "Added",
            1,
            Payload::encode(&1).unwrap(),
            Metadata::default(),
        );
        let lone = AppendRequest::new(stream.clone(), ExpectedVersion::Any).event(event.clone());
        assert!(lone.validate(&Limits::default()).is_ok());
        let twice = AppendRequest::new(stream, ExpectedVersion::Any).events([event.clone(), event]);
        let error = twice.validate(&Limits::default()).unwrap_err();
        assert!(error.to_string().contains("appears twice"), "{error}");
    }
}
