//! Group commit: lone appends that arrive while others are on their way
//! share the next transaction.
//!
//! A lone append ([`EventStore::append`](annals::EventStore::append)) takes
//! one of at most [`Config::with_append_lanes`](crate::Config::with_append_lanes)
//! lanes. One that finds a lane free and nothing queued goes at once, alone,
//! from its caller's task. Appends that arrive while every lane is busy
//! queue; the next lane to come free passes to a task that sends what is
//! queued as one transaction (`BEGIN`, one statement per append, `COMMIT`,
//! in one round trip) and takes the next group when that one has
//! committed. Under load one commit, one WAL flush and one round trip thus
//! serve many commands.
//!
//! Each append stays atomic and keeps its outcome of its own:
//!
//! - a group never holds two appends of one stream (the later one waits for
//!   the next group), and its statements lock stream rows in stream-id
//!   order, as units do;
//! - the statements answer no row when their expected version does not
//!   hold, instead of failing, so that a conflict leaves the others alone;
//!   such an append, and every append of a group that the server rolled back
//!   (one statement failed, say on a duplicate event id), goes again alone,
//!   by the path a lone append takes when no other is waiting, which says
//!   why it failed or finds the first outcome of a command that ran already;
//! - when the connection fails before the group's outcome is known, every
//!   append of the group fails with the same retriable error, as a lone
//!   append would (a command id makes trying again safe).
//!
//! Queued appends are sent by spawned tasks, so that an append goes on when
//! its caller stops waiting for it, as it would once sent, and a caller
//! that gives up never takes the others of its group with it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use annals::{AppendOutcome, AppendRequest, Error, GlobalPosition};
use futures::future::join_all;
use tokio::sync::oneshot;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PgEventStore;
use super::append::{paired, prepare_calls, record, send_transaction, single};
use super::call::{AppendCall, GROUP_PADDING};
use super::rows;
use crate::error::{corrupt, is_transient};
use crate::schema::{GROUP_COLUMNS, GROUP_SIZES, Refusal};

/// The most appends one group holds: as many as the largest group
/// statement takes.
const MAX_APPENDS: usize = GROUP_SIZES[GROUP_SIZES.len() - 1];
/// A group takes no further append once it holds this many events (an
/// append larger than that goes alone).
const MAX_EVENTS: usize = 2_000;

/// The queue of lone appends and the lanes that send them.
pub(super) struct Lanes {
    max: usize,
    state: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Lanes running now, at most `max`.
    active: usize,
}

/// An append and where its outcome goes.
struct Waiting {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendOutcome, Error>>,
}

