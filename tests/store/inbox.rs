//! The PostgreSQL inbox ([`PgInbox`]): the conformance suite of `Inbox`,
//! and what is Postgres's own: claims and the handler's effects commit or
//! vanish together in a [`PgTx`], claims are pruned by their age, and a
//! transaction nobody finishes never reaches the next user of the pool.

use std::sync::Arc;

use annals::Inbox;
use annals_postgres::{PgInbox, PgTx};
use annals_tests::postgres::Schema;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::common::{TestStore, connect, database_url, fresh_store, fresh_store_with};

annals::inbox_tests!(inbox_postgres, async {
    crate::inbox::TestInbox::new(crate::common::fresh_store().await)
});

/// A [`PgInbox`] that keeps its test schema until the case is done.
#[derive(Debug, Clone)]
pub(crate) struct TestInbox {
    inbox: PgInbox,
    _schema: Arc<Schema>,
}

impl TestInbox {
    pub(crate) fn new(store: TestStore) -> Self {
        TestInbox {
            inbox: PgInbox::new(&store),
            _schema: store.schema_guard(),
        }
    }
}

impl Inbox for TestInbox {
    type Tx = PgTx;

    async fn begin(&self) -> Result<PgTx, annals::Error> {
        self.inbox.begin().await
    }

    async fn claim(&self, tx: &mut PgTx, consumer: &str, id: Uuid) -> Result<bool, annals::Error> {
        self.inbox.claim(tx, consumer, id).await
    }

    async fn commit(&self, tx: PgTx) -> Result<(), annals::Error> {
        self.inbox.commit(tx).await
    }

    async fn rollback(&self, tx: PgTx) -> Result<(), annals::Error> {
        self.inbox.rollback(tx).await
    }

    async fn prune(&self, consumer: &str, before: DateTime<Utc>) -> Result<u64, annals::Error> {
        self.inbox.prune(consumer, before).await
    }
}

/// A store with an `effects` table beside the inbox, for the handler's
/// writes.
async fn store_with_effects(pool_size: usize) -> TestStore {
    let store = fresh_store_with(|config| config.with_pool_size(pool_size)).await;
    let client = store.pool().get().await.expect("a connection");
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{}\".effects (message_id uuid PRIMARY KEY)",
            store.schema().name()
        ))
        .await
        .expect("the effects table");
    store
}

/// The handler's effect: one row per message.
async fn write_effect(store: &TestStore, tx: &PgTx, message_id: Uuid) {
    tx.execute(
        &format!(
            "INSERT INTO \"{}\".effects (message_id) VALUES ($1)",
            store.schema().name()
        ),
        &[&message_id],
    )
    .await
    .expect("the effect is written");
}

/// (claims, effects) committed, seen from a connection outside the pool.
async fn committed(store: &TestStore) -> (i64, i64) {
    let client = connect(database_url()).await.expect("a test connection");
    let schema = store.schema().name();
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM \"{schema}\".inbox), \
                        (SELECT count(*) FROM \"{schema}\".effects)"
            ),
            &[],
        )
        .await
        .expect("counting");
    (row.get(0), row.get(1))
}

/// A transaction that has claimed `id` for consumer `shipping`.
async fn claiming(inbox: &PgInbox, id: Uuid) -> PgTx {
    let mut tx = inbox.begin().await.unwrap();
    assert!(inbox.claim(&mut tx, "shipping", id).await.unwrap());
    tx
}

