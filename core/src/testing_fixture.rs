//! Event types for the crate's own unit tests.

use serde::{Deserialize, Serialize};

use crate::{DomainEvent, Upcasters};

fn sample_upcasters() -> Upcasters {
    Upcasters::new().rename("SampleCreated", 1, "SampleAdded")
}

/// A small event type with one upcaster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = sample_upcasters)]
pub(crate) enum Sample {
    #[event(name = "SampleAdded")]
    Added { amount: i64 },
    #[event(name = "SampleFailed")]
    Failed,
}
