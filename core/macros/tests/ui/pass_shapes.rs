use annals::{DomainEvent, EventType, Upcasters};
use serde::{Deserialize, Serialize};

fn upcasters() -> Upcasters {
    Upcasters::new().rename("Old", 1, "Unit")
}

#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = upcasters)]
enum Shapes {
    #[event(name = "Unit")]
    Unit,
    #[event(name = "Tuple", version = 3)]
    Tuple(u8, String),
    Struct {
        field: i64,
    },
    #[serde(rename = "renamed")]
    #[event(name = "Renamed", version = 2)]
    Renamed(u8),
}

#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "Standalone", version = 4)]
struct Standalone {
    x: u8,
}

mod renamed_crate {
    pub use annals as framework;
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(crate = renamed_crate::framework)]
struct ThroughRenamedCrate;

fn main() {
    assert_eq!(Shapes::Struct { field: 1 }.event_type(), EventType::new("Struct", 1));
    assert_eq!(Shapes::Renamed(1).event_type(), EventType::new("Renamed", 2));
    let payload = Shapes::Renamed(7).encode().unwrap();
    assert_eq!(Shapes::decode("Renamed", 2, payload.get()).unwrap(), Shapes::Renamed(7));
    assert_eq!(Standalone::TYPES, &[EventType::new("Standalone", 4)]);
    assert!(Shapes::upcasters().is_empty() == false);
    let _ = ThroughRenamedCrate.encode().unwrap();
}