impl Lanes {
    pub(super) fn new(max: usize) -> Self {
        Lanes {
            max: max.max(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent after every statement that changes it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a free lane for `request` alone when nothing waits; else
    /// queues it, with a free lane to start if there is one.
    fn enter(&self, request: AppendRequest) -> Entry {
        let mut queue = self.lock();
        let free = queue.active < self.max;
        if free {
            queue.active += 1;
        }
        if free && queue.waiting.is_empty() {
            return Entry::Alone(request);
        }
        let (reply, answer) = oneshot::channel();
        queue.waiting.push_back(Waiting { request, reply });
        Entry::Queued {
            answer,
            start_lane: free,
        }
    }

    /// The next group, in queue order, or `None` when nothing waits (the
    /// lane ends then; its slot is free again).
    fn next_group(&self) -> Option<Vec<Waiting>> {
        let mut queue = self.lock();
        if queue.waiting.is_empty() {
            queue.active -= 1;
            return None;
        }
        Some(take_group(&mut queue.waiting))
    }

    /// Frees the slot of a lane that ended before the queue was empty.
    fn release(&self) {
        self.lock().active -= 1;
    }

    /// Takes a free slot for a new lane if appends wait.
    fn claim_for_waiting(&self) -> bool {
        let mut queue = self.lock();
        let claim = !queue.waiting.is_empty() && queue.active < self.max;
        if claim {
            queue.active += 1;
        }
        claim
    }
}

/// Takes the next group from the front of `waiting`: appends in queue
/// order, skipping (and leaving queued, in order) any whose stream is in the
/// group already, up to [`MAX_APPENDS`] appends and [`MAX_EVENTS`] events.
fn take_group(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut group: Vec<Waiting> = Vec::new();
    let mut events = 0;
    let mut left = VecDeque::new();
    while let Some(next) = waiting.pop_front() {
        let full = group.len() == MAX_APPENDS || (!group.is_empty() && events >= MAX_EVENTS);
        if full {
            waiting.push_front(next);
            break;
        }
        let stream = &next.request.stream;
        if group.iter().any(|taken| taken.request.stream == *stream) {
            left.push_back(next);
        } else {
            events += next.request.events.len();
            group.push(next);
        }
    }
    while let Some(skipped) = left.pop_back() {
        waiting.push_front(skipped);
    }
    group
}

/// Where a lone append goes.
enum Entry {
    /// A lane was free and nothing waited: the caller sends it at once.
    Alone(AppendRequest),
    /// It waits for a group; the caller starts a lane if one was free.
    Queued {
        answer: oneshot::Receiver<Result<AppendOutcome, Error>>,
        start_lane: bool,
    },
}

/// Why a group's transaction gave no outcomes.
enum GroupFailure {
    /// Nothing was written: every append goes again alone.
    RolledBack,
    /// The outcome is unknown (the connection failed): every append fails
    /// with this error.
    Unknown(Arc<tokio_postgres::Error>),
    /// The group was written but its answer does not decode: every append
    /// fails, as a lone append whose answer does not decode would.
    Unreadable(Error),
}

impl PgEventStore {
    /// A lone append, in a group with whatever else waits.
    pub(super) async fn append_lone(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        let (answer, start_lane) = match self.inner.lanes.enter(request) {
            Entry::Alone(request) => {
                // The caller is the lane while its append runs; the lane
                // passes to a task when appends queued meanwhile (also when
                // the caller stops waiting).
                let _lane = Lane {
                    store: self.clone(),
                    ended: false,
                };
                return self.append_one(&request).await;
            }
            Entry::Queued { answer, start_lane } => (answer, start_lane),
        };
        if start_lane {
            tokio::spawn(self.clone().lane());
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::backend(
                "postgres",
                true,
                "the append's lane ended before it had an outcome",
            ))
        })
    }

    /// How many lone appends wait for a lane now (every lane is busy with
    /// appends of its own or a group of others'): a gauge of how far
    /// appends outrun the lanes
    /// ([`Config::with_append_lanes`](crate::Config::with_append_lanes)).
    pub fn appends_waiting(&self) -> usize {
        self.inner.lanes.lock().waiting.len()
    }

    /// Sends groups until the queue is empty.
    async fn lane(self) {
        let mut lane = Lane {
            store: self,
            ended: false,
        };
        while let Some(group) = lane.store.inner.lanes.next_group() {
            lane.store.commit_group(group).await;
        }
        lane.ended = true;
    }

    /// Writes `group` and answers each of its callers (one that stopped
    /// waiting is not answered).
    async fn commit_group(&self, mut group: Vec<Waiting>) {
        if group.len() == 1 {
            let Waiting { request, reply } = group.remove(0);
            let _ = reply.send(self.append_one(&request).await);
            return;
        }
        let (requests, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|waiting| (waiting.request, waiting.reply))
            .unzip();
        let outcomes = self.append_group(&requests).await;
        let mut alone = Vec::new();
        for ((request, reply), outcome) in requests.into_iter().zip(replies).zip(outcomes) {
            match outcome {
                Some(outcome) => {
                    let _ = reply.send(outcome);
                }
                None => alone.push((request, reply)),
            }
        }
        join_all(alone.into_iter().map(|(request, reply)| async move {
            let _ = reply.send(self.append_one(&request).await);
        }))
        .await;
    }

    /// The outcome of each of `requests` written together, or `None` for
    /// one that must go again alone.
    async fn append_group(
        &self,
        requests: &[AppendRequest],
    ) -> Vec<Option<Result<AppendOutcome, Error>>> {
        let started = Instant::now();
        // Groups of more than one append.
        metrics::histogram!("annals_append_group_size", "backend" => "postgres")
            .record(requests.len() as f64);
        let channel = self.notify_channel();
        let mut outcomes: Vec<Option<Result<AppendOutcome, Error>>> =
            requests.iter().map(|_| None).collect();
        let mut calls = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            match AppendCall::checked(request, &self.inner.limits, channel) {
                Ok(call) => calls.push((index, call)),
                Err(error) => outcomes[index] = Some(Err(error)),
            }
        }
        if calls.is_empty() {
            return outcomes;
        }
        // The order in which the statements lock stream rows.
        calls.sort_by(|(_, a), (_, b)| a.request.stream.cmp(&b.request.stream));
        let calls: Vec<(usize, &AppendCall<'_>)> =
            calls.iter().map(|(index, call)| (*index, call)).collect();
        let written = match self.attempt_group(&calls).await {
            Ok(written) => written,
            Err(GroupFailure::RolledBack) => return outcomes,
            Err(GroupFailure::Unknown(error)) => {
                let retriable = is_transient(&error);
                for (index, _) in &calls {
                    record(started, "error");
                    outcomes[*index] = Some(Err(Error::backend(
                        "postgres",
                        retriable,
                        Arc::clone(&error),
                    )));
                }
                return outcomes;
            }
            Err(GroupFailure::Unreadable(error)) => {
                for (index, _) in &calls {
                    record(started, "error");
                    outcomes[*index] = Some(Err(corrupt(error.to_string())));
                }
                return outcomes;
            }
        };
        let mut newest = None;
        for ((index, call), written) in calls.into_iter().zip(written) {
            let outcome = match written {
                None => continue,
                Some(Written::Row(row)) => {
                    rows::append_outcome(&row, &call.request.stream, call.written_version())
                }
                Some(Written::Joined(position)) => joined_outcome(call, position),
            };
            if let Ok(outcome) = &outcome {
                newest = newest.max(Some(outcome.last_position.commit));
                record(started, "ok");
            }
            outcomes[index] = Some(outcome);
        }
        if let Some(commit) = newest {
            self.appended(commit);
        }
        outcomes
    }

    /// Writes `calls` in one round trip: those that can join one group
    /// statement (`sql/append/write_group.sql`), when two or more can, and a
    /// statement for each of the others; in autocommit when the group
    /// statement is all there is, else between `BEGIN` and `COMMIT`. What
    /// each call wrote, `None` for one whose stream row could not be
    /// written.
    async fn attempt_group(
        &self,
        calls: &[(usize, &AppendCall<'_>)],
    ) -> Result<Vec<Option<Written>>, GroupFailure> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|_| GroupFailure::RolledBack)?;
        let failed = |error: tokio_postgres::Error| {
            if error.as_db_error().is_some() {
                GroupFailure::RolledBack
            } else {
                GroupFailure::Unknown(Arc::new(error))
            }
        };
        let mut joining = Vec::new();
        let mut separate = Vec::new();
        for (place, (_, call)) in calls.iter().enumerate() {
            match call.group_row() {
                Some(row) => joining.push((place, row)),
                None => separate.push(place),
            }
        }
        let group = match self.inner.sql.append.group(joining.len()) {
            Some(group) if joining.len() > 1 => Some(group),
            _ => {
                separate.extend(joining.drain(..).map(|(place, _)| place));
                separate.sort_unstable();
                None
            }
        };
        let mut statements = Vec::with_capacity(separate.len() + 1);
        let mut params: Vec<Vec<&(dyn ToSql + Sync)>> = Vec::with_capacity(separate.len() + 1);
        if let Some((sql, number, size)) = group {
            let statement = self
                .inner
                .prepared
                .statement(&client, number, sql, &[])
                .await
                .map_err(failed)?;
            let mut values = Vec::with_capacity(size * GROUP_COLUMNS);
            for (_, row) in &joining {
                values.extend_from_slice(row);
            }
            for _ in joining.len()..size {
                values.extend_from_slice(&GROUP_PADDING);
            }
            statements.push(statement);
            params.push(values);
        }
        let alone: Vec<&AppendCall<'_>> = separate.iter().map(|&place| calls[place].1).collect();
        statements.extend(
            prepare_calls(&client, &alone, &self.inner.sql.append, Refusal::After)
                .await
                .map_err(failed)?,
        );
        params.extend(alone.iter().map(|call| call.params()));
        let sent = paired(&statements, &params);
        let mut answers = if let [only] = &sent[..]
            && group.is_some()
        {
            // One statement is atomic by itself.
            vec![client.query(only.0, only.1).await]
        } else {
            let transaction = send_transaction(&client, &sent).await.map_err(failed)?;
            transaction.begun.map_err(failed)?;
            let answers = transaction.statements;
            transaction.committed.map_err(failed)?;
            answers
        }
        .into_iter();
        let mut written: Vec<Option<Written>> = calls.iter().map(|_| None).collect();
        if group.is_some() {
            let rows = answers
                .next()
                .expect("the group statement was sent")
                .map_err(failed)?;
            for row in rows {
                let (stream, position) =
                    rows::joined_append(&row).map_err(GroupFailure::Unreadable)?;
                let place = joining
                    .iter()
                    .map(|&(place, _)| place)
                    .find(|&place| calls[place].1.request.stream.as_str() == stream);
                if let Some(place) = place {
                    written[place] = Some(Written::Joined(position));
                }
            }
        }
        for (place, answer) in separate.into_iter().zip(answers) {
            written[place] = single(answer).map_err(failed)?.map(Written::Row);
        }
        Ok(written)
    }
}

/// What a group wrote for one of its appends.
enum Written {
    /// The answer of the append's own statement.
    Row(Row),
    /// The global position of its event, written by the group statement.
    Joined(GlobalPosition),
}

/// The outcome of an append whose event the group statement wrote at
/// `position`: the version after the one it expected.
fn joined_outcome(call: &AppendCall<'_>, position: GlobalPosition) -> Result<AppendOutcome, Error> {
    let version = call
        .written_version()
        .ok_or_else(|| corrupt("a grouped append without an exact expected version"))?;
    Ok(AppendOutcome {
        stream: call.request.stream.clone(),
        first_version: version,
        last_version: version,
        last_position: position,
        duplicate: false,
    })
}

/// A lane in use. Unless it ended by finding the queue empty, dropping it
/// frees its slot and starts a lane task for the appends that wait: after a
/// caller's own append, and after a lane task panicked (the callers of its
/// group see their replies dropped) or was dropped with its runtime.
struct Lane {
    store: PgEventStore,
    ended: bool,
}

impl Drop for Lane {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let lanes = &self.store.inner.lanes;
        lanes.release();
        // Without a runtime, the callers waiting are gone with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && lanes.claim_for_waiting()
        {
            runtime.spawn(self.store.clone().lane());
        }
    }
}