/// The server process of `tx`'s connection.
async fn backend_pid(tx: &PgTx) -> i32 {
    tx.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn postgres_inbox_commits_claims_and_effect_together() {
    let store = store_with_effects(4).await;
    let inbox = PgInbox::new(&store);
    let id = Uuid::now_v7();

    let mut tx = claiming(&inbox, id).await;
    assert!(inbox.claim(&mut tx, "billing", id).await.unwrap());
    write_effect(&store, &tx, id).await;
    assert_eq!(committed(&store).await, (0, 0), "nothing before the commit");
    inbox.commit(tx).await.unwrap();
    assert_eq!(committed(&store).await, (2, 1));
}

#[tokio::test]
async fn postgres_inbox_rollback_discards_claim_and_effect() {
    let store = store_with_effects(4).await;
    let inbox = PgInbox::new(&store);
    let id = Uuid::now_v7();

    let tx = claiming(&inbox, id).await;
    write_effect(&store, &tx, id).await;
    inbox.rollback(tx).await.unwrap();
    assert_eq!(committed(&store).await, (0, 0));

    let retry = claiming(&inbox, id).await;
    write_effect(&store, &retry, id).await;
    inbox.commit(retry).await.unwrap();
    assert_eq!(committed(&store).await, (1, 1));
}

#[tokio::test]
async fn postgres_inbox_prunes_one_consumers_claims_by_age() {
    let store = fresh_store().await;
    let inbox = PgInbox::new(&store);
    let (old, recent, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut tx = inbox.begin().await.unwrap();
    for (consumer, id) in [("shipping", old), ("shipping", recent), ("billing", other)] {
        assert!(inbox.claim(&mut tx, consumer, id).await.unwrap());
    }
    inbox.commit(tx).await.unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .execute(
            &format!(
                "UPDATE \"{}\".inbox SET received_at = now() - interval '2 days' \
                 WHERE message_id = $1",
                store.schema().name()
            ),
            &[&old],
        )
        .await
        .unwrap();

    let day_ago = Utc::now() - Duration::days(1);
    assert_eq!(inbox.prune("shipping", day_ago).await.unwrap(), 1);
    assert_eq!(inbox.prune("shipping", day_ago).await.unwrap(), 0);
    let mut tx = inbox.begin().await.unwrap();
    assert!(
        inbox.claim(&mut tx, "shipping", old).await.unwrap(),
        "a pruned claim is gone"
    );
    assert!(!inbox.claim(&mut tx, "shipping", recent).await.unwrap());
    inbox.rollback(tx).await.unwrap();

    let later = Utc::now() + Duration::seconds(1);
    assert_eq!(inbox.prune("shipping", later).await.unwrap(), 1);
    let mut tx = inbox.begin().await.unwrap();
    assert!(
        !inbox.claim(&mut tx, "billing", other).await.unwrap(),
        "another consumer's claims stay"
    );
    inbox.rollback(tx).await.unwrap();
}

/// Whether the connection a new transaction gets is still inside an
/// earlier transaction: a fresh one has no transaction id before it writes,
/// the abandoned one wrote and has one (`BEGIN` inside it only warns).
async fn inherits_a_transaction(tx: &PgTx) -> bool {
    let row = tx
        .query_one("SELECT pg_current_xact_id_if_assigned() IS NOT NULL", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn postgres_dropped_transaction_leaves_nothing_and_its_connection_is_usable() {
    // One connection: the next transaction gets the dropped one's.
    let store = store_with_effects(1).await;
    let inbox = PgInbox::new(&store);
    let id = Uuid::now_v7();

    let tx = claiming(&inbox, id).await;
    let pid = backend_pid(&tx).await;
    write_effect(&store, &tx, id).await;
    drop(tx);

    let mut next = inbox.begin().await.unwrap();
    let next_pid = backend_pid(&next).await;
    assert_eq!(
        next_pid, pid,
        "the rolled-back connection went back to the pool"
    );
    assert!(!inherits_a_transaction(&next).await);
    assert!(
        inbox.claim(&mut next, "shipping", id).await.unwrap(),
        "the dropped claim is gone"
    );
    write_effect(&store, &next, id).await;

    // Without a runtime to roll back on, the connection is closed instead.
    std::thread::spawn(move || drop(next))
        .join()
        .expect("dropping on a plain thread");
    let last = inbox.begin().await.unwrap();
    assert!(!inherits_a_transaction(&last).await);
    last.commit().await.unwrap();
    assert_eq!(committed(&store).await, (0, 0));
}

#[tokio::test]
async fn postgres_commit_after_a_failed_statement_is_an_error_and_keeps_nothing() {
    let store = store_with_effects(1).await;
    let inbox = PgInbox::new(&store);
    let id = Uuid::now_v7();

    let tx = claiming(&inbox, id).await;
    write_effect(&store, &tx, id).await;
    // A handler that swallows an error goes on in an aborted transaction.
    let failed = tx.execute("SELECT 1 / 0", &[]).await.unwrap_err();
    assert!(!failed.is_retriable(), "{failed}");
    let refused = inbox.commit(tx).await.unwrap_err();
    assert!(!refused.is_retriable(), "{refused}");
    assert_eq!(committed(&store).await, (0, 0));

    let mut retry = inbox.begin().await.unwrap();
    assert!(!inherits_a_transaction(&retry).await);
    assert!(inbox.claim(&mut retry, "shipping", id).await.unwrap());
    inbox.commit(retry).await.unwrap();
    assert_eq!(committed(&store).await, (1, 0));
}

#[tokio::test]
async fn postgres_transaction_on_a_killed_connection_fails_retriably() {
    let store = store_with_effects(1).await;
    let inbox = PgInbox::new(&store);
    let id = Uuid::now_v7();

    let tx = claiming(&inbox, id).await;
    let pid = backend_pid(&tx).await;
    let admin = connect(database_url()).await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let lost = tx.execute("SELECT 1", &[]).await.unwrap_err();
    assert!(
        lost.is_retriable(),
        "a lost connection is retriable: {lost}"
    );
    let rollback = inbox.rollback(tx).await.unwrap_err();
    assert!(rollback.is_retriable(), "{rollback}");

    // The pool's one slot is free again, for a new connection.
    let retry = claiming(&inbox, id).await;
    inbox.commit(retry).await.unwrap();
    assert_eq!(committed(&store).await, (1, 0));
}
