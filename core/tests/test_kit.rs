//! The given/when/then kit passes what it should and explains failures.

use annals::testing::AggregateTest;
use annals::testing::conformance::{FixtureEvent, Tally, TallyCommand, TallyError};

fn added(amount: i64) -> FixtureEvent {
    FixtureEvent::Added {
        amount,
        note: String::new(),
    }
}

#[test]
fn then_checks_events_and_returns_the_new_state() {
    let state = AggregateTest::<Tally>::new()
        .given([added(5), FixtureEvent::Removed { amount: 2 }])
        .when(TallyCommand::Remove(3))
        .then([FixtureEvent::Removed { amount: 3 }]);
    assert_eq!(state.total, 0);
}

#[test]
fn then_error_checks_the_rejection() {
    AggregateTest::<Tally>::new()
        .given([added(1)])
        .when(TallyCommand::Remove(2))
        .then_error(TallyError {
            total: 1,
            amount: 2,
        });
    AggregateTest::<Tally>::new()
        .when(TallyCommand::Remove(2))
        .then_error_matches(|error| error.amount == 2);
}

#[test]
#[should_panic(expected = "+        amount: 4,")]
fn a_wrong_event_fails_with_a_diff() {
    AggregateTest::<Tally>::new()
        .when(TallyCommand::Add(4))
        .then([added(5)]);
}

#[test]
#[should_panic(expected = "but the command was refused")]
fn expecting_events_from_a_refused_command_fails() {
    AggregateTest::<Tally>::new()
        .when(TallyCommand::Remove(1))
        .then([FixtureEvent::Removed { amount: 1 }]);
}

#[test]
#[should_panic(expected = "but the command produced")]
fn expecting_an_error_from_an_accepted_command_fails() {
    AggregateTest::<Tally>::new()
        .when(TallyCommand::Add(1))
        .then_error(TallyError {
            total: 0,
            amount: 1,
        });
}