#[cfg(test)]
mod tests {
    use annals::{ExpectedVersion, StreamId};

    use super::*;

    fn waiting(stream: &str, events: usize) -> Waiting {
        let mut request = AppendRequest::new(StreamId::new(stream).unwrap(), ExpectedVersion::Any);
        for _ in 0..events {
            request = request.event(annals::NewEvent::raw(
                "Happened",
                1,
                annals::Payload::encode(&0).unwrap(),
                annals::Metadata::default(),
            ));
        }
        Waiting {
            request,
            reply: oneshot::channel().0,
        }
    }

    fn streams(group: &[Waiting]) -> Vec<&str> {
        group
            .iter()
            .map(|waiting| waiting.request.stream.as_str())
            .collect()
    }

    #[test]
    fn a_group_holds_one_append_per_stream_and_leaves_the_rest_in_order() {
        let mut queue: VecDeque<Waiting> = ["a", "b", "a", "c", "b", "a"]
            .into_iter()
            .map(|stream| waiting(stream, 1))
            .collect();
        let first = take_group(&mut queue);
        assert_eq!(streams(&first), ["a", "b", "c"]);
        let second = take_group(&mut queue);
        assert_eq!(streams(&second), ["a", "b"]);
        let third = take_group(&mut queue);
        assert_eq!(streams(&third), ["a"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_group_stops_at_its_size_and_event_limits() {
        let mut queue: VecDeque<Waiting> = (0..MAX_APPENDS + 3)
            .map(|n| waiting(&format!("s-{n}"), 1))
            .collect();
        assert_eq!(take_group(&mut queue).len(), MAX_APPENDS);
        assert_eq!(take_group(&mut queue).len(), 3);

        let mut queue: VecDeque<Waiting> = [MAX_EVENTS + 5, 1, 1]
            .into_iter()
            .enumerate()
            .map(|(n, events)| waiting(&format!("s-{n}"), events))
            .collect();
        assert_eq!(take_group(&mut queue).len(), 1, "a large append goes alone");
        assert_eq!(take_group(&mut queue).len(), 2);
    }
}
