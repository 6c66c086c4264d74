//! Several aggregates changed in one transaction.

use std::fmt;

use crate::{Aggregate, AppendOutcome, AppendRequest, Error, EventStore};

use super::{CommandContext, CommandError, Repository};

/// Commands on several aggregates, decided one by one and appended together:
/// all of their events are written, or none.
///
/// A conflict on any stream fails the whole commit with
/// [`Error::Conflict`]; start a new unit to try again.
///
/// ```
/// # use annals::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default, Serialize, Deserialize)]
/// # struct Account { balance: i64 }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// # enum AccountEvent { #[event(name = "Moved")] Moved { cents: i64 } }
/// # #[derive(Debug, thiserror::Error)] #[error("insufficient funds")] struct Insufficient;
/// # struct Move(i64);
/// # impl Aggregate for Account {
/// #     const TYPE: &'static str = "account";
/// #     type Command = Move; type Event = AccountEvent;
/// #     type Error = Insufficient; type Services = ();
/// #     fn handle(&self, c: &Move, _: &()) -> Result<Vec<AccountEvent>, Insufficient> {
/// #         if self.balance + c.0 < -100 { Err(Insufficient) } else { Ok(vec![AccountEvent::Moved { cents: c.0 }]) }
/// #     }
/// #     fn apply(&mut self, e: &AccountEvent) { let AccountEvent::Moved { cents } = e; self.balance += cents; }
/// # }
/// use annals::{CommandContext, MemoryEventStore, Repository, UnitOfWork};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryEventStore::new();
/// let accounts = Repository::<Account, _>::new(store.clone());
///
/// let mut transfer = UnitOfWork::new(store);
/// transfer.execute(&accounts, "alice", &Move(-50), CommandContext::new()).await?;
/// transfer.execute(&accounts, "bob", &Move(50), CommandContext::new()).await?;
/// let outcomes = transfer.commit().await?;
/// assert_eq!(outcomes.len(), 2);
/// assert_eq!(accounts.load("bob").await?.state.balance, 50);
/// # Ok(())
/// # }
/// ```
pub struct UnitOfWork<S> {
    store: S,
    staged: Vec<AppendRequest>,
}

impl<S: fmt::Debug> fmt::Debug for UnitOfWork<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("store", &self.store)
            .field(
                "streams",
                &self
                    .staged
                    .iter()
                    .map(|request| &request.stream)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S: EventStore> UnitOfWork<S> {
    /// An empty unit over `store`.
    pub fn new(store: S) -> Self {
        UnitOfWork {
            store,
            staged: Vec::new(),
        }
    }

    /// Decides `command` on aggregate `id` and stages its events. Each
    /// aggregate may take part once per unit.
    pub async fn execute<A: Aggregate>(
        &mut self,
        repository: &Repository<A, S>,
        id: &str,
        command: &A::Command,
        context: CommandContext,
    ) -> Result<Vec<A::Event>, CommandError<A::Error>> {
        let stream = Repository::<A, S>::stream_id(id)?;
        if self.staged.iter().any(|request| request.stream == stream) {
            return Err(Error::invalid_append(
                &stream,
                "a unit of work changes each stream at most once",
            )
            .into());
        }
        let decision = repository.decide(id, stream, command, &context).await?;
        // The decided state is not put back in the repository's cache: the
        // unit may never commit it.
        if let Some(request) = decision.request {
            self.staged.push(request);
        }
        Ok(decision.events)
    }

    /// The number of streams with staged events.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Appends everything staged in one transaction.
    pub async fn commit(self) -> Result<Vec<AppendOutcome>, Error> {
        if self.staged.is_empty() {
            return Ok(Vec::new());
        }
        self.store.append_all(self.staged).await
    }
}
