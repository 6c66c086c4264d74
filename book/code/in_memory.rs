//! Running the account service in memory: repository, outbox relay, bus and
//! a projection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use annals::{
    BoxError, CommandContext, DomainEvent, Envelope, IntegrationEvent, MemoryBus, MemoryEventStore,
    MemoryOutboxRelay, MemoryProjectionBackend, Projection, ProjectionHandle, ProjectionRunner,
    Repository, SnapshotPolicy,
};
use serde::{Deserialize, Serialize};

use crate::account::{Account, AccountCommand, AccountEvent};

// ANCHOR: integration
/// What other services learn of a withdrawal: a contract of its own, so
/// that the domain event can change without breaking them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(name = "WithdrawalMade", version = 1)]
pub struct WithdrawalMade {
    /// The account.
    pub account: String,
    /// How much, in cents.
    pub cents: u64,
}

/// The accounts repository, publishing withdrawals to the `payments` topic.
pub fn accounts(store: MemoryEventStore) -> Repository<Account, MemoryEventStore> {
    Repository::new(store)
        .with_snapshots(SnapshotPolicy::Every(100))
        .with_integration_events(|pending| match pending.event {
            AccountEvent::Withdrawn { cents } => IntegrationEvent::new(
                "payments",
                &WithdrawalMade {
                    account: pending.aggregate_id.to_owned(),
                    cents: *cents,
                },
            )
            .map(Some),
            _ => Ok(None),
        })
}
// ANCHOR_END: integration

// ANCHOR: projection
/// Balances by account: a read model kept in memory.
#[derive(Debug, Clone, Default)]
pub struct Balances(Arc<Mutex<HashMap<String, u64>>>);

impl Balances {
    /// The balance of `account`.
    pub fn of(&self, account: &str) -> u64 {
        let balances = self.0.lock().expect("balances lock");
        balances.get(account).copied().unwrap_or(0)
    }
}

impl Projection<()> for Balances {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "balances"
    }

    async fn handle(&self, _: &mut (), envelope: &Envelope<AccountEvent>) -> Result<(), BoxError> {
        let account = envelope
            .stream
            .as_str()
            .trim_start_matches("account-")
            .to_owned();
        let mut balances = self.0.lock().map_err(|_| "balances lock poisoned")?;
        let balance = balances.entry(account).or_default();
        match envelope.event {
            AccountEvent::Deposited { cents } => *balance += cents,
            AccountEvent::Withdrawn { cents } => *balance -= cents,
            AccountEvent::Opened { .. } | AccountEvent::Closed => {}
        }
        Ok(())
    }
}

/// Starts the balances projection in the background.
pub fn run_balances(
    store: MemoryEventStore,
    balances: Balances,
) -> Result<ProjectionHandle, annals::Error> {
    ProjectionRunner::new(store, MemoryProjectionBackend::new(), balances).start()
}
// ANCHOR_END: projection

/// The whole service in memory: commands in, a read model and messages out.
pub async fn scenario() -> Result<(u64, usize), Box<dyn std::error::Error + Send + Sync>> {
    // ANCHOR: scenario
    let store = MemoryEventStore::new();
    let bus = MemoryBus::new();
    let accounts = accounts(store.clone());
    let balances = Balances::default();
    let projection = run_balances(store.clone(), balances.clone())?;
    let relay = MemoryOutboxRelay::new("accounts", store.clone(), bus.clone()).spawn();

    accounts
        .execute(
            "ada",
            &AccountCommand::Open {
                owner: "Ada".into(),
            },
        )
        .await?;
    accounts
        .execute("ada", &AccountCommand::Deposit { cents: 1_000 })
        .await?;
    let withdrawal = CommandContext::new(); // e.g. from an idempotency key
    let outcome = accounts
        .execute_with(
            "ada",
            &AccountCommand::Withdraw { cents: 300 },
            withdrawal.clone(),
        )
        .await?;
    // The client retries; nothing happens twice.
    accounts
        .execute_with("ada", &AccountCommand::Withdraw { cents: 300 }, withdrawal)
        .await?;

    // Read your writes: wait until the projection has seen the withdrawal.
    let position = outcome.position.expect("the withdrawal was appended");
    projection
        .wait_for(position, std::time::Duration::from_secs(5))
        .await?;
    let balance = balances.of("ada");

    let mut payments = bus.consumer("payments-service", "payments");
    let messages = payments
        .next_batch(10, std::time::Duration::from_secs(5))
        .await;
    // ANCHOR_END: scenario
    relay.abort();
    projection.stop(std::time::Duration::from_secs(5)).await?;
    Ok((balance, messages.len()))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_scenario_keeps_the_balance_and_publishes_once() {
        let (balance, messages) = super::scenario().await.unwrap();
        assert_eq!(balance, 700);
        assert_eq!(messages, 1);
    }
}
