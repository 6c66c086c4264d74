//! Crashes: the relay killed at random points while it publishes, restarted
//! each time, and still every message on the topic exactly once, in order
//! per key.

use std::time::Duration;

use annals_kafka::{RelayHandle, RelayStatus};
use annals_tests::kafka::{brokers, create_topic, unique_topic};

use crate::common::{
    MESSAGE_TIMEOUT, RelayStore, Writer, assert_exactly_once_in_order, for_each_store, relay,
    unique_name, wait_for_status,
};

const MESSAGES: usize = 20_000;
const KILLS: usize = 20;

/// 20,000 messages written at a steady pace while the relay (2 shards, 4
/// partitions) is killed 20 times: its tasks aborted and its producers
/// dropped with whatever they had in flight, each time at a random moment
/// after it resumed publishing, and started again.
async fn twenty_kills_in_twenty_thousand_messages<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-crash");
    create_topic(brokers(), &topic, 4).await;
    let name = unique_name("crash");
    // A killed relay is gone with its producer: only what that producer
    // had in flight can land late, within its delivery timeout, so the
    // lease loss bound of a live holder need not be waited out twenty
    // times (`lease_timing.rs` waits it out).
    let start = || {
        relay(store.outbox(), brokers(), &name)
            .shards(2)
            .takeover_grace(MESSAGE_TIMEOUT)
            .start()
            .unwrap()
    };
    // A kill cycle takes the takeover grace (2 s) plus a moment of
    // publishing: the writing spans about the 20 cycles.
    let writing = Writer::new(store.clone(), &topic, 400).spawn(MESSAGES, 4, Some(400.0));
    let mut relay: RelayHandle = start();
    let mut kill_points = Vec::with_capacity(KILLS);
    for kill in 0..KILLS {
        wait_for_status(
            &relay,
            Duration::from_secs(30),
            "the restarted relay publishes",
            |status| {
                status
                    .shards
                    .iter()
                    .any(|shard| shard.published + shard.skipped > 0)
            },
        )
        .await;
        let delay = Duration::from_millis(fastrand::u64(0..300));
        tokio::time::sleep(delay).await;
        let status = relay.status();
        kill_points.push((kill, delay, status.published(), skipped(&status)));
        relay.abort().await;
        relay = start();
    }
    let written = writing.await.unwrap();
    relay
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    let last = relay.stop().await;
    let published = assert_exactly_once_in_order(brokers(), &topic, &name, 2, &written).await;
    assert_eq!(published.records, MESSAGES);
    // Kills between an ack and the next checkpoint save leave published
    // records after the checkpoint: the relays after them found those in
    // the partitions' tails instead of sending them again.
    let recovered: u64 = kill_points.iter().map(|point| point.3).sum::<u64>() + skipped(&last);
    eprintln!(
        "kills (kill, delay after resuming, published and skipped by that relay): \
         {kill_points:?}; {recovered} records found already published"
    );
    assert!(recovered > 0, "no kill left anything for recovery to find");
}

fn skipped(status: &RelayStatus) -> u64 {
    status.shards.iter().map(|shard| shard.skipped).sum()
}
for_each_store!(twenty_kills_in_twenty_thousand_messages);
