//! Effects in memory: an inbox whose transactions carry the handler's
//! effects, committed together with the claims under one lock, as a
//! database would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use annals::{BoxError, Inbox};
use annals_kafka::{Handler, ReceivedEvent};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Backend, Effect, Faults, Ping};

#[derive(Debug, Default)]
struct State {
    claims: HashMap<(String, Uuid), DateTime<Utc>>,
    effects: Vec<Effect>,
}

/// An inbox with the handler's effects in its transactions.
#[derive(Debug, Clone, Default)]
pub(crate) struct CounterInbox {
    state: Arc<Mutex<State>>,
}

/// A transaction of [`CounterInbox`]: claims and effects, committed
/// together or not at all.
#[derive(Debug, Default)]
pub(crate) struct CounterTx {
    claims: Vec<(String, Uuid)>,
    effects: Vec<Effect>,
}

impl CounterInbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inbox for CounterInbox {
    type Tx = CounterTx;

    async fn begin(&self) -> Result<CounterTx, annals::Error> {
        Ok(CounterTx::default())
    }

    async fn claim(
        &self,
        tx: &mut CounterTx,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool, annals::Error> {
        let key = (consumer.to_owned(), message_id);
        if tx.claims.contains(&key) || self.lock().claims.contains_key(&key) {
            return Ok(false);
        }
        tx.claims.push(key);
        Ok(true)
    }

    async fn commit(&self, tx: CounterTx) -> Result<(), annals::Error> {
        let mut state = self.lock();
        // As a primary key would: a claim another transaction committed
        // meanwhile fails this one, and the retry finds the claim.
        if tx.claims.iter().any(|key| state.claims.contains_key(key)) {
            return Err(annals::Error::backend(
                "memory",
                true,
                "the message was claimed by a concurrent transaction",
            ));
        }
        let now = Utc::now();
        state
            .claims
            .extend(tx.claims.into_iter().map(|key| (key, now)));
        state.effects.extend(tx.effects);
        Ok(())
    }

    async fn rollback(&self, _tx: CounterTx) -> Result<(), annals::Error> {
        Ok(())
    }

    async fn prune(&self, consumer: &str, before: DateTime<Utc>) -> Result<u64, annals::Error> {
        let mut state = self.lock();
        let count = state.claims.len();
        state
            .claims
            .retain(|(name, _), claimed| name != consumer || *claimed >= before);
        Ok((count - state.claims.len()) as u64)
    }
}

/// The counting handler over [`CounterInbox`].
#[derive(Debug, Clone)]
pub(crate) struct CountInMemory {
    faults: Faults,
}

impl Handler<CounterTx> for CountInMemory {
    type Event = Ping;

    async fn handle(
        &self,
        tx: &mut CounterTx,
        received: &ReceivedEvent<Ping>,
    ) -> Result<(), BoxError> {
        // Yield inside the transaction, as a database round trip would, so
        // that a consumer killed now is killed mid-transaction.
        tokio::task::yield_now().await;
        let message = &received.message;
        if self.faults.fails(message.message_id) {
            return Err(format!("ping {} is poisoned", received.event.n).into());
        }
        tx.effects.push(Effect {
            message_id: message.message_id,
            key: message.key.clone(),
            partition: message.origin.partition,
            offset: message.origin.offset,
        });
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// Effects in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryBackend {
    inbox: CounterInbox,
}

impl MemoryBackend {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many claims the inbox holds.
    pub(crate) fn claims(&self) -> usize {
        self.inbox.lock().claims.len()
    }
}

impl Backend for MemoryBackend {
    type Inbox = CounterInbox;
    type Effect = CountInMemory;

    fn inbox(&self) -> CounterInbox {
        self.inbox.clone()
    }

    fn effect(&self, faults: Faults) -> CountInMemory {
        CountInMemory { faults }
    }

    async fn effects(&self) -> Vec<Effect> {
        self.inbox.lock().effects.clone()
    }
}
