use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum UnknownOption {
    #[event(name = "Placed", topic = "orders")]
    Placed,
}

fn main() {}
