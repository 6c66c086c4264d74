use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum Skipped {
    Placed,
    #[serde(skip)]
    Hidden,
}

fn main() {}
