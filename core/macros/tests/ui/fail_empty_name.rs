use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum EmptyName {
    #[event(name = "")]
    Placed,
}

fn main() {}
