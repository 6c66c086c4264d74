//! How figures are taken: throughput over a window, a figure and its limit
//! in turns, durations as medians.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long writers run before and while they are counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) warm_up: Duration,
    pub(crate) measured: Duration,
}

/// What a writer reports to, and when it stops.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Tally {
    /// Whether the writer should go on.
    pub(crate) fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Counts `units` of finished work.
    pub(crate) fn add(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }
}

/// Units per second that `writers` writers, each the future `writer(index,
/// tally)` makes, finish during the measured part of `window`.
pub(crate) async fn throughput<F, Fut>(writers: usize, window: Window, writer: F) -> f64
where
    F: Fn(usize, Tally) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let tally = Tally {
        done: Arc::new(AtomicU64::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let tasks: Vec<_> = (0..writers)
        .map(|index| tokio::spawn(writer(index, tally.clone())))
        .collect();
    tokio::time::sleep(window.warm_up).await;
    let (before, started) = (tally.done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(window.measured).await;
    let (after, elapsed) = (tally.done.load(Ordering::Relaxed), started.elapsed());
    tally.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("a writer failed: {error}"),
            Err(error) => panic!("a writer panicked: {error}"),
        }
    }
    (after - before) as f64 / elapsed.as_secs_f64()
}

/// The median durations of `runs` runs each of `limit` and `value`, after
/// `warm_up` unmeasured runs of each: the two take turns, each going first
/// in every other round, so that whatever else the machine does during the
/// measurement (autovacuum after the suite's writes, a checkpoint, another
/// tenant of the host) falls on both alike. Returns `(limit, value)`.
pub(crate) async fn medians<L, LFut, V, VFut>(
    warm_up: usize,
    runs: usize,
    mut limit: L,
    mut value: V,
) -> Result<(Duration, Duration), String>
where
    L: FnMut() -> LFut,
    LFut: Future<Output = Result<(), String>>,
    V: FnMut() -> VFut,
    VFut: Future<Output = Result<(), String>>,
{
    for _ in 0..warm_up {
        limit().await?;
        value().await?;
    }
    let mut limits = Vec::with_capacity(runs);
    let mut values = Vec::with_capacity(runs);
    for round in 0..runs {
        if round % 2 == 0 {
            limits.push(timed(limit()).await?);
            values.push(timed(value()).await?);
        } else {
            values.push(timed(value()).await?);
            limits.push(timed(limit()).await?);
        }
    }
    Ok((median_of(limits), median_of(values)))
}

async fn timed(run: impl Future<Output = Result<(), String>>) -> Result<Duration, String> {
    let started = Instant::now();
    run.await?;
    Ok(started.elapsed())
}

fn median_of(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// A figure and its limit measured in turns: `pairs` pairs of windows,
/// the limit's first in each pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Turns {
    pub(crate) pairs: usize,
    pub(crate) window: Window,
}

/// The means of a figure and its limit over the turns, and the lowest and
/// highest ratio of one pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interleaved {
    pub(crate) limit: f64,
    pub(crate) value: f64,
    pub(crate) lowest_ratio: f64,
    pub(crate) highest_ratio: f64,
}

/// Measures `limit` and `value` in short turns. The rate a machine of this
/// kind gives both moves by tens of percent within seconds (the disk's
/// flushes, other guests' CPU), so a few long windows each compare a lucky
/// limit with an unlucky figure or the other way round; turns of a couple of
/// seconds give both the same conditions, and the means over all turns are
/// compared.
pub(crate) async fn interleaved<L, LF, V, VF>(
    turns: Turns,
    mut limit: L,
    mut value: V,
) -> Interleaved
where
    L: FnMut(Window) -> LF,
    LF: Future<Output = f64>,
    V: FnMut(Window) -> VF,
    VF: Future<Output = f64>,
{
    let (mut limits, mut values) = (0.0f64, 0.0f64);
    let (mut lowest_ratio, mut highest_ratio) = (f64::INFINITY, 0.0f64);
    for _ in 0..turns.pairs {
        let pair = (limit(turns.window).await, value(turns.window).await);
        limits += pair.0;
        values += pair.1;
        lowest_ratio = lowest_ratio.min(pair.1 / pair.0);
        highest_ratio = highest_ratio.max(pair.1 / pair.0);
    }
    let pairs = turns.pairs as f64;
    Interleaved {
        limit: limits / pairs,
        value: values / pairs,
        lowest_ratio,
        highest_ratio,
    }
}
