//! Given events, when a command, then events or an error.

use std::fmt::{self, Debug};

use similar::TextDiff;

use crate::Aggregate;

/// Tests an aggregate's decisions without a store: given past events, when a
/// command is handled, then these events (or this error) come out.
///
/// Failures print a line diff of the expected and actual events.
///
/// ```
/// # use annals::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default, Serialize, Deserialize)]
/// # struct Light { on: bool }
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// # enum LightEvent { #[event(name = "SwitchedOn")] SwitchedOn, #[event(name = "SwitchedOff")] SwitchedOff }
/// # #[derive(Debug, PartialEq, thiserror::Error)] #[error("already on")] struct AlreadyOn;
/// # struct SwitchOn;
/// # impl Aggregate for Light {
/// #     const TYPE: &'static str = "light";
/// #     type Command = SwitchOn; type Event = LightEvent; type Error = AlreadyOn; type Services = ();
/// #     fn handle(&self, _: &SwitchOn, _: &()) -> Result<Vec<LightEvent>, AlreadyOn> {
/// #         if self.on { Err(AlreadyOn) } else { Ok(vec![LightEvent::SwitchedOn]) }
/// #     }
/// #     fn apply(&mut self, e: &LightEvent) { self.on = matches!(e, LightEvent::SwitchedOn); }
/// # }
/// use annals::testing::AggregateTest;
///
/// AggregateTest::<Light>::new()
///     .given([LightEvent::SwitchedOff])
///     .when(SwitchOn)
///     .then([LightEvent::SwitchedOn]);
///
/// AggregateTest::<Light>::new()
///     .given([LightEvent::SwitchedOn])
///     .when(SwitchOn)
///     .then_error(AlreadyOn);
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
    services: A::Services,
    given: usize,
}

impl<A: Aggregate> Debug for AggregateTest<A>
where
    A: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTest")
            .field("state", &self.state)
            .field("given", &self.given)
            .finish()
    }
}

impl<A: Aggregate> Default for AggregateTest<A>
where
    A::Services: Default,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> AggregateTest<A> {
    /// A test with default services.
    pub fn new() -> Self
    where
        A::Services: Default,
    {
        Self::with_services(A::Services::default())
    }

    /// A test whose aggregate decides with `services`.
    pub fn with_services(services: A::Services) -> Self {
        AggregateTest {
            state: A::default(),
            services,
            given: 0,
        }
    }

    /// Applies past events.
    pub fn given(mut self, events: impl IntoIterator<Item = A::Event>) -> Self {
        for event in events {
            self.state.apply(&event);
            self.given += 1;
        }
        self
    }

    /// Handles `command` on the state the given events produced.
    pub fn when(self, command: A::Command) -> Then<A> {
        let result = self.state.handle(&command, &self.services);
        Then {
            state: self.state,
            result,
        }
    }
}

/// The outcome of [`AggregateTest::when`], to check.
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Debug for Then<A>
where
    A::Event: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Then<A>
where
    A::Event: Debug + PartialEq,
{
    /// Asserts that the command produced exactly `expected`, in order, and
    /// returns the state after applying them.
    ///
    /// # Panics
    /// With a diff when the events differ, or with the error when the command
    /// was refused.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(actual) => {
                if actual != expected {
                    panic!(
                        "the command produced other events than expected\n{}",
                        diff(&expected, &actual)
                    );
                }
                let mut state = self.state;
                for event in &actual {
                    state.apply(event);
                }
                state
            }
            Err(error) => panic!(
                "expected events {expected:#?}\nbut the command was refused: {error} ({error:?})"
            ),
        }
    }

    /// Asserts that the command was refused with an error equal to
    /// `expected`.
    ///
    /// # Panics
    /// When the command produced events or another error.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Err(actual) if actual == expected => {}
            Err(actual) => panic!(
                "expected the error {expected:?} ({expected})\nbut got {actual:?} ({actual})"
            ),
            Ok(events) => panic!(
                "expected the error {expected:?} ({expected})\nbut the command produced {events:#?}"
            ),
        }
    }

    /// Asserts that the command was refused with an error for which `check`
    /// holds, for error types without `PartialEq`.
    ///
    /// # Panics
    /// When the command produced events or `check` fails.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Err(actual) if check(&actual) => {}
            Err(actual) => {
                panic!("the command was refused with an unexpected error: {actual:?} ({actual})")
            }
            Ok(events) => panic!("expected an error but the command produced {events:#?}"),
        }
    }

    /// Asserts that the command produced no events.
    ///
    /// # Panics
    /// When it produced events or was refused.
    #[track_caller]
    pub fn then_nothing(self) {
        self.then([]);
    }
}

/// A unified line diff of the pretty-printed event lists.
fn diff<E: Debug>(expected: &[E], actual: &[E]) -> String {
    let expected = format!("{expected:#?}\n");
    let actual = format!("{actual:#?}\n");
    TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(4)
        .header("expected", "actual")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Sample {
        name: &'static str,
        amount: u32,
    }

    #[test]
    fn diff_marks_changed_lines() {
        let expected = [Sample {
            name: "a",
            amount: 1,
        }];
        let actual = [Sample {
            name: "a",
            amount: 2,
        }];
        let text = diff(&expected, &actual);
        assert!(text.contains("--- expected"), "{text}");
        assert!(text.contains("-        amount: 1,"), "{text}");
        assert!(text.contains("+        amount: 2,"), "{text}");
    }
}
