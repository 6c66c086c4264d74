//! The contract of [`Inbox`]: a message is claimed once per consumer, a
//! claim lives or dies with its transaction, a message claimed in a
//! transaction still open waits for it, and old claims are pruned per
//! consumer.
//!
//! The handler's own effects in the inbox's transaction are the backend's
//! business (its `Tx`); each backend tests them beside this suite.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::Inbox;

/// Whether `consumer` would handle `message_id` now: a claim in a
/// transaction of its own, rolled back.
pub async fn claimable<I: Inbox>(inbox: &I, consumer: &str, message_id: Uuid) -> bool {
    let mut tx = inbox.begin().await.unwrap();
    let claimed = inbox.claim(&mut tx, consumer, message_id).await.unwrap();
    inbox.rollback(tx).await.unwrap();
    claimed
}

/// A message is claimed once per consumer: not twice in one transaction,
/// and not again once committed (a redelivery); other consumers claim it
/// for themselves.
pub async fn a_message_is_claimed_once_per_consumer<I: Inbox>(inbox: I) {
    let id = Uuid::now_v7();
    let mut tx = inbox.begin().await.unwrap();
    assert!(inbox.claim(&mut tx, "shipping", id).await.unwrap());
    assert!(
        !inbox.claim(&mut tx, "shipping", id).await.unwrap(),
        "twice in one transaction"
    );
    assert!(
        inbox.claim(&mut tx, "billing", id).await.unwrap(),
        "consumers claim separately"
    );
    inbox.commit(tx).await.unwrap();

    let mut again = inbox.begin().await.unwrap();
    assert!(
        !inbox.claim(&mut again, "shipping", id).await.unwrap(),
        "a redelivery"
    );
    assert!(!inbox.claim(&mut again, "billing", id).await.unwrap());
    inbox.rollback(again).await.unwrap();
    assert!(
        claimable(&inbox, "invoicing", id).await,
        "a consumer that never handled it"
    );
}

/// A rolled-back claim is forgotten: the message is handled again.
pub async fn a_rolled_back_claim_is_forgotten<I: Inbox>(inbox: I) {
    let id = Uuid::now_v7();
    let mut tx = inbox.begin().await.unwrap();
    assert!(inbox.claim(&mut tx, "shipping", id).await.unwrap());
    inbox.rollback(tx).await.unwrap();

    let mut retry = inbox.begin().await.unwrap();
    assert!(
        inbox.claim(&mut retry, "shipping", id).await.unwrap(),
        "the message is handled again after a rollback"
    );
    inbox.commit(retry).await.unwrap();
    assert!(!claimable(&inbox, "shipping", id).await);
}

/// The same message handled concurrently (a copy on another partition):
/// the second claim waits for the first transaction, and is refused once
/// that commits, or granted once it rolls back.
pub async fn a_concurrent_claim_waits_for_the_first_transaction<I: Inbox>(inbox: I) {
    for commit_first in [true, false] {
        let id = Uuid::now_v7();
        let mut first = inbox.begin().await.unwrap();
        assert!(inbox.claim(&mut first, "shipping", id).await.unwrap());
        let mut second = {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let mut tx = inbox.begin().await.unwrap();
                let claimed = inbox.claim(&mut tx, "shipping", id).await.unwrap();
                inbox.rollback(tx).await.unwrap();
                claimed
            })
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut second)
                .await
                .is_err(),
            "the second claim waits while the first transaction is open"
        );
        if commit_first {
            inbox.commit(first).await.unwrap();
        } else {
            inbox.rollback(first).await.unwrap();
        }
        let claimed = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second claim is answered once the first transaction ends")
            .unwrap();
        assert_eq!(
            claimed, !commit_first,
            "refused after a commit, granted after a rollback"
        );
    }
}

/// Pruning forgets one consumer's claims made before a time, and no one
/// else's.
pub async fn prune_forgets_one_consumers_claims_before_a_time<I: Inbox>(inbox: I) {
    let (first, second, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut tx = inbox.begin().await.unwrap();
    for (consumer, id) in [
        ("shipping", first),
        ("shipping", second),
        ("billing", other),
    ] {
        assert!(inbox.claim(&mut tx, consumer, id).await.unwrap());
    }
    inbox.commit(tx).await.unwrap();

    let day_ago = Utc::now() - chrono::Duration::days(1);
    assert_eq!(inbox.prune("shipping", day_ago).await.unwrap(), 0);
    assert!(!claimable(&inbox, "shipping", first).await, "nothing older");

    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(inbox.prune("shipping", later).await.unwrap(), 2);
    assert_eq!(inbox.prune("shipping", later).await.unwrap(), 0);
    assert!(
        claimable(&inbox, "shipping", first).await,
        "a pruned claim is gone"
    );
    assert!(claimable(&inbox, "shipping", second).await);
    assert!(
        !claimable(&inbox, "billing", other).await,
        "another consumer's claims stay"
    );
}
