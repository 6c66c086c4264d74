//! The events, aggregate and helpers the cases share.

use std::convert::Infallible;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Aggregate, DomainEvent, EventStore, GlobalPosition, Metadata, NewEvent, RecordedEvent,
    StreamId, UpcastedEvent, Upcasters,
};

/// The event type of the suite, with upcasters for its older shapes:
/// `Added` v1 (no note), `Subtracted` v1 (renamed to `Removed`), `Moved` v1
/// (split into `Removed` and `Added`) and `Tagged` v1 (whose step from v2 to
/// v3 is missing on purpose).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(upcasters = fixture_upcasters)]
pub enum FixtureEvent {
    /// Adds to the tally.
    #[event(name = "Added", version = 2)]
    Added {
        /// How much.
        amount: i64,
        /// Why.
        note: String,
    },
    /// Removes from the tally.
    #[event(name = "Removed")]
    Removed {
        /// How much.
        amount: i64,
    },
    /// Sets the tally to zero.
    #[event(name = "Reset")]
    Reset,
    /// A label.
    #[event(name = "Tagged", version = 3)]
    Tagged {
        /// The label.
        tag: String,
    },
}

fn fixture_upcasters() -> Upcasters {
    Upcasters::new()
        .upcast("Added", 1, |mut payload| {
            payload["note"] = json!("");
            Ok::<_, Infallible>(payload)
        })
        .rename("Subtracted", 1, "Removed")
        .split("Moved", 1, |payload| {
            Ok::<_, Infallible>(vec![
                UpcastedEvent {
                    event_type: "Removed".into(),
                    event_version: 1,
                    payload: json!({ "amount": payload["amount"] }),
                },
                UpcastedEvent {
                    event_type: "Added".into(),
                    event_version: 1,
                    payload: json!({ "amount": payload["amount"] }),
                },
            ])
        })
        .upcast("Tagged", 1, Ok::<_, Infallible>)
}

/// An `Added` event with a new id.
pub fn added(amount: i64) -> NewEvent {
    NewEvent::new(
        &FixtureEvent::Added {
            amount,
            note: format!("add {amount}"),
        },
        Metadata::default(),
    )
    .expect("fixture events encode")
}

/// A valid stream id.
pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("fixture stream ids are valid")
}

/// Every event of `stream`.
pub async fn read_stream<S: EventStore>(store: &S, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(stream.clone(), 1)
        .try_collect()
        .await
        .expect("reading a stream")
}

/// Every event of the global stream after `after`, read in pages of 100.
pub async fn read_everything<S: EventStore>(
    store: &S,
    after: GlobalPosition,
) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut checkpoint = after;
    loop {
        let page = store
            .read_all(checkpoint, 100)
            .await
            .expect("reading the global stream");
        let Some(last) = page.last() else {
            return events;
        };
        checkpoint = last.position;
        events.extend(page);
    }
}

/// The aggregate of the repository cases: a running total that may not go
/// below zero.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// The total.
    pub total: i64,
    /// How many events were applied.
    pub applied: u64,
}

/// What a [`Tally`] can be asked.
#[derive(Debug, Clone, PartialEq)]
pub enum TallyCommand {
    /// Add an amount.
    Add(i64),
    /// Remove an amount; refused if the total would go below zero.
    Remove(i64),
}

/// Why a [`Tally`] refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the total {total} cannot go below zero by removing {amount}")]
pub struct TallyError {
    /// The total at the time.
    pub total: i64,
    /// What was to be removed.
    pub amount: i64,
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = FixtureEvent;
    type Error = TallyError;
    type Services = ();

    fn handle(&self, command: &TallyCommand, _: &()) -> Result<Vec<FixtureEvent>, TallyError> {
        match *command {
            TallyCommand::Add(amount) => Ok(vec![FixtureEvent::Added {
                amount,
                note: String::new(),
            }]),
            TallyCommand::Remove(amount) if amount > self.total => Err(TallyError {
                total: self.total,
                amount,
            }),
            TallyCommand::Remove(amount) => Ok(vec![FixtureEvent::Removed { amount }]),
        }
    }

    fn apply(&mut self, event: &FixtureEvent) {
        self.applied += 1;
        match event {
            FixtureEvent::Added { amount, .. } => self.total += amount,
            FixtureEvent::Removed { amount } => self.total -= amount,
            FixtureEvent::Reset => self.total = 0,
            FixtureEvent::Tagged { .. } => {}
        }
    }
}
