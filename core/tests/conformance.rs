//! The in-memory store passes the store conformance suite.

annals::conformance_tests!(conformance_memory, async {
    annals::MemoryEventStore::new()
});
