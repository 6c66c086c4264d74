//! The inbox: which messages a consumer has handled, recorded in the same
//! transaction as the handler's effects, so that a redelivered message has
//! no second effect.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
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

/// An inbox in memory. Its transactions hold their claims until commit,
/// and a claim of a message that an open transaction claimed waits for that
/// transaction, as in a database; the handler's own effects are its
/// business (handlers get the [`MemoryInboxTx`]).
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
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    claims: Mutex<Claims>,
    /// Wakes claims that wait for a transaction to end.
    ended: Notify,
}

/// A claim: which consumer handles which message.
type Claim = (String, Uuid);

#[derive(Default)]
struct Claims {
    /// When each committed claim was made.
    committed: HashMap<Claim, DateTime<Utc>>,
    /// The claims of open transactions, by transaction.
    open: HashMap<Claim, u64>,
    /// The number of the next transaction.
    next: u64,
}

/// The claims of one [`MemoryInbox`] transaction; dropped without a
/// commit, it is rolled back.
pub struct MemoryInboxTx {
    shared: Arc<Shared>,
    number: u64,
    claims: Vec<Claim>,
}

impl fmt::Debug for MemoryInboxTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryInboxTx")
            .field("claims", &self.claims)
            .finish()
    }
}

impl Drop for MemoryInboxTx {
    fn drop(&mut self) {
        if self.claims.is_empty() {
            return;
        }
        let mut claims = self.shared.lock();
        for claim in self.claims.drain(..) {
            claims.open.remove(&claim);
        }
        drop(claims);
        self.shared.ended.notify_waiters();
    }
}

impl fmt::Debug for MemoryInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claims = self.shared.lock();
        f.debug_struct("MemoryInbox")
            .field("claims", &claims.committed.len())
            .field("open", &claims.open.len())
            .finish()
    }
}

impl MemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `consumer` has handled `message_id` (its claim committed).
    pub fn contains(&self, consumer: &str, message_id: Uuid) -> bool {
        self.shared
            .lock()
            .committed
            .contains_key(&(consumer.to_owned(), message_id))
    }
}

impl Shared {
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
        let mut claims = self.shared.lock();
        claims.next += 1;
        Ok(MemoryInboxTx {
            shared: Arc::clone(&self.shared),
            number: claims.next,
            claims: Vec::new(),
        })
    }

    async fn claim(
        &self,
        tx: &mut MemoryInboxTx,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool, Error> {
        let claim = (consumer.to_owned(), message_id);
        loop {
            let ended = self.shared.ended.notified();
            {
                let mut claims = self.shared.lock();
                if claims.committed.contains_key(&claim) {
                    return Ok(false);
                }
                match claims.open.get(&claim) {
                    Some(&holder) if holder == tx.number => return Ok(false),
                    Some(_) => {}
                    None => {
                        claims.open.insert(claim.clone(), tx.number);
                        tx.claims.push(claim);
                        return Ok(true);
                    }
                }
            }
            // Another open transaction claimed it: its end decides.
            ended.await;
        }
    }

    async fn commit(&self, mut tx: MemoryInboxTx) -> Result<(), Error> {
        let now = Utc::now();
        let mut claims = self.shared.lock();
        for claim in tx.claims.drain(..) {
            claims.open.remove(&claim);
            claims.committed.entry(claim).or_insert(now);
        }
        drop(claims);
        self.shared.ended.notify_waiters();
        Ok(())
    }

    async fn rollback(&self, tx: MemoryInboxTx) -> Result<(), Error> {
        drop(tx);
        Ok(())
    }

    async fn prune(&self, consumer: &str, before: DateTime<Utc>) -> Result<u64, Error> {
        let mut claims = self.shared.lock();
        let count = claims.committed.len();
        claims
            .committed
            .retain(|(name, _), claimed| name != consumer || *claimed >= before);
        Ok((count - claims.committed.len()) as u64)
    }
}
