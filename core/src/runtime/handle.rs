//! The one handle of every background worker: its status, waiting for a
//! condition, a graceful stop, an abort.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// How long [`WorkerHandle::abort`] waits for a worker's tasks to end.
const ABORT_WAIT: Duration = Duration::from_secs(10);

/// How often a status computed on demand is looked at while waiting.
const STATUS_POLL: Duration = Duration::from_millis(10);

type AbortHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Where a handle reads its worker's status.
enum StatusFeed<S> {
    /// Published by the worker whenever it changes.
    Watched(watch::Receiver<S>),
    /// Computed when asked.
    Computed(Arc<dyn Fn() -> S + Send + Sync>),
}

/// A running background worker: a projection runner, an outbox relay, a
/// consumer, a saga runner or timer. Every worker of annals is started by a
/// builder's `start()` and returns one of these.
///
/// - [`status`](WorkerHandle::status): what the worker is doing now;
/// - [`wait_until`](WorkerHandle::wait_until): wait for a condition on the
///   status, with a deadline;
/// - [`stop`](WorkerHandle::stop): graceful, the worker finishes or hands
///   back the work in hand, saves its progress and releases its leases;
/// - [`abort`](WorkerHandle::abort): at once, as a crash would, for tests
///   of recovery and for a service that must go down now.
///
/// Dropping the handle stops the worker gracefully in the background.
///
/// `C` is what a worker kind offers beyond that (replaying a projection's
/// parked events, waiting until a relay's outbox is drained); the handle
/// dereferences to it.
///
/// Worker implementations build handles with [`WorkerHandle::watched`] or
/// [`WorkerHandle::computed`], adding their tasks with
/// [`WorkerHandle::with_task`]:
///
/// ```
/// use std::time::Duration;
///
/// use annals::WorkerHandle;
/// use annals::tokio_util::sync::CancellationToken;
/// use tokio::sync::watch;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let shutdown = CancellationToken::new();
/// let (status, watched) = watch::channel(0_u64);
/// let token = shutdown.clone();
/// let task = tokio::spawn(async move {
///     for done in 1.. {
///         status.send_replace(done);
///         tokio::select! {
///             _ = token.cancelled() => return Ok(()),
///             _ = tokio::time::sleep(Duration::from_millis(1)) => {}
///         }
///     }
///     Ok(())
/// });
/// let worker = WorkerHandle::watched("counter", shutdown, watched).with_task(task);
///
/// let status = worker.wait_until(Duration::from_secs(5), |done| *done >= 3).await?;
/// assert!(status >= 3);
/// worker.stop(Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
pub struct WorkerHandle<S, C = ()> {
    worker: Worker<S>,
    control: C,
}

/// The common part of a handle; cancels the worker's shutdown token when
/// dropped, so that a dropped handle stops its worker.
struct Worker<S> {
    name: String,
    status: StatusFeed<S>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), Error>>>,
    on_abort: Option<AbortHook>,
}

impl<S> Drop for Worker<S> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl<S, C> fmt::Debug for WorkerHandle<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("name", &self.worker.name)
            .field("tasks", &self.worker.tasks.len())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> WorkerHandle<S> {
    /// A handle of worker `name`, which stops gracefully when `shutdown` is
    /// cancelled and publishes its status on `status`.
    pub fn watched(
        name: impl Into<String>,
        shutdown: CancellationToken,
        status: watch::Receiver<S>,
    ) -> Self {
        Self::with_feed(name.into(), shutdown, StatusFeed::Watched(status))
    }

    /// A handle of worker `name`, which stops gracefully when `shutdown` is
    /// cancelled and whose status `status` computes when asked.
    pub fn computed(
        name: impl Into<String>,
        shutdown: CancellationToken,
        status: impl Fn() -> S + Send + Sync + 'static,
    ) -> Self {
        Self::with_feed(
            name.into(),
            shutdown,
            StatusFeed::Computed(Arc::new(status)),
        )
    }

    fn with_feed(name: String, shutdown: CancellationToken, status: StatusFeed<S>) -> Self {
        WorkerHandle {
            worker: Worker {
                name,
                status,
                shutdown,
                tasks: Vec::new(),
                on_abort: None,
            },
            control: (),
        }
    }
}

impl<S, C> WorkerHandle<S, C> {
    /// Adds a task of the worker: the worker has ended when all its tasks
    /// have, and [`stop`](WorkerHandle::stop) reports the first error one
    /// of them returned.
    pub fn with_task(mut self, task: JoinHandle<Result<(), Error>>) -> Self {
        self.worker.tasks.push(task);
        self
    }

