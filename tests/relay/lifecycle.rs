//! Starting, stopping and watching a relay: a graceful stop flushes what is
//! in flight and saves the checkpoint, and the status reports backlog, lag
//! and progress.

use std::time::Duration;

use annals::{GlobalPosition, OutboxShard, OutboxSource};
use annals_kafka::ShardRole;
use annals_tests::kafka::{brokers, create_topic, unique_topic};
use annals_tests::wait::eventually;

use crate::common::{
    FlakySource, RelayStore, Writer, assert_accounted_for, assert_exactly_once_in_order,
    for_each_store, published_or_found, relay, unique_name, wait_for_status,
};

/// A relay stopped mid-run has every acked record under its saved
/// checkpoint; the next one publishes exactly the rest, with nothing to
/// skip.
async fn stop_flushes_and_the_next_relay_continues<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-stop");
    create_topic(brokers(), &topic, 3).await;
    let name = unique_name("stop");
    let writer = Writer::new(store.clone(), &topic, 50);
    let mut written = writer.write(20_000, 4, None).await;
    let first = relay(store.outbox(), brokers(), &name)
        .shards(2)
        .batch_size(200)
        .start()
        .unwrap();
    wait_for_status(
        &first,
        Duration::from_secs(30),
        "the relay publishes",
        |status| status.published() >= 1_000,
    )
    .await;
    let stopped = first.stop().await;
    for shard in &stopped.shards {
        assert_eq!(shard.role, ShardRole::Stopped);
        assert_eq!(shard.checkpoint, shard.last_published, "{stopped:#?}");
        let saved = store.outbox().checkpoint(&name, shard.shard).await.unwrap();
        assert_eq!(saved, shard.checkpoint);
    }
    written.extend(writer.write(1_000, 4, None).await);
    let second = relay(store.outbox(), brokers(), &name)
        .shards(2)
        .start()
        .unwrap();
    second
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    let continued = second.stop().await;
    // Nothing for the next relay to find after a graceful stop, unless a
    // session of one of them broke.
    assert_accounted_for(&[&stopped, &continued], 21_000);
    assert_exactly_once_in_order(brokers(), &topic, &name, 2, &written).await;
}
for_each_store!(stop_flushes_and_the_next_relay_continues);

/// The status shows what waits (backlog, lag) while the relay is held back,
/// and the progress once it caught up.
async fn status_reports_backlog_lag_and_progress<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-status");
    create_topic(brokers(), &topic, 2).await;
    let name = unique_name("status");
    let flaky = FlakySource::new(store.outbox());
    let relay = relay(flaky.clone(), brokers(), &name).start().unwrap();
    wait_for_status(
        &relay,
        Duration::from_secs(30),
        "the relay leads",
        |status| {
            status
                .shards
                .iter()
                .all(|shard| shard.role == ShardRole::Publishing)
        },
    )
    .await;
    flaky.hold_reads(true);
    let written = Writer::new(store.clone(), &topic, 10)
        .write(500, 1, None)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_status(
        &relay,
        Duration::from_secs(10),
        "the backlog is seen",
        |status| status.backlog() == 500 && status.lag() >= Duration::from_millis(300),
    )
    .await;
    flaky.hold_reads(false);
    wait_for_status(
        &relay,
        Duration::from_secs(30),
        "the relay catches up",
        |status| {
            status.backlog() == 0 && status.lag().is_zero() && published_or_found(status) >= 500
        },
    )
    .await;
    relay
        .wait_until_drained(Duration::from_secs(10))
        .await
        .expect("the relay drains the outbox");
    let status = relay.stop().await;
    let shard = &status.shards[0];
    assert_eq!(shard.shard, OutboxShard::ALL);
    assert_eq!(shard.checkpoint, shard.last_published);
    assert_eq!(
        shard.checkpoint,
        store
            .outbox()
            .checkpoint(&name, OutboxShard::ALL)
            .await
            .unwrap()
    );
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
}
for_each_store!(status_reports_backlog_lag_and_progress);

