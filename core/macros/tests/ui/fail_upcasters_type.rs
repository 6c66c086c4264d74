use annals::DomainEvent;
use serde::{Deserialize, Serialize};

fn not_upcasters() -> u32 {
    0
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(upcasters = not_upcasters)]
enum WrongUpcasters {
    Placed,
}

fn main() {}
