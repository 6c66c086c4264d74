//! The conformance suite: the contract of [`EventStore`] and
//! [`OutboxReader`] as executable cases. Every backend runs all of them.
//!
//! Generate the tests with [`conformance_tests!`](crate::conformance_tests),
//! naming the module `conformance_<backend>` so that every test name
//! carries both words. The factory is an async block that yields a fresh,
//! empty store; it runs once per case.
//!
//! ```
//! annals::conformance_tests!(conformance_memory, async { annals::MemoryEventStore::new() });
//! ```
//!
//! Each case is also a public async function, for backends that need their
//! own harness.
//!
//! [`EventStore`]: crate::EventStore
//! [`OutboxReader`]: crate::OutboxReader

pub mod commands;
pub mod decoding;
mod fixtures;
pub mod global;
pub mod input;
pub mod outbox;
pub mod repository;
pub mod snapshots;
pub mod streams;
pub mod unit_of_work;

use std::time::Duration;

pub use fixtures::{
    FixtureEvent, Tally, TallyCommand, TallyError, added, read_everything, read_stream, stream,
};

/// How long one case may run before it is failed as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs one case on a multi-threaded runtime, failing it when it outlasts
/// [`CASE_TIMEOUT`].
///
/// # Panics
/// When the runtime cannot start, the case panics or it times out.
pub fn run<F: Future<Output = ()>>(case: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case");
    runtime.block_on(async {
        if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
            panic!("the conformance case did not finish within {CASE_TIMEOUT:?}");
        }
    });
}

/// Generates one `#[test]` per conformance case in a module named
/// `$module`, each running the case on the store that `$factory` (an async
/// block, evaluated once per case inside the module, which sees the
/// enclosing module's items) yields.
#[macro_export]
macro_rules! conformance_tests {
    ($module:ident, $factory:expr) => {
        $crate::__conformance_cases! {
            $module, $factory,
            streams::append_to_new_stream_starts_at_version_one,
            streams::exact_version_appends_chain,
            streams::stale_exact_version_conflicts_with_the_actual_version,
            streams::no_stream_on_an_existing_stream_conflicts,
            streams::stream_exists_on_a_missing_stream_conflicts,
            streams::any_version_appends_to_new_and_existing_streams,
            streams::conflicting_append_writes_nothing,
            streams::concurrent_writers_one_winner_per_version,
            streams::read_stream_from_a_version_returns_the_suffix,
            streams::missing_stream_reads_empty_and_has_no_version,
            streams::recorded_events_keep_ids_types_payloads_and_metadata,
            streams::streams_are_independent,
            global::positions_strictly_increase_in_commit_order,
            global::read_all_after_any_checkpoint_returns_exactly_the_suffix,
            global::read_all_pages_without_gaps_or_repeats,
            global::global_order_agrees_with_stream_versions_under_concurrency,
            global::events_of_one_append_are_contiguous_and_share_a_commit,
            global::append_signal_wakes_a_waiting_reader,
            global::random_histories_keep_a_total_order,
            commands::repeated_command_id_returns_the_first_outcome_and_appends_nothing,
            commands::command_id_is_checked_before_the_expected_version,
            commands::command_outcome_is_recorded,
            commands::duplicate_event_id_is_rejected,
            snapshots::snapshot_is_stored_at_the_appends_last_version,
            snapshots::newest_snapshot_wins,
            snapshots::stream_without_snapshot_has_none,
            snapshots::read_from_snapshot_returns_the_snapshot_and_the_events_after_it,
            snapshots::read_from_snapshot_at_the_last_version_has_no_events,
            snapshots::read_from_snapshot_without_one_reads_every_event,
            unit_of_work::unit_of_work_appends_every_stream_in_one_commit,
            unit_of_work::unit_of_work_conflict_writes_nothing,
            unit_of_work::unit_of_work_rejects_a_stream_twice,
            unit_of_work::unit_of_work_with_a_duplicate_command_writes_the_rest,
            outbox::outbox_messages_are_written_with_their_events,
            outbox::outbox_is_not_written_on_conflict,
            outbox::outbox_follows_commit_order,
            decoding::upcasting_on_read_brings_old_versions_up_to_date,
            decoding::upcasting_renames_and_splits,
            decoding::missing_upcaster_step_is_a_typed_error,
            decoding::unknown_event_type_is_a_typed_error,
            decoding::undecodable_payload_is_a_typed_error,
            input::oversized_payload_is_rejected_before_anything_is_written,
            input::empty_append_is_rejected,
            input::invalid_event_type_is_rejected,
            input::invalid_outbox_topic_is_rejected,
            input::too_many_events_are_rejected,
            repository::repository_reloads_through_snapshots,
            repository::concurrent_commands_on_one_aggregate_all_land,
            repository::resent_command_returns_the_first_outcome,
            repository::snapshot_of_another_state_version_is_ignored,
            repository::undecodable_snapshot_is_ignored,
            repository::integration_events_reach_the_outbox,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($module:ident, $factory:expr, $($group:ident :: $case:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $case() {
                    $crate::testing::conformance::run(async {
                        let store = $factory.await;
                        $crate::testing::conformance::$group::$case(store).await;
                    });
                }
            )+
        }
    };
}
