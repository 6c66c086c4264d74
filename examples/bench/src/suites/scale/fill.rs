//! How the scale suite's stores are written: blocks of 100,020 events
//! through the store's batched append, in the same shape in the filled
//! store and in the empty one.
//!
//! A block holds 10,000 short streams of 9 events (one append each, 100
//! streams to a unit of work), 1,000 events of each of 10 long streams (in
//! appends of 100) and the next appends of the two streams whose loads
//! are measured, which reach 1,000 events at the last block. The filled
//! store is `blocks` such blocks; the empty store holds only the appends
//! of the two measured streams from the blocks before the last, then the
//! last block whole. So the last block, the tail every catch-up reads, is
//! the same in both, and the history is all that differs.

use std::time::Instant;

use annals::{
    AppendRequest, EventStore, ExpectedVersion, GlobalPosition, NewSnapshot, Payload, Repository,
    StreamId,
};
use annals_postgres::PgEventStore;
use futures::future::try_join_all;
use uuid::Uuid;

use crate::suites::append::model::{Account, deposits};

/// Events of the history per block (the short and long streams); the
/// measured streams add 20.
pub(crate) const BLOCK_EVENTS: u64 =
    (SHORT_STREAMS * SHORT_EVENTS + LONG_STREAMS * LONG_EVENTS) as u64;
/// Short streams per block.
const SHORT_STREAMS: usize = 10_000;
/// Events of a short stream, written in one append.
const SHORT_EVENTS: usize = 9;
/// Short streams per unit of work (`append_all`).
const SHORT_STREAMS_PER_UNIT: usize = 100;
/// The long streams.
const LONG_STREAMS: usize = 10;
/// Events of each long stream per block.
const LONG_EVENTS: usize = 1_000;
/// Events per append of a long stream.
const LONG_EVENTS_PER_APPEND: usize = 100;
/// Concurrent writers.
const WRITERS: usize = 4;

/// Events of each measured stream after the last block.
pub(super) const MEASURED_EVENTS: u64 = 1_000;
/// The measured stream with a snapshot has one at the end of the append
/// that reaches this version.
const SNAPSHOT_FROM: u64 = 900;
/// The aggregate loaded without a snapshot.
pub(super) const LOADED: &str = "scale-load";
/// The aggregate loaded from its snapshot.
pub(super) const LOADED_FROM_SNAPSHOT: &str = "scale-load-snapshot";

/// Events of the last block of a store of `blocks` blocks: what a
/// catch-up from just before it reads.
pub(super) fn tail_events(blocks: u64) -> u64 {
    let measured = MEASURED_EVENTS - (blocks - 1) * MEASURED_EVENTS / blocks;
    BLOCK_EVENTS + 2 * measured
}

/// Where a fill ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Filled {
    /// The position of the last event before the last block, in the
    /// global order.
    pub(super) before_tail: GlobalPosition,
    /// The position of the last event, in the global order.
    pub(super) last: GlobalPosition,
    /// The highest `position` column written. Not always that of `last`:
    /// a transaction that took its id first may insert its rows after a
    /// younger one inserted its own.
    pub(super) highest_row: u64,
}

