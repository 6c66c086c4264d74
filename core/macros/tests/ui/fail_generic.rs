use annals::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
enum Generic<T> {
    Placed(T),
}

fn main() {}
