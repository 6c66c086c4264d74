//! The in-memory backends pass the conformance suite of every backend
//! trait.

use annals::testing::conformance::projection::{MemoryTally, ProjectionFixture};
use annals::{MemoryEventStore, MemoryInbox, MemoryProjectionBackend};

annals::conformance_tests!(conformance_memory, async { MemoryEventStore::new() });

annals::outbox_source_tests!(outbox_source_memory, async {
    let store = MemoryEventStore::new();
    (store.clone(), store)
});

annals::inbox_tests!(inbox_memory, async { MemoryInbox::new() });

annals::projection_backend_tests!(projection_memory, async {
    ProjectionFixture {
        store: MemoryEventStore::new(),
        backend: MemoryProjectionBackend::new(),
        model: MemoryTally::new(),
    }
});