/// What one writer appends in a block, in order.
enum Job {
    /// A unit of work creating short streams.
    Short,
    /// An append to a long stream: the stream and the version before it.
    Long(usize, u64),
    /// The block's append to a measured stream: the aggregate, and
    /// whether it carries a snapshot.
    Measured(&'static str, bool),
}

/// Writes `blocks` blocks into `store`: all of every block when
/// `history`, else only the measured streams' appends of every block but
/// the last, and the last block whole.
pub(super) async fn fill(
    store: &PgEventStore,
    blocks: u64,
    history: bool,
) -> Result<Filled, String> {
    let started = Instant::now();
    let mut filled = Filled {
        before_tail: GlobalPosition::START,
        last: GlobalPosition::START,
        highest_row: 0,
    };
    for block in 0..blocks {
        let whole = history || block + 1 == blocks;
        // Long streams restart in the empty store's only whole block.
        let long_version = if history {
            block * LONG_EVENTS as u64
        } else {
            0
        };
        let (last, highest_row) = write_block(store, block, blocks, whole, long_version).await?;
        filled.last = filled.last.max(last);
        filled.highest_row = filled.highest_row.max(highest_row);
        if block + 1 == blocks {
            return Ok(filled);
        }
        filled.before_tail = filled.last;
        if history && (block + 1).is_multiple_of(10) {
            eprintln!(
                "  filled {} of {blocks} blocks in {:.0} s",
                block + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Err("a store needs at least one block".to_owned())
}

/// One block, by `WRITERS` writers at once; every append of it commits
/// after every append of the blocks before. The position of its last event
/// and the highest row it wrote.
async fn write_block(
    store: &PgEventStore,
    block: u64,
    blocks: u64,
    whole: bool,
    long_version: u64,
) -> Result<(GlobalPosition, u64), String> {
    let mut jobs: Vec<Vec<Job>> = (0..WRITERS).map(|_| Vec::new()).collect();
    jobs[0].push(Job::Measured(LOADED, false));
    jobs[1].push(Job::Measured(LOADED_FROM_SNAPSHOT, true));
    if whole {
        let units = SHORT_STREAMS / SHORT_STREAMS_PER_UNIT;
        let long_appends = LONG_EVENTS / LONG_EVENTS_PER_APPEND;
        // Each writer's units and long appends alternate, so that the long
        // streams' events are spread over the block as a busy service's are.
        for step in 0..units.max(LONG_STREAMS * long_appends) {
            if step < units {
                jobs[step % WRITERS].push(Job::Short);
            }
            let (stream, append) = (step % LONG_STREAMS, step / LONG_STREAMS);
            if append < long_appends {
                let version = long_version + (append * LONG_EVENTS_PER_APPEND) as u64;
                jobs[stream % WRITERS].push(Job::Long(stream, version));
            }
        }
    }
    let writers = jobs.into_iter().map(|jobs| async move {
        let (mut last, mut highest_row) = (GlobalPosition::START, 0);
        for job in jobs {
            let requests = match job {
                Job::Short => short_streams()?,
                Job::Long(stream, version) => vec![long_append(stream, version)?],
                Job::Measured(id, snapshot) => measured_append(id, snapshot, block, blocks)?,
            };
            if requests.is_empty() {
                continue;
            }
            let outcomes = store
                .append_all(requests)
                .await
                .map_err(|error| error.to_string())?;
            for outcome in outcomes {
                last = last.max(outcome.last_position);
                highest_row = highest_row.max(outcome.last_position.sequence);
            }
        }
        Ok::<_, String>((last, highest_row))
    });
    let ends = try_join_all(writers).await?;
    Ok(ends
        .into_iter()
        .fold((GlobalPosition::START, 0), |(last, row), (l, r)| {
            (last.max(l), row.max(r))
        }))
}

fn stream(id: &str) -> Result<StreamId, String> {
    Repository::<Account, PgEventStore>::stream_id(id).map_err(|error| error.to_string())
}

/// A unit of work creating 100 short streams with random ids, each by one
/// command of 9 events.
fn short_streams() -> Result<Vec<AppendRequest>, String> {
    (0..SHORT_STREAMS_PER_UNIT)
        .map(|_| {
            Ok(AppendRequest::new(
                stream(&Uuid::new_v4().to_string())?,
                ExpectedVersion::NoStream,
            )
            .events(deposits(1, SHORT_EVENTS))
            .command_id(Uuid::now_v7()))
        })
        .collect()
}

/// 100 events on long stream `index`, at `version` before.
fn long_append(index: usize, version: u64) -> Result<AppendRequest, String> {
    Ok(AppendRequest::new(
        stream(&format!("scale-long-{index}"))?,
        ExpectedVersion::Exact(version),
    )
    .events(deposits(version as i64 + 1, LONG_EVENTS_PER_APPEND))
    .command_id(Uuid::now_v7()))
}

/// Block `block`'s share of the measured stream `id`: its events are
/// spread evenly over the blocks, and the one with a snapshot gets it on
/// the append that reaches version 900. Empty when the share is.
fn measured_append(
    id: &str,
    snapshot: bool,
    block: u64,
    blocks: u64,
) -> Result<Vec<AppendRequest>, String> {
    let before = block * MEASURED_EVENTS / blocks;
    let after = (block + 1) * MEASURED_EVENTS / blocks;
    if after == before {
        return Ok(Vec::new());
    }
    let mut request = AppendRequest::new(stream(id)?, ExpectedVersion::Exact(before))
        .events(deposits(before as i64 + 1, (after - before) as usize))
        .command_id(Uuid::now_v7());
    if snapshot && before < SNAPSHOT_FROM && SNAPSHOT_FROM <= after {
        // The deposits so far were of 1, 2, ..., `after`.
        let state = Account {
            balance: (after * (after + 1) / 2) as i64,
            deposits: after,
        };
        request = request.snapshot(NewSnapshot {
            state_version: <Account as annals::Aggregate>::SNAPSHOT_VERSION,
            state: Payload::encode(&state).map_err(|error| error.to_string())?,
        });
    }
    Ok(vec![request])
}
