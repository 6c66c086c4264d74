//! The bank account of the tutorial: events, commands, the aggregate and its
//! tests.

use annals::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

// ANCHOR: events
/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum AccountEvent {
    /// The account was opened.
    #[event(name = "AccountOpened")]
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    #[event(name = "MoneyDeposited")]
    Deposited {
        /// How much, in cents.
        cents: u64,
    },
    /// Money went out.
    #[event(name = "MoneyWithdrawn")]
    Withdrawn {
        /// How much, in cents.
        cents: u64,
    },
    /// The account was closed.
    #[event(name = "AccountClosed")]
    Closed,
}
// ANCHOR_END: events

// ANCHOR: commands
/// What an account can be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// Open it for an owner.
    Open {
        /// Who owns it.
        owner: String,
    },
    /// Put money in.
    Deposit {
        /// How much, in cents.
        cents: u64,
    },
    /// Take money out.
    Withdraw {
        /// How much, in cents.
        cents: u64,
    },
    /// Close it; it must be empty.
    Close,
}

/// Why an account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// `Open` on an open account.
    #[error("the account is open already")]
    AlreadyOpen,
    /// Anything else on an account that is not open.
    #[error("the account is not open")]
    NotOpen,
    /// A deposit or withdrawal of nothing.
    #[error("the amount must be more than zero")]
    ZeroAmount,
    /// A withdrawal larger than the balance.
    #[error("the balance of {balance} cents does not cover {cents} cents")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// What was asked.
        cents: u64,
    },
    /// `Close` with money left.
    #[error("the account still holds {0} cents")]
    NotEmpty(u64),
}
// ANCHOR_END: commands

// ANCHOR: aggregate
/// An account's state: all that its decisions need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Whether it is open.
    pub open: bool,
    /// The balance in cents.
    pub balance: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    fn handle(&self, command: &AccountCommand, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
        use AccountCommand::*;
        match *command {
            Open { ref owner } if !self.open => Ok(vec![AccountEvent::Opened {
                owner: owner.clone(),
            }]),
            Open { .. } => Err(AccountError::AlreadyOpen),
            _ if !self.open => Err(AccountError::NotOpen),
            Deposit { cents: 0 } | Withdraw { cents: 0 } => Err(AccountError::ZeroAmount),
            Deposit { cents } => Ok(vec![AccountEvent::Deposited { cents }]),
            Withdraw { cents } if cents > self.balance => Err(AccountError::InsufficientFunds {
                balance: self.balance,
                cents,
            }),
            Withdraw { cents } => Ok(vec![AccountEvent::Withdrawn { cents }]),
            Close if self.balance > 0 => Err(AccountError::NotEmpty(self.balance)),
            Close => Ok(vec![AccountEvent::Closed]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { cents } => self.balance += cents,
            AccountEvent::Withdrawn { cents } => self.balance -= cents,
            AccountEvent::Closed => self.open = false,
        }
    }
}
// ANCHOR_END: aggregate

#[cfg(test)]
mod tests {
    // ANCHOR: tests
    use annals::testing::AggregateTest;

    use super::*;

    fn opened() -> AccountEvent {
        AccountEvent::Opened {
            owner: "ada".into(),
        }
    }

    #[test]
    fn a_withdrawal_needs_the_funds() {
        AggregateTest::<Account>::new()
            .given([opened(), AccountEvent::Deposited { cents: 500 }])
            .when(AccountCommand::Withdraw { cents: 800 })
            .then_error(AccountError::InsufficientFunds {
                balance: 500,
                cents: 800,
            });
    }

    #[test]
    fn a_covered_withdrawal_is_made() {
        let account = AggregateTest::<Account>::new()
            .given([opened(), AccountEvent::Deposited { cents: 500 }])
            .when(AccountCommand::Withdraw { cents: 200 })
            .then([AccountEvent::Withdrawn { cents: 200 }]);
        assert_eq!(account.balance, 300);
    }
    // ANCHOR_END: tests

    #[test]
    fn only_an_empty_open_account_closes() {
        AggregateTest::<Account>::new()
            .given([opened(), AccountEvent::Deposited { cents: 1 }])
            .when(AccountCommand::Close)
            .then_error(AccountError::NotEmpty(1));
        AggregateTest::<Account>::new()
            .given([opened()])
            .when(AccountCommand::Close)
            .then([AccountEvent::Closed]);
        AggregateTest::<Account>::new()
            .when(AccountCommand::Deposit { cents: 1 })
            .then_error(AccountError::NotOpen);
    }
}
