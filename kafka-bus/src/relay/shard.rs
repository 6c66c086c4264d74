//! One shard's task: wait for its lease, lead it (sessions of publishing)
//! until the lease is lost or the relay stops, and start over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{GlobalPosition, InFlight, OutboxShard, OutboxSource};
use tokio::sync::watch;

use super::backoff::Backoff;
use super::housekeeping::Housekeeping;
use super::metrics::ShardMetrics;
use super::producer::ProducerSession;
use super::session::{self, Session, SessionEnd};
use super::settings::RelaySettings;
use super::status::{ShardRole, StatusCell};

/// Tells the shard tasks to stop gracefully.
#[derive(Debug, Clone)]
pub(super) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    pub(super) fn new(receiver: watch::Receiver<bool>) -> Self {
        StopSignal(receiver)
    }

    pub(super) fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopping was asked for (or the handle is gone).
    pub(super) async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration`; returns `false` when stopping cut it short.
    pub(super) async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.stopped() => false,
        }
    }
}

/// What one shard task works with.
#[derive(Debug)]
pub(super) struct ShardContext<S> {
    pub(super) source: S,
    pub(super) settings: Arc<RelaySettings>,
    pub(super) shard: OutboxShard,
    pub(super) status: StatusCell,
    pub(super) metrics: ShardMetrics,
}

/// How far the shard got: what is done (acked or parked, in a contiguous
/// prefix) and what the saved checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) done_through: GlobalPosition,
    pub(super) saved: GlobalPosition,
}

/// Why leading a shard ended.
enum Led {
    Stopped,
    LeaseLost,
}

/// Runs the shard until the relay stops.
pub(super) async fn run<S: OutboxSource>(context: ShardContext<S>, mut stop: StopSignal) {
    let settings = &context.settings;
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    while !stop.is_stopping() {
        context.status.set_role(ShardRole::Standby);
        let acquired = tokio::select! {
            acquired = context.source.acquire(&settings.name, context.shard) => acquired,
            () = stop.stopped() => break,
        };
        let lease = match acquired {
            Ok(lease) => lease,
            Err(error) => {
                tracing::warn!(relay = %settings.name, shard = %context.shard, %error,
                    "cannot take the shard's lease; retrying");
                context.status.set_error(Some(error.to_string()));
                stop.sleep(backoff.next_wait()).await;
                continue;
            }
        };
        backoff.reset();
        tracing::info!(relay = %settings.name, shard = %context.shard, "leading the shard");
        match lead(&context, &lease, &mut stop).await {
            Led::Stopped => break,
            Led::LeaseLost => {
                tracing::warn!(relay = %settings.name, shard = %context.shard,
                    "lost the shard's lease; stopped publishing it");
            }
        }
    }
    context.status.set_role(ShardRole::Stopped);
}

/// Leads the shard while the lease holds: waits out the takeover grace when
/// an earlier holder may have records in flight, records that this one may
/// have some, then runs producer sessions one after the other; records that
/// nothing is in flight when it stops with everything acknowledged.
async fn lead<S: OutboxSource>(
    context: &ShardContext<S>,
    lease: &S::Lease,
    stop: &mut StopSignal,
) -> Led {
    let settings = &context.settings;
    context.status.set_role(ShardRole::Starting);
    let Some(earlier) = with_store(
        context,
        lease,
        stop,
        "reading what may be in flight",
        || context.source.in_flight(&settings.name, context.shard),
    )
    .await
    else {
        return gone(stop);
    };
    // A relay that crashed or lost this lease may still have sends in
    // flight: it goes on sending until it notices the loss (the store's
    // lease loss bound), and each send lands or fails within
    // message.timeout.ms. Recovery reads the partitions after that, so that
    // it sees them. Where no earlier holder can have anything in flight
    // there is nothing to wait for, and nothing past the checkpoint for the
    // first session to look for in the partitions either.
    let mut trusted_checkpoint = earlier != InFlight::Possible;
    if earlier == InFlight::Possible {
        tracing::info!(relay = %settings.name, shard = %context.shard,
            grace = ?settings.takeover_grace,
            "an earlier holder may have records in flight; waiting for them to land or fail");
        if !stop.sleep(settings.takeover_grace).await {
            return Led::Stopped;
        }
    }
    // Before anything is sent: a holder that crashes from here on leaves
    // its successor waiting.
    if with_store(
        context,
        lease,
        stop,
        "recording that records may be in flight",
        || {
            context
                .source
                .set_in_flight(lease, &settings.name, context.shard, true)
        },
    )
    .await
    .is_none()
    {
        return gone(stop);
    }
    let Some(checkpoint) = with_store(context, lease, stop, "reading the checkpoint", || {
        context.source.checkpoint(&settings.name, context.shard)
    })
    .await
    else {
        return gone(stop);
    };
    let start = checkpoint.unwrap_or(GlobalPosition::START);
    let mut progress = Progress {
        done_through: start,
        saved: start,
    };
    context.status.update(|status| {
        status.last_published = Some(start);
        status.checkpoint = checkpoint;
    });
    let (progress_sender, progress_receiver) = watch::channel(progress);
    let _housekeeping = Housekeeping::spawn(context, progress_receiver);
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    // After a session ended abnormally, the next waits until this instant so
    // that whatever the broker had still received from the abandoned
    // producer has landed before recovery reads the partitions.
    let mut settle_until: Option<Instant> = None;
    // The next session's read-ahead, started before its producer connects
    // and kept while the brokers do not answer (the progress it reads from
    // does not move meanwhile), so that an outage does not reread the page.
    let mut next_reader = None;
    loop {
        if stop.is_stopping() {
            return Led::Stopped;
        }
        let reader = next_reader
            .take()
            .unwrap_or_else(|| session::read_ahead(context, progress));
        let config = settings.producer_config(context.shard);
        let connected = ProducerSession::connect(
            config,
            &settings.name,
            settings.transactional,
            settings.broker_timeout,
        )
        .await;
        let producer = match connected {
            Ok(producer) => producer,
            Err(error) => {
                context.status.set_role(ShardRole::BackingOff);
                context
                    .status
                    .set_error(Some(format!("connecting to the brokers: {error}")));
                tracing::warn!(relay = %settings.name, shard = %context.shard, %error,
                    "the brokers do not answer; backing off");
                next_reader = Some(reader);
                if !stop.sleep(backoff.next_wait()).await {
                    return Led::Stopped;
                }
                continue;
            }
        };
        if let Some(until) = settle_until.take() {
            let left = until.saturating_duration_since(Instant::now());
            if !stop.sleep(left).await {
                producer.close().await;
                return Led::Stopped;
            }
        }
        context.status.set_role(ShardRole::Publishing);
        context.status.update(|status| status.sessions += 1);
        context.metrics.recoveries.increment(1);
        let session = Session::new(
            context,
            lease,
            producer,
            reader,
            progress,
            &progress_sender,
            stop,
        );
        // Only the first session after a shard that nothing can have been
        // published in past its checkpoint: after an abandoned producer of
        // its own, what landed must be read.
        let session = if trusted_checkpoint {
            trusted_checkpoint = false;
            session.without_recovery()
        } else {
            session
        };
        let (end, reached, flushed) = session.run().await;
        let advanced = reached.done_through > progress.done_through;
        progress = reached;
        match end {
            SessionEnd::Stopped => {
                if flushed && progress.saved == progress.done_through {
                    // Everything sent was acknowledged and is under the
                    // saved checkpoint, and the producer is closed: the next
                    // holder need neither wait nor read the partitions. Best
                    // effort; if it is not recorded, the next holder waits.
                    if let Err(error) = context
                        .source
                        .set_in_flight(lease, &settings.name, context.shard, false)
                        .await
                    {
                        tracing::warn!(relay = %settings.name, shard = %context.shard, %error,
                            "could not record that nothing is in flight; the next holder will wait");
                    }
                }
                return Led::Stopped;
            }
            SessionEnd::LeaseLost => return Led::LeaseLost,
            SessionEnd::Broken(reason) => {
                tracing::warn!(relay = %settings.name, shard = %context.shard, %reason,
                    "producer session ended; recovering with a new producer");
                context.status.set_role(ShardRole::BackingOff);
                context.status.set_error(Some(reason));
                settle_until = Some(Instant::now() + settings.settle_grace);
                if advanced {
                    backoff.reset();
                }
                if !stop.sleep(backoff.next_wait()).await {
                    return Led::Stopped;
                }
            }
        }
    }
}

/// Why leading ended when a store call gave up: stopping, or the lease.
fn gone(stop: &StopSignal) -> Led {
    if stop.is_stopping() {
        Led::Stopped
    } else {
        Led::LeaseLost
    }
}

/// Runs `call` against the store, retried with backoff while it fails;
/// `None` when stopping or the lease was lost meanwhile.
async fn with_store<S, T, F, Fut>(
    context: &ShardContext<S>,
    lease: &S::Lease,
    stop: &mut StopSignal,
    doing: &str,
    mut call: F,
) -> Option<T>
where
    S: OutboxSource,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, annals::Error>>,
{
    let settings = &context.settings;
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(relay = %settings.name, shard = %context.shard, %error,
                    "{doing} failed; retrying");
                context.status.set_error(Some(format!("{doing}: {error}")));
                if error.is_lease_lost()
                    || !context.source.is_held(lease)
                    || !stop.sleep(backoff.next_wait()).await
                {
                    return None;
                }
            }
        }
    }
}
