//! The outbox as relays read it in PostgreSQL ([`PgOutbox`]): the
//! conformance suite of `OutboxSource`, and what is Postgres's own: the SQL
//! twin of the key hash, leases that die with their session, and the shard
//! indexes and the plans they serve.

use std::time::Duration;

use annals::testing::conformance::outbox_source::{keys, shard_records, write};
use annals::{GlobalPosition, InFlight, OutboxRecord, OutboxShard, OutboxSource};
use annals_postgres::{PgLease, PgOutbox};

use crate::common::{connect, database_url, eventually, fresh_store};

annals::outbox_source_tests!(outbox_source_postgres, async {
    let store = crate::common::fresh_store().await;
    let outbox = annals_postgres::PgOutbox::new(&store);
    (store, outbox)
});

/// The SQL twin of the hash, which filled the rows written before the column
/// existed (migration 3), agrees with the client's.
#[tokio::test]
async fn postgres_key_hash_in_sql_agrees_with_the_client() {
    let store = fresh_store().await;
    let client = connect(database_url()).await.unwrap();
    let sql = format!("SELECT \"{}\".outbox_key_hash($1)", store.schema().name());
    for key in &keys() {
        let stored: i32 = client.query_one(&sql, &[key]).await.unwrap().get(0);
        assert_eq!(
            u32::from_ne_bytes(stored.to_ne_bytes()),
            annals::key_hash(key),
            "{key}"
        );
    }
}

#[tokio::test]
async fn postgres_a_lease_whose_session_dies_is_lost_and_fenced() {
    let store = fresh_store().await;
    let outbox = PgOutbox::new(&store);
    write(&store, &keys()[..2]).await;
    let all = shard_records(&outbox, OutboxShard::ALL).await;
    let shard = OutboxShard::ALL;
    let lease = outbox.acquire("relay", shard).await.unwrap();
    outbox
        .save_checkpoint(&lease, "relay", shard, all[0].position)
        .await
        .unwrap();

    let client = connect(database_url()).await.unwrap();
    let holders = client
        .query(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
            &[&store.schema().application_name()],
        )
        .await
        .unwrap();
    assert_eq!(holders.len(), 1, "one session holds the lease");
    let pid: i32 = holders[0].get(0);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();

    eventually(Duration::from_secs(5), "the lease is lost", || async {
        !outbox.is_held(&lease)
    })
    .await;
    let error = outbox
        .save_checkpoint(&lease, "relay", shard, all[1].position)
        .await
        .unwrap_err();
    assert!(error.is_lease_lost(), "{error:?}");
    assert!(!error.is_retriable());
    assert_eq!(
        outbox.checkpoint("relay", shard).await.unwrap(),
        Some(all[0].position),
        "nothing written with the lost lease"
    );
    // The lock died with the session: a standby gets the shard at once.
    let standby = tokio::time::timeout(Duration::from_secs(5), outbox.acquire("relay", shard))
        .await
        .expect("the shard is free")
        .unwrap();
    assert!(outbox.is_held(&standby));
}

/// What may be in flight is written on the lease's connection: a lease
/// cannot write it for another relay, and a holder whose session died can
/// clear nothing, so the next holder still waits.
#[tokio::test]
async fn postgres_what_may_be_in_flight_is_written_with_the_lease() {
    let store = fresh_store().await;
    let outbox = PgOutbox::new(&store);
    let shard = OutboxShard::new(1, 2).unwrap();
    let lease = outbox.acquire("relay", shard).await.unwrap();
    let refused = outbox
        .set_in_flight(&lease, "other", shard, true)
        .await
        .unwrap_err();
    assert!(matches!(refused, annals::Error::Config(_)), "{refused:?}");
    assert_eq!(
        outbox.in_flight("other", shard).await.unwrap(),
        InFlight::NeverLed
    );

    outbox
        .set_in_flight(&lease, "relay", shard, true)
        .await
        .unwrap();
    let client = connect(database_url()).await.unwrap();
    client
        .execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
               JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
            &[&store.schema().application_name()],
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the lease is lost", || async {
        !outbox.is_held(&lease)
    })
    .await;
    let error = outbox
        .set_in_flight(&lease, "relay", shard, false)
        .await
        .unwrap_err();
    assert!(error.is_lease_lost(), "{error:?}");
    assert_eq!(
        outbox.in_flight("relay", shard).await.unwrap(),
        InFlight::Possible,
        "the next holder still waits"
    );
    assert_eq!(outbox.lease_loss_bound(), PgLease::LOSS_BOUND);
}

#[tokio::test]
async fn postgres_shard_indexes_are_built_once_and_serve_the_shard_filter() {
    let store = fresh_store().await;
    let outbox = PgOutbox::new(&store);
    write(&store, &keys()).await;
    let before: Vec<Vec<OutboxRecord>> = {
        let mut shards = Vec::new();
        for shard in OutboxShard::split(3).unwrap() {
            shards.push(shard_records(&outbox, shard).await);
        }
        shards
    };

    assert!(outbox.create_shard_indexes(0).await.is_err(), "no shards");
    outbox.create_shard_indexes(1).await.unwrap();
    outbox.create_shard_indexes(3).await.unwrap();
    // Again: nothing to do.
    outbox.create_shard_indexes(3).await.unwrap();

    let schema = store.schema().name().to_owned();
    let client = connect(database_url()).await.unwrap();
    let indexes: Vec<(String, bool)> = client
        .query(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i \
               JOIN pg_class c ON c.oid = i.indexrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relname::text LIKE 'outbox_shard_%' \
              ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        indexes,
        (0..3)
            .map(|index| (format!("outbox_shard_3_{index}_idx"), true))
            .collect::<Vec<_>>()
    );

    // The filter as the store writes it for a shard is one the index can
    // serve (on 60 rows the planner would rather scan, hence the settings;
    // on a large outbox it picks the index by itself).
    client
        .batch_execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off",
        )
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            &format!(
                "EXPLAIN SELECT position FROM \"{schema}\".outbox \
                  WHERE (tx_id, position) > ('0'::xid8, 0) \
                    AND (key_hash::bigint & 4294967295) % 3 = 1 \
                  ORDER BY tx_id, position LIMIT 10"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|line| line.contains("outbox_shard_3_1_idx")),
        "{plan:#?}"
    );

    // Reads, the backlog and pruning keep to the shard as before.
    for (shard, records) in OutboxShard::split(3).unwrap().into_iter().zip(&before) {
        assert_eq!(&shard_records(&outbox, shard).await, records);
        let backlog = outbox.backlog(shard, GlobalPosition::START).await.unwrap();
        assert_eq!(backlog.messages, records.len() as u64);
    }
    let shard = OutboxShard::new(1, 3).unwrap();
    let through = before[1][1].position;
    assert_eq!(outbox.prune(shard, through, 1_000).await.unwrap(), 2);
    assert_eq!(shard_records(&outbox, shard).await, before[1][2..]);
    assert_eq!(
        shard_records(&outbox, OutboxShard::new(0, 3).unwrap()).await,
        before[0]
    );
}
