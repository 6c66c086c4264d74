//! A read model that changes shape: a new projection version rebuilt
//! beside the serving one, promoted once it has caught up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{
    BoxError, Envelope, MemoryEventStore, MemoryProjectionBackend, Projection, ProjectionRunner,
    ProjectionState, Repository,
};

use crate::account::{Account, AccountCommand, AccountEvent};

// ANCHOR: statements
/// Per account, the deposits and withdrawals seen: version 2 of the
/// `balances` read model, which version 1 only summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    /// Cents in.
    pub deposited: u64,
    /// Cents out.
    pub withdrawn: u64,
}

/// Which version of `balances` queries read: what a view repointed in
/// `promote` is for a read model in PostgreSQL.
#[derive(Debug, Clone, Default)]
pub struct Serving(Arc<Mutex<u32>>);

impl Serving {
    /// The version queries read.
    pub fn version(&self) -> u32 {
        *self.0.lock().expect("serving lock")
    }
}

/// Version 2 of the `balances` projection, in memory.
#[derive(Debug, Clone, Default)]
pub struct Statements {
    rows: Arc<Mutex<HashMap<String, Statement>>>,
    serving: Serving,
}

impl Statements {
    /// The statement of `account`.
    pub fn of(&self, account: &str) -> Statement {
        let rows = self.rows.lock().expect("statements lock");
        rows.get(account).cloned().unwrap_or_default()
    }
}

impl Projection<()> for Statements {
    type Event = AccountEvent;

    /// The same name as version 1: one projection, two versions.
    fn name(&self) -> &str {
        "balances"
    }

    fn version(&self) -> u32 {
        2
    }

    /// Runs once this version has caught up, in the transaction that makes
    /// it the serving one.
    async fn promote(&self, _: &mut ()) -> Result<(), BoxError> {
        *self.serving.0.lock().map_err(|_| "serving lock poisoned")? = 2;
        Ok(())
    }

    /// What `ProjectionRunner::reset` clears before a replay from the start.
    async fn reset(&self, _: &mut ()) -> Result<(), BoxError> {
        self.rows
            .lock()
            .map_err(|_| "statements lock poisoned")?
            .clear();
        Ok(())
    }

    async fn handle(&self, _: &mut (), envelope: &Envelope<AccountEvent>) -> Result<(), BoxError> {
        let mut rows = self.rows.lock().map_err(|_| "statements lock poisoned")?;
        let row = rows.entry(envelope.stream.to_string()).or_default();
        match envelope.event {
            AccountEvent::Deposited { cents } => row.deposited += cents,
            AccountEvent::Withdrawn { cents } => row.withdrawn += cents,
            AccountEvent::Opened { .. } | AccountEvent::Closed => {}
        }
        Ok(())
    }
}
// ANCHOR_END: statements

/// Version 1 serves; version 2 is deployed beside it, rebuilds and takes
/// over. Returns the statement of `account-ada` and the serving version.
pub async fn upgrade() -> Result<(Statement, u32), Box<dyn std::error::Error + Send + Sync>> {
    let store = MemoryEventStore::new();
    let accounts: Repository<Account, _> = Repository::new(store.clone());
    accounts
        .execute(
            "ada",
            &AccountCommand::Open {
                owner: "Ada".into(),
            },
        )
        .await?;
    for cents in [500, 700] {
        accounts
            .execute("ada", &AccountCommand::Deposit { cents })
            .await?;
    }
    let backend = MemoryProjectionBackend::new();
    let balances = crate::in_memory::Balances::default();
    let v1 = ProjectionRunner::new(store.clone(), backend.clone(), balances).start()?;

    // ANCHOR: upgrade
    let statements = Statements::default();
    let v2 = ProjectionRunner::new(store.clone(), backend.clone(), statements.clone()).start()?;
    // While it rebuilds, its status says so and how much is left; version 1
    // keeps serving and applying new events.
    let status = v2.status();
    println!(
        "{} v{}: {:?}, {:?} events to go, v{:?} serves",
        status.name, status.version, status.state, status.lag_events, status.serving_version
    );
    let status = v2
        .wait_until(Duration::from_secs(5), |status| {
            status.state == ProjectionState::Live
        })
        .await?;
    assert_eq!(status.serving_version, Some(2));
    // ANCHOR_END: upgrade
    v1.stop(Duration::from_secs(5)).await?;
    v2.stop(Duration::from_secs(5)).await?;
    Ok((statements.of("account-ada"), statements.serving.version()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn version_2_rebuilds_and_takes_over() {
        let (statement, serving) = upgrade().await.unwrap();
        assert_eq!(
            statement,
            Statement {
                deposited: 1_200,
                withdrawn: 0
            }
        );
        assert_eq!(serving, 2);
    }
}
