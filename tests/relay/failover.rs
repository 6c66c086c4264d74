//! Failover: a standby relay takes over the shards of a leader that died,
//! and the topic still holds every message exactly once.

use std::time::Duration;

use annals_kafka::ShardRole;
use annals_tests::kafka::{brokers, create_topic, unique_topic};

use crate::common::{
    RelayStore, Writer, assert_exactly_once_in_order, for_each_store, relay, unique_name,
    wait_for_status,
};

/// Two relays of the same name (2 shards): the first leads both shards, the
/// second stands by; the leader is killed mid-run and the standby finishes.
async fn standby_takes_over_when_the_leader_dies<S: RelayStore>(store: S) {
    let topic = unique_topic("relay-failover");
    create_topic(brokers(), &topic, 4).await;
    let name = unique_name("failover");
    let leader = relay(store.outbox(), brokers(), &name)
        .shards(2)
        .start()
        .unwrap();
    wait_for_status(
        &leader,
        Duration::from_secs(30),
        "the first relay leads",
        |status| {
            status
                .shards
                .iter()
                .all(|shard| shard.role == ShardRole::Publishing)
        },
    )
    .await;
    let standby = relay(store.outbox(), brokers(), &name)
        .shards(2)
        .start()
        .unwrap();
    let writing = Writer::new(store.clone(), &topic, 100).spawn(6_000, 4, Some(1_000.0));
    wait_for_status(
        &leader,
        Duration::from_secs(30),
        "the leader publishes",
        |status| status.published() >= 1_500,
    )
    .await;
    let standing_by = standby.status();
    assert!(
        standing_by
            .shards
            .iter()
            .all(|shard| shard.role == ShardRole::Standby && shard.published == 0),
        "one active relay per shard: {standing_by:#?}"
    );
    leader.abort().await;
    wait_for_status(
        &standby,
        Duration::from_secs(30),
        "the standby takes over",
        |status| {
            status
                .shards
                .iter()
                .all(|shard| shard.role == ShardRole::Publishing)
                && status.published() > 0
        },
    )
    .await;
    let written = writing.await.unwrap();
    standby
        .wait_until_drained(Duration::from_secs(60))
        .await
        .expect("the relay drains the outbox");
    standby.stop().await;
    assert_exactly_once_in_order(brokers(), &topic, &name, 2, &written).await;
}
for_each_store!(standby_takes_over_when_the_leader_dies);
