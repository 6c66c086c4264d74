//! The inbox: which messages a consumer has handled, recorded in the same
//! transaction as the handler's effects, so that a redelivered message has
//! no second effect.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Error;

/// Where a consumer records the messages it handled.
///
/// A consumer runtime begins a transaction, [`Inbox::claim`]s the message
/// id, runs the handler with the transaction and commits; the message's
/// offset is committed to the broker only after that. A message claimed
/// before (a redelivery) is skipped.
///
/// A handler step written against any inbox:
///
/// ```
/// use annals::{Inbox, MemoryInbox};
/// use uuid::Uuid;
///
/// /// Handles `message_id` once in effect; false when it was a redelivery.
/// async fn handle_once<I: Inbox>(inbox: &I, message_id: Uuid) -> Result<bool, annals::Error> {
///     let mut tx = inbox.begin().await?;
///     if !inbox.claim(&mut tx, "billing", message_id).await? {
///         inbox.rollback(tx).await?;
///         return Ok(false);
///     }
///     // ... the handler's effects, written with `tx` ...
///     inbox.commit(tx).await?;
///     Ok(true)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let inbox = MemoryInbox::new();
/// let id = Uuid::now_v7();
/// assert!(handle_once(&inbox, id).await?);
/// assert!(!handle_once(&inbox, id).await?, "the redelivery has no effect");
/// # Ok(())
/// # }
/// ```
pub trait Inbox: Clone + Send + Sync + 'static {
    /// What handlers write with, inside the inbox's transaction.
    type Tx: Send;

    /// Starts a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, Error>> + Send;

    /// Records that `consumer` handles `message_id` in `tx`. Returns false,
    /// recording nothing, when it was handled before.
    fn claim(
        &self,
        tx: &mut Self::Tx,
        consumer: &str,
        message_id: Uuid,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Commits `tx`: the handler's effects and the claim together.
    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<(), Error>> + Send;

    /// Abandons `tx`.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = Result<(), Error>> + Send;

    /// Forgets claims of `consumer` made before `before`; returns how many.
    /// A message redelivered after its claim was pruned is handled again, so
    /// keep claims longer than the broker may redeliver.
    fn prune(
        &self,
        consumer: &str,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;
}

/// An inbox in memory. Its transactions hold the claims until commit; the
/// handler's own effects are its business (handlers get the
/// [`MemoryInboxTx`]).
///
/// ```
/// use annals::{Inbox, MemoryInbox};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), annals::Error> {
/// let inbox = MemoryInbox::new();
/// let id = uuid::Uuid::now_v7();
/// let mut tx = inbox.begin().await?;
/// assert!(inbox.claim(&mut tx, "shipping", id).await?);
/// inbox.commit(tx).await?;
///
/// let mut again = inbox.begin().await?;
/// assert!(!inbox.claim(&mut again, "shipping", id).await?, "a redelivery");
/// inbox.rollback(again).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryInbox {
    claims: Arc<Mutex<Claims>>,
}

/// When each (consumer, message id) was claimed.
type Claims = HashMap<(String, Uuid), DateTime<Utc>>;

/// The claims of one [`MemoryInbox`] transaction.
#[derive(Debug, Default)]
pub struct MemoryInboxTx {
    claims: Vec<(String, Uuid)>,
}

impl fmt::Debug for MemoryInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryInbox")
            .field("claims", &self.lock().len())
            .finish()
    }
}

impl MemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `consumer` has handled `message_id`.
    pub fn contains(&self, consumer: &str, message_id: Uuid) -> bool {
        self.lock().contains_key(&(consumer.to_owned(), message_id))
    }

    fn lock(&self) -> MutexGuard<'_, Claims> {
        // Every change under the lock is a single step.
        self.claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inbox for MemoryInbox {
    type Tx = MemoryInboxTx;

    async fn begin(&self) -> Result<MemoryInboxTx, Error> {
        Ok(MemoryInboxTx::default())
    }

    async fn claim(
        &self,
        tx: &mut MemoryInboxTx,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool, Error> {
        let key = (consumer.to_owned(), message_id);
        if self.lock().contains_key(&key) || tx.claims.contains(&key) {
            return Ok(false);
        }
        tx.claims.push(key);
        Ok(true)
    }

    async fn commit(&self, tx: MemoryInboxTx) -> Result<(), Error> {
        let now = Utc::now();
        let mut claims = self.lock();
        for key in tx.claims {
            claims.entry(key).or_insert(now);
        }
        Ok(())
    }

    async fn rollback(&self, _tx: MemoryInboxTx) -> Result<(), Error> {
        Ok(())
    }

    async fn prune(&self, consumer: &str, before: DateTime<Utc>) -> Result<u64, Error> {
        let mut claims = self.lock();
        let count = claims.len();
        claims.retain(|(name, _), claimed| name != consumer || *claimed >= before);
        Ok((count - claims.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rolled_back_claims_are_forgotten_and_consumers_are_separate() {
        let inbox = MemoryInbox::new();
        let id = Uuid::now_v7();
        let mut tx = inbox.begin().await.unwrap();
        assert!(inbox.claim(&mut tx, "a", id).await.unwrap());
        assert!(
            !inbox.claim(&mut tx, "a", id).await.unwrap(),
            "twice in one transaction"
        );
        inbox.rollback(tx).await.unwrap();
        assert!(!inbox.contains("a", id));

        let mut tx = inbox.begin().await.unwrap();
        assert!(inbox.claim(&mut tx, "a", id).await.unwrap());
        assert!(
            inbox.claim(&mut tx, "b", id).await.unwrap(),
            "another consumer"
        );
        inbox.commit(tx).await.unwrap();
        assert!(inbox.contains("a", id) && inbox.contains("b", id));

        assert_eq!(
            inbox
                .prune("a", Utc::now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            1
        );
        assert!(!inbox.contains("a", id) && inbox.contains("b", id));
    }
}
