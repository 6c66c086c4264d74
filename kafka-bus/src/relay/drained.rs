//! Whether a relay's outbox is drained, read from the store: every record
//! written is published and under a saved checkpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use annals::{GlobalPosition, OutboxShard, OutboxSource};

/// Counts, when called, the records waiting after the relay's saved
/// checkpoints in all its shards; kept by the handle, which knows neither
/// the store's type nor the shards.
pub(super) type WaitingCount =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<u64, annals::Error>> + Send>> + Send + Sync>;

/// The count of `relay`'s records waiting in `shards` of `source`.
pub(super) fn waiting_count<S: OutboxSource>(
    source: S,
    relay: String,
    shards: Vec<OutboxShard>,
) -> WaitingCount {
    let shards: Arc<[OutboxShard]> = shards.into();
    Arc::new(move || {
        let (source, relay, shards) = (source.clone(), relay.clone(), Arc::clone(&shards));
        Box::pin(async move { waiting(&source, &relay, &shards).await })
    })
}

/// Records written to `shards` and not under `relay`'s saved checkpoints
/// (also those the store's horizon still hides), read from the store now.
pub(super) async fn waiting<S: OutboxSource>(
    source: &S,
    relay: &str,
    shards: &[OutboxShard],
) -> Result<u64, annals::Error> {
    let mut waiting = 0;
    for shard in shards {
        let checkpoint = source
            .checkpoint(relay, *shard)
            .await?
            .unwrap_or(GlobalPosition::START);
        waiting += source.backlog(*shard, checkpoint).await?.messages;
    }
    Ok(waiting)
}
