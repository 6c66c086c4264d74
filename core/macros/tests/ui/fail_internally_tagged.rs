use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type")]
enum Tagged {
    Placed { id: u32 },
}

fn main() {}
