use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum Duplicated {
    #[event(name = "Placed", version = 2)]
    First,
    #[event(name = "Placed", version = 2)]
    Second,
}

fn main() {}
