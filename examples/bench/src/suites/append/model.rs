//! The aggregate the append suite writes and loads: bank accounts taking
//! deposits, with payloads of a realistic size.

use annals::{Aggregate, DomainEvent, Metadata, NewEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account's balance.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) balance: i64,
    pub(crate) deposits: u64,
}

/// What happens to an account.
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
pub(crate) enum AccountEvent {
    /// Money came in.
    #[event(name = "Deposited")]
    Deposited { amount: i64, reference: String },
}

/// Deposit `times` amounts, from `amount` on: one event each.
#[derive(Debug)]
pub(crate) struct Deposit {
    pub(crate) amount: i64,
    pub(crate) times: usize,
}

/// Accounts refuse nothing here.
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub(crate) struct Never;

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = Deposit;
    type Event = AccountEvent;
    type Error = Never;
    type Services = ();

    fn handle(&self, command: &Deposit, _: &()) -> Result<Vec<AccountEvent>, Never> {
        Ok((command.amount..command.amount + command.times as i64)
            .map(deposited)
            .collect())
    }

    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount, .. } = event;
        self.balance += amount;
        self.deposits += 1;
    }
}

/// The event of a deposit of `amount`.
pub(crate) fn deposited(amount: i64) -> AccountEvent {
    AccountEvent::Deposited {
        amount,
        reference: format!("invoice-{amount:09}"),
    }
}

/// The metadata a command gives its events: command, correlation and
/// causation ids.
pub(crate) fn command_metadata() -> Metadata {
    let command = Uuid::now_v7();
    Metadata {
        command_id: Some(command),
        correlation_id: Some(command),
        causation_id: Some(command),
        ..Metadata::default()
    }
}

/// `count` deposit events of one command, numbered from `first`.
pub(crate) fn deposits(first: i64, count: usize) -> Vec<NewEvent> {
    let metadata = command_metadata();
    (first..first + count as i64)
        .map(|amount| NewEvent::new(&deposited(amount), metadata.clone()).expect("events encode"))
        .collect()
}
