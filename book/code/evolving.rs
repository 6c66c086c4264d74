//! Evolving events: a second version of `MoneyDeposited` and the upcaster
//! that reads the first.

use std::convert::Infallible;

use annals::{DomainEvent, Upcasters};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// ANCHOR: upcasters
/// Version 1 of `MoneyDeposited` had no reference; version 2 requires one.
/// Old deposits read as deposits with an empty reference. The event
/// `CashAdded` of an early prototype is the same thing under an old name.
fn upcasters() -> Upcasters {
    Upcasters::new()
        .upcast("MoneyDeposited", 1, |mut payload: Value| {
            payload["reference"] = json!("");
            Ok::<_, Infallible>(payload)
        })
        .rename("CashAdded", 1, "MoneyDeposited")
}

/// The account's events, with deposits at version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = upcasters)]
pub enum AccountEventV2 {
    /// Money came in, with the payer's reference.
    #[event(name = "MoneyDeposited", version = 2)]
    Deposited {
        /// How much, in cents.
        cents: u64,
        /// The payer's reference.
        reference: String,
    },
}
// ANCHOR_END: upcasters

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_deposits_and_old_names_read_as_version_2() {
        // ANCHOR: decode
        let events: Vec<AccountEventV2> =
            annals::decode_payload("CashAdded", 1, r#"{"cents": 250}"#).unwrap();
        assert_eq!(
            events,
            [AccountEventV2::Deposited {
                cents: 250,
                reference: String::new()
            }]
        );
        // ANCHOR_END: decode
    }

    #[test]
    fn a_version_from_the_future_is_an_error_naming_it() {
        let error =
            annals::decode_payload::<AccountEventV2>("MoneyDeposited", 3, "{}").unwrap_err();
        assert!(
            error.to_string().contains("`MoneyDeposited` version 3"),
            "{error}"
        );
    }
}
