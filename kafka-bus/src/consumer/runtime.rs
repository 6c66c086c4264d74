//! What every part of a running consumer shares: its name, inbox, handlers,
//! policies and dead-letter producer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use annals::Inbox;

use super::dead_letter::DeadLetterSink;
use super::monitor::Monitor;
use super::policy::{FailurePolicy, UnknownTypes};
use super::routes::Routes;

/// How a consumer runs, as set on its builder.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) failure: FailurePolicy,
    pub(crate) unknown_types: UnknownTypes,
    pub(crate) dead_letter_suffix: String,
    pub(crate) queue_capacity: usize,
    pub(crate) max_batch: usize,
    pub(crate) max_kept: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) inbox_retention: Option<Duration>,
    pub(crate) prune_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            failure: FailurePolicy::default(),
            unknown_types: UnknownTypes::default(),
            dead_letter_suffix: ".dlq".to_owned(),
            queue_capacity: 1000,
            max_batch: 100,
            max_kept: 10_000,
            commit_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            inbox_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// The parts of a consumer its workers and its polling thread share.
pub(crate) struct Runtime<I: Inbox> {
    pub(crate) name: String,
    pub(crate) inbox: I,
    pub(crate) routes: Routes<I::Tx>,
    pub(crate) options: Options,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink>,
    pub(crate) monitor: Arc<Monitor>,
}

impl<I: Inbox> fmt::Debug for Runtime<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
