//! The domain of the benchmark, written for cqrs-es: bank accounts taking
//! deposits, the same events and payloads as annals-bench's accounts.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// An account's balance.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) balance: i64,
    pub(crate) deposits: u64,
}

/// What happens to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum AccountEvent {
    /// Money came in.
    Deposited { amount: i64, reference: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        "Deposited".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
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

    async fn handle(
        &mut self,
        command: Deposit,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        for amount in command.amount..command.amount + command.times as i64 {
            sink.write(deposited(amount), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        let AccountEvent::Deposited { amount, .. } = event;
        self.balance += amount;
        self.deposits += 1;
    }
}

/// The event of a deposit of `amount`.
fn deposited(amount: i64) -> AccountEvent {
    AccountEvent::Deposited {
        amount,
        reference: format!("invoice-{amount:09}"),
    }
}
