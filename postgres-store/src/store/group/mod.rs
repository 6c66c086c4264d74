//! Group commit: lone appends that arrive while others are on their way
//! share the next transaction.
//!
//! A lone append ([`EventStore::append`](annals::EventStore::append)) takes
//! one of at most [`Config::with_append_lanes`](crate::Config::with_append_lanes)
//! lanes. One that finds a lane free and nothing queued goes at once, alone,
//! from its caller's task. Appends that arrive while every lane is busy
//! queue; the next lane to come free passes to a task that sends what is
//! queued as one transaction in one round trip ([`write`]: the single events
//! of most commands as one statement, any other append as a statement of
//! its own) and takes the next group when that one has committed and the
//! callers it answered have had their turn to queue again. Under
//! load one statement, one commit, one WAL flush and one round trip thus
//! serve many commands. Lanes are fewer than connections by default (a
//! quarter of the pool): on a 2-vCPU machine 8 writers on two lanes ran
//! more commands than on eight, each append costing the server less.
//!
//! Each append stays atomic and keeps its outcome of its own:
//!
//! - a group never holds two appends of one stream (the later one waits for
//!   the next group), and its statements lock stream rows in stream-id
//!   order, as units do;
//! - the statements write nothing and answer no row for an append whose
//!   expected version does not hold, instead of failing, so that a conflict
//!   leaves the others alone;
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

mod write;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use annals::{AppendOutcome, AppendRequest, Error};
use futures::future::join_all;
use tokio::sync::oneshot;

use super::PgEventStore;
use crate::statements::GROUP_SIZES;

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
    pub(super) fn enter(&self, request: AppendRequest) -> Entry {
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
pub(super) enum Entry {
    /// A lane was free and nothing waited: the caller sends it at once.
    Alone(AppendRequest),
    /// It waits for a group; the caller starts a lane if one was free.
    Queued {
        answer: oneshot::Receiver<Result<AppendOutcome, Error>>,
        start_lane: bool,
    },
}

impl PgEventStore {
    /// The lane of a caller whose append found it free: when dropped, it
    /// passes to a task if appends queued meanwhile.
    pub(super) fn lane_in_use(&self) -> Lane {
        Lane {
            store: self.clone(),
            ended: false,
        }
    }

    /// How many lone appends wait for a lane now (every lane is busy with
    /// appends of its own or a group of others'): a gauge of how far
    /// appends outrun the lanes
    /// ([`Config::with_append_lanes`](crate::Config::with_append_lanes)).
    pub fn appends_waiting(&self) -> usize {
        self.inner.lanes.lock().waiting.len()
    }

    /// Sends groups until the queue is empty.
    pub(super) async fn run_lane(self) {
        let mut lane = Lane {
            store: self,
            ended: false,
        };
        while let Some(group) = lane.store.inner.lanes.next_group() {
            lane.store.commit_group(group).await;
            // The callers just answered are ready to run, most with their
            // next append at hand: letting them queue it before the next
            // group is taken makes that group theirs too, where taking it
            // at once would send the one or two appends that came in
            // meanwhile as a group of their own. With 8 writers on two
            // lanes, a seventh of the appends went in groups of one without
            // this, a thirtieth with it, and the writers ran 10-20% more
            // commands.
            tokio::task::yield_now().await;
        }
        lane.ended = true;
    }

    /// Writes `group` and answers each of its callers (one that stopped
    /// waiting is not answered).
    async fn commit_group(&self, mut group: Vec<Waiting>) {
        if group.len() == 1 {
            let Waiting { request, reply } = group.remove(0);
            let _ = reply.send(self.append_alone(&request).await);
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
            let _ = reply.send(self.append_alone(&request).await);
        }))
        .await;
    }
}

/// A lane in use. Unless it ended by finding the queue empty, dropping it
/// frees its slot and starts a lane task for the appends that wait: after a
/// caller's own append, and after a lane task panicked (the callers of its
/// group see their replies dropped) or was dropped with its runtime.
pub(super) struct Lane {
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
            runtime.spawn(self.store.clone().run_lane());
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
