//! The conformance suites: the contracts of the backend traits as
//! executable cases. A backend runs the suite of every trait it implements:
//!
//! | suite | contract | macro | factory yields |
//! | --- | --- | --- | --- |
//! | the store's | [`EventStore`], with [`OutboxReader`] to see the outbox it writes | [`conformance_tests!`](crate::conformance_tests) | a store |
//! | [`outbox_source`] | [`OutboxSource`] | [`outbox_source_tests!`](crate::outbox_source_tests) | `(store, source)` over the store's outbox |
//! | [`inbox`] | [`Inbox`] | [`inbox_tests!`](crate::inbox_tests) | an inbox |
//! | [`projection`] | [`ProjectionBackend`] | [`projection_backend_tests!`](crate::projection_backend_tests) | a [`projection::ProjectionFixture`] |
//!
//! Each macro generates one `#[test]` per case in a module of the given
//! name; name it `<suite>_<backend>` so that every test name carries both.
//! The factory is an async block that yields fresh, empty backends; it runs
//! once per case, on the case's runtime.
//!
//! ```
//! use annals::MemoryEventStore;
//!
//! annals::conformance_tests!(conformance_memory, async { MemoryEventStore::new() });
//! annals::outbox_source_tests!(outbox_source_memory, async {
//!     let store = MemoryEventStore::new();
//!     (store.clone(), store)
//! });
//! annals::inbox_tests!(inbox_memory, async { annals::MemoryInbox::new() });
//! ```
//!
//! Each case is also a public async function, for backends that need their
//! own harness.
//!
//! [`EventStore`]: crate::EventStore
//! [`OutboxReader`]: crate::OutboxReader
//! [`OutboxSource`]: crate::OutboxSource
//! [`Inbox`]: crate::Inbox
//! [`ProjectionBackend`]: crate::ProjectionBackend

pub mod commands;
pub mod decoding;
mod fixtures;
pub mod global;
pub mod inbox;
pub mod input;
pub mod outbox;
pub mod outbox_source;
pub mod projection;
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

/// Generates one `#[test]` per case of the [`OutboxSource`](crate::OutboxSource)
/// suite in a module named `$module`; `$factory` (an async block) yields
/// `(store, source)`: a fresh, empty store and the source over its outbox.
#[macro_export]
macro_rules! outbox_source_tests {
    ($module:ident, $factory:expr) => {
        $crate::__conformance_cases! {
            $module, $factory,
            outbox_source::shards_partition_the_outbox,
            outbox_source::checkpoints_round_trip_and_never_go_back,
            outbox_source::one_lease_per_shard_and_relay,
            outbox_source::in_flight_is_what_the_last_holder_recorded,
            outbox_source::prune_deletes_the_shard_up_to_the_limit,
            outbox_source::parked_records_come_back_oldest_first,
            outbox_source::backlog_counts_the_shard_after_the_checkpoint,
            outbox_source::the_outbox_signal_wakes_a_waiting_relay,
        }
    };
}

/// Generates one `#[test]` per case of the [`Inbox`](crate::Inbox) suite in
/// a module named `$module`; `$factory` (an async block) yields a fresh,
/// empty inbox.
#[macro_export]
macro_rules! inbox_tests {
    ($module:ident, $factory:expr) => {
        $crate::__conformance_cases! {
            $module, $factory,
            inbox::a_message_is_claimed_once_per_consumer,
            inbox::a_rolled_back_claim_is_forgotten,
            inbox::a_concurrent_claim_waits_for_the_first_transaction,
            inbox::prune_forgets_one_consumers_claims_before_a_time,
        }
    };
}

/// Generates one `#[test]` per case of the
/// [`ProjectionBackend`](crate::ProjectionBackend) suite in a module named
/// `$module`; `$factory` (an async block) yields a
/// [`ProjectionFixture`](crate::testing::conformance::projection::ProjectionFixture):
/// a fresh store, the backend over it, and the read model of the suite's
/// projection written with the backend's transactions.
///
/// ```
/// use annals::testing::conformance::projection::{MemoryTally, ProjectionFixture};
/// use annals::{MemoryEventStore, MemoryProjectionBackend};
///
/// annals::projection_backend_tests!(projection_memory, async {
///     ProjectionFixture {
///         store: MemoryEventStore::new(),
///         backend: MemoryProjectionBackend::new(),
///         model: MemoryTally::new(),
///     }
/// });
/// ```
#[macro_export]
macro_rules! projection_backend_tests {
    ($module:ident, $factory:expr) => {
        $crate::__conformance_cases! {
            $module, $factory,
            projection::catches_up_then_follows_live,
            projection::restarts_resume_from_the_checkpoint_applying_each_event_once,
            projection::events_of_other_types_advance_the_checkpoint_without_the_handler,
            projection::one_runner_applies_and_a_standby_takes_over_from_its_checkpoint,
            projection::a_projection_that_cannot_clear_its_read_model_refuses_a_reset,
            projection::the_status_counts_the_backlog_and_reaches_zero_when_caught_up,
            projection::a_poison_event_is_parked_and_stops_the_projection_until_fixed,
            projection::with_skip_a_poison_event_is_parked_counted_and_passed,
            projection::an_undecodable_event_of_a_known_type_stops_the_projection,
            projection::skipped_events_are_replayed_through_the_handle_once_fixed,
            projection::a_reset_clears_the_version_and_the_next_run_replays_everything_once,
            projection::the_first_version_serves_at_once_and_a_new_version_rebuilds_beside_it,
            projection::a_held_rebuild_shows_its_progress_while_the_serving_version_keeps_up,
            projection::checkpoints_move_only_from_where_they_are,
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
                        let backend = $factory.await;
                        $crate::testing::conformance::$group::$case(backend).await;
                    });
                }
            )+
        }
    };
}