/// A relay that has published its whole backlog saves the checkpoint at
/// once rather than at the next checkpoint interval, and pruning follows.
async fn a_drained_backlog_is_checkpointed_and_pruned_at_once<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-drained");
    create_topic(brokers(), &topic, 2).await;
    let name = unique_name("drained");
    let written = Writer::new(store.clone(), &topic, 20)
        .write(3_000, 2, None)
        .await;
    let relay = relay(store.outbox(), brokers(), &name)
        .batch_size(500)
        .prune_batch(500)
        .checkpoint_interval(Duration::from_secs(3_600))
        .start()
        .unwrap();
    wait_for_status(
        &relay,
        Duration::from_secs(30),
        "the relay publishes the backlog",
        |status| published_or_found(status) >= 3_000,
    )
    .await;
    wait_for_status(
        &relay,
        Duration::from_secs(10),
        "the checkpoint is saved, an hour before the interval",
        |status| {
            let shard = &status.shards[0];
            shard.checkpoint.is_some() && shard.checkpoint == shard.last_published
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the published records are pruned",
        || async {
            let left = store
                .outbox()
                .backlog(OutboxShard::ALL, GlobalPosition::START)
                .await;
            left.unwrap().messages == 0
        },
    )
    .await;
    relay.stop().await;
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
}
for_each_store!(a_drained_backlog_is_checkpointed_and_pruned_at_once);

/// `wait_until_drained` answers from the store, not from the status: while
/// the relay is held back it fails with what waits; once it returns,
/// everything written is published and under the saved checkpoint. A
/// standby of the same relay can wait on it too.
async fn wait_until_drained_reads_the_store<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-drained-wait");
    create_topic(brokers(), &topic, 2).await;
    let name = unique_name("drained-wait");
    let flaky = FlakySource::new(store.outbox());
    // A status that is never refreshed: the answer must not come from it.
    let relay = relay(flaky.clone(), brokers(), &name)
        .status_interval(Duration::from_secs(3_600))
        .start()
        .unwrap();
    wait_for_status(
        &relay,
        Duration::from_secs(30),
        "the relay leads",
        |status| status.shards[0].role == ShardRole::Publishing,
    )
    .await;
    flaky.hold_reads(true);
    let writer = Writer::new(store.clone(), &topic, 10);
    let mut written = writer.write(300, 1, None).await;
    let error = relay
        .wait_until_drained(Duration::from_millis(300))
        .await
        .expect_err("nothing is published while reads are held");
    assert!(
        matches!(&error, annals::Error::Timeout { status, .. } if status.starts_with("300 records wait")),
        "{error}"
    );
    flaky.hold_reads(false);
    relay
        .wait_until_drained(Duration::from_secs(30))
        .await
        .expect("the relay drains the outbox");
    // Everything is in the topic the moment it returns.
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
    let status = relay.status();
    assert_accounted_for(&[&status], 300);
    assert!(status.sent() >= 300, "{status:#?}");

    // Fresh at every call: what is written after one drain waits for the
    // next.
    written.extend(writer.write(200, 1, None).await);
    let standby = relay_standby(&store, &name);
    standby
        .wait_until_drained(Duration::from_secs(30))
        .await
        .expect("the standby sees the leader drain the outbox");
    assert_accounted_for(&[&relay.status()], 500);
    assert_eq!(standby.status().published(), 0, "the standby only waited");
    standby.stop().await;
    relay.stop().await;
    assert_exactly_once_in_order(brokers(), &topic, &name, 1, &written).await;
}
for_each_store!(wait_until_drained_reads_the_store);

/// A second relay of the same name, standing by.
fn relay_standby<S: RelayStore>(store: &S, name: &str) -> annals_kafka::RelayHandle {
    relay(store.outbox(), brokers(), name).start().unwrap()
}