    /// Sets what [`abort`](WorkerHandle::abort) does before it aborts the
    /// tasks, for work that a task abort cannot reach (a thread of the
    /// worker's own); the future is awaited for up to ten seconds.
    pub fn on_abort<F>(mut self, hook: impl FnOnce() -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.worker.on_abort = Some(Box::new(move || Box::pin(hook())));
        self
    }

    /// Gives the handle what the worker kind offers beyond the common
    /// operations; the handle dereferences to it.
    pub fn with_control<D>(self, control: D) -> WorkerHandle<S, D> {
        WorkerHandle {
            worker: self.worker,
            control,
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.worker.name
    }

    /// Whether every task of the worker has ended.
    pub fn is_finished(&self) -> bool {
        self.worker.tasks.iter().all(JoinHandle::is_finished)
    }
}

impl<S: Clone + fmt::Debug + Send + Sync + 'static, C> WorkerHandle<S, C> {
    /// What the worker is doing now.
    pub fn status(&self) -> S {
        match &self.worker.status {
            StatusFeed::Watched(receiver) => receiver.borrow().clone(),
            StatusFeed::Computed(read) => read(),
        }
    }

    /// Waits until the status satisfies `condition` and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `timeout` passes first, and
    /// [`Error::WorkerEnded`] when the worker ends first; both carry the
    /// last status.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&S) -> bool,
    ) -> Result<S, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watched = match &self.worker.status {
            StatusFeed::Watched(receiver) => Some(receiver.clone()),
            StatusFeed::Computed(_) => None,
        };
        loop {
            let finished = self.is_finished() && !self.worker.tasks.is_empty();
            let status = self.status();
            if condition(&status) {
                return Ok(status);
            }
            if finished {
                return Err(Error::WorkerEnded {
                    worker: self.worker.name.clone(),
                    reason: format!("it ended before the condition held; last status: {status:?}"),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.worker.timeout(
                    "reach the condition waited for",
                    timeout,
                    &status,
                ));
            }
            match &mut watched {
                // A task's end is not published on the status channel, so a
                // watched status is looked at again now and then too.
                Some(receiver) => {
                    let next = deadline.min(tokio::time::Instant::now() + STATUS_POLL * 10);
                    receiver.mark_unchanged();
                    let _ = tokio::time::timeout_at(next, receiver.changed()).await;
                }
                None => {
                    let next = deadline.min(tokio::time::Instant::now() + STATUS_POLL);
                    tokio::time::sleep_until(next).await;
                }
            }
        }
    }

    /// Stops gracefully: the worker finishes or hands back the work in hand,
    /// saves its progress and releases what it holds, so that another
    /// instance can take over. Returns the final status.
    ///
    /// # Errors
    ///
    /// The first error a task of the worker ended with;
    /// [`Error::WorkerEnded`] when a task panicked; [`Error::Timeout`] when
    /// the worker is still stopping after `timeout` (it goes on stopping in
    /// the background).
    pub async fn stop(mut self, timeout: Duration) -> Result<S, Error> {
        self.worker.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first_error = None;
        for task in std::mem::take(&mut self.worker.tasks) {
            let Ok(ended) = tokio::time::timeout_at(deadline, task).await else {
                return Err(self.worker.timeout("stop", timeout, &self.status()));
            };
            let error = match ended {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(join) if join.is_cancelled() => None,
                Err(join) => Some(Error::WorkerEnded {
                    worker: self.worker.name.clone(),
                    reason: format!("a task panicked: {}", panic_message(join)),
                }),
            };
            first_error = first_error.or(error);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(self.status()),
        }
    }

    /// Stops at once, as a crash would: work in hand is abandoned
    /// uncommitted, nothing more is saved, and what the worker holds is
    /// released the way a crash releases it. Returns the status once the
    /// worker's tasks are gone (waiting at most ten seconds).
    pub async fn abort(mut self) -> S {
        if let Some(hook) = self.worker.on_abort.take() {
            let _ = tokio::time::timeout(ABORT_WAIT, hook()).await;
        }
        let tasks = std::mem::take(&mut self.worker.tasks);
        for task in &tasks {
            task.abort();
        }
        let _ = tokio::time::timeout(ABORT_WAIT, futures::future::join_all(tasks)).await;
        self.status()
    }
}

impl<S: fmt::Debug> Worker<S> {
    fn timeout(&self, what: &str, waited: Duration, status: &S) -> Error {
        Error::Timeout {
            worker: self.name.clone(),
            what: what.to_owned(),
            waited,
            status: format!("{status:?}"),
        }
    }
}

impl<S, C> Deref for WorkerHandle<S, C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.control
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
