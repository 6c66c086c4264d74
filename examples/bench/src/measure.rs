//! How figures are taken: throughput over a window, a figure and its limit
//! in turns, durations as medians.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::LocalBoxFuture;

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
    let medians = medians_of_all(
        warm_up,
        runs,
        &mut [
            Box::new(|| timed(limit()).boxed_local()),
            Box::new(|| timed(value()).boxed_local()),
        ],
    )
    .await?;
    Ok((medians[0], medians[1]))
}

/// One of several contenders whose durations are compared: each call runs
/// it once and returns how long it took.
pub(crate) type TimedRun<'a> =
    Box<dyn FnMut() -> LocalBoxFuture<'a, Result<Duration, String>> + 'a>;

/// The median durations of `runs` runs of each contender, after `warm_up`
/// unmeasured runs of each, the contenders taking turns, each round
/// starting with the next one (see [`medians`]).
pub(crate) async fn medians_of_all(
    warm_up: usize,
    runs: usize,
    contenders: &mut [TimedRun<'_>],
) -> Result<Vec<Duration>, String> {
    for _ in 0..warm_up {
        for contender in contenders.iter_mut() {
            contender().await?;
        }
    }
    let count = contenders.len();
    let mut durations = vec![Vec::with_capacity(runs); count];
    for round in 0..runs {
        for turn in 0..count {
            let index = (round + turn) % count;
            durations[index].push(contenders[index]().await?);
        }
    }
    Ok(durations.into_iter().map(median_of).collect())
}

/// How long `run` takes.
pub(crate) async fn timed(
    run: impl Future<Output = Result<(), String>>,
) -> Result<Duration, String> {
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
) -> Result<Interleaved, String>
where
    L: FnMut(Window) -> LF,
    LF: Future<Output = f64>,
    V: FnMut(Window) -> VF,
    VF: Future<Output = f64>,
{
    let mut figures = interleaved_all(
        turns,
        &mut [
            Box::new(|window| limit(window).map(Ok).boxed_local()),
            Box::new(|window| value(window).map(Ok).boxed_local()),
        ],
    )
    .await?;
    Ok(figures.remove(0))
}

/// One of several contenders measured in turns: each call runs it for a
/// window and returns its rate.
pub(crate) type WindowRun<'a> =
    Box<dyn FnMut(Window) -> LocalBoxFuture<'a, Result<f64, String>> + 'a>;

/// Measures several contenders in turns (see [`interleaved`]): in each of
/// `turns.pairs` turns every contender runs one window, the first (the
/// limit) first. Returns, for every contender after the first, its mean
/// beside the limit's, and the lowest and highest ratio of one turn.
pub(crate) async fn interleaved_all(
    turns: Turns,
    contenders: &mut [WindowRun<'_>],
) -> Result<Vec<Interleaved>, String> {
    let mut rates = vec![Vec::with_capacity(turns.pairs); contenders.len()];
    for _ in 0..turns.pairs {
        for (contender, rates) in contenders.iter_mut().zip(&mut rates) {
            rates.push(contender(turns.window).await?);
        }
    }
    let pairs = turns.pairs as f64;
    let limits = &rates[0];
    let limit = limits.iter().sum::<f64>() / pairs;
    Ok(rates[1..]
        .iter()
        .map(|values| {
            let ratios = values
                .iter()
                .zip(limits)
                .map(|(value, limit)| value / limit);
            Interleaved {
                limit,
                value: values.iter().sum::<f64>() / pairs,
                lowest_ratio: ratios.clone().fold(f64::INFINITY, f64::min),
                highest_ratio: ratios.fold(0.0, f64::max),
            }
        })
        .collect())
}
