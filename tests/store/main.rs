//! The PostgreSQL event store against a real PostgreSQL: the conformance
//! suite, the gap-free global stream under held-open and rolled-back
//! transactions, migrations, restarts and the rest of its own contract.
//!
//! PostgreSQL is found through `ANNALS_TEST_DATABASE_URL`; without it a
//! container is started.

mod common;
mod gap;
mod group_commit;
mod inbox;
mod migration;
mod notify;
mod outbox_source;
mod projection;
mod reads;
mod restart;
mod statements;

annals::conformance_tests!(conformance_postgres, async {
    crate::common::fresh_store().await
});
