use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum ZeroVersion {
    #[event(name = "Placed", version = 0)]
    Placed,
}

fn main() {}
