use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "Order")]
enum NameOnEnum {
    Placed,
}

fn main() {}
