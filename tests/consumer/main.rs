//! The consumer runtime against a real Kafka-protocol broker: handlers take
//! effect exactly once through duplicates, kills and rebalances; poison and
//! garbage go to the dead-letter topic and come back by replay; records too
//! large to dead-letter whole are cut and nothing stops a partition for
//! good; blocked keys keep their order; full queues pause partitions.
//!
//! The effects are recorded by a backend (see `common`): in memory, in one
//! lock with the inbox's claims, as a database transaction would; and in
//! PostgreSQL, with `annals_postgres::PgInbox` and a counter table written
//! in the claim's transaction. PostgreSQL is found through
//! `ANNALS_TEST_DATABASE_URL`; without it a container is started.

mod backpressure;
mod block_key;
mod common;
mod effectively_once;
mod garbage;
mod outage;
mod poison;
mod prune;
mod rebalance;
mod stuck;

use common::{MemoryBackend, PostgresBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effectively_once_through_duplicates_and_kills_in_memory() {
    effectively_once::survives_kills(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_hands_partitions_over_without_loss_or_duplicate_in_memory() {
    rebalance::second_member_joins_then_first_leaves(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_its_origin_and_replayed_after_the_fix_in_memory() {
    poison::dead_letters_then_replay(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effectively_once_through_duplicates_and_kills_in_postgres() {
    effectively_once::survives_kills(PostgresBackend::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_hands_partitions_over_without_loss_or_duplicate_in_postgres() {
    rebalance::second_member_joins_then_first_leaves(PostgresBackend::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_its_origin_and_replayed_after_the_fix_in_postgres() {
    poison::dead_letters_then_replay(PostgresBackend::new().await).await;
}
