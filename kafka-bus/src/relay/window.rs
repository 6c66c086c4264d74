//! The records of a session between being sent and being done, and the
//! contiguous prefix of done records that the checkpoint may cover.

use std::collections::VecDeque;
use std::time::Instant;

use annals::{GlobalPosition, OutboxRecord};

/// Records in outbox order, each in flight until the broker acked it, it was
/// parked, or recovery found it already published.
///
/// Deliveries complete out of order across partitions; the checkpoint may
/// only move over a prefix in which every record is done, or a crash would
/// skip the records still in flight below it.
#[derive(Debug)]
pub(super) struct AckWindow {
    /// The index of `entries[0]`; indexes count records since the session
    /// began and travel with each send as its delivery opaque.
    base: usize,
    entries: VecDeque<Entry>,
    done_through: GlobalPosition,
    in_flight: usize,
}

#[derive(Debug)]
struct Entry {
    position: GlobalPosition,
    /// When it entered the window, just before it was sent.
    sent_at: Instant,
    /// Kept until done, to be parked if the broker refuses it for good.
    record: Option<OutboxRecord>,
}

impl AckWindow {
    /// An empty window after `done_through`, the position below which
    /// everything is already done.
    pub(super) fn new(done_through: GlobalPosition) -> Self {
        AckWindow {
            base: 0,
            entries: VecDeque::new(),
            done_through,
            in_flight: 0,
        }
    }

    /// Adds the next record (positions only increase); returns its index.
    pub(super) fn push(&mut self, record: OutboxRecord) -> usize {
        debug_assert!(
            self.entries
                .back()
                .map_or(self.done_through, |entry| entry.position)
                < record.position,
            "records enter the window in outbox order"
        );
        self.entries.push_back(Entry {
            position: record.position,
            sent_at: Instant::now(),
            record: Some(record),
        });
        self.in_flight += 1;
        self.base + self.entries.len() - 1
    }

    /// The record at `index`, if it is still in flight.
    pub(super) fn record(&self, index: usize) -> Option<&OutboxRecord> {
        let entry = self.entries.get(index.checked_sub(self.base)?)?;
        entry.record.as_ref()
    }

    /// Marks `index` done; returns its record, or `None` when it was done
    /// already or is unknown (a late report from an earlier session).
    pub(super) fn complete(&mut self, index: usize) -> Option<OutboxRecord> {
        let offset = index.checked_sub(self.base)?;
        let record = self.entries.get_mut(offset)?.record.take()?;
        self.in_flight -= 1;
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.record.is_none())
        {
            let entry = self.entries.pop_front().expect("checked above");
            self.done_through = entry.position;
            self.base += 1;
        }
        Some(record)
    }

    /// The highest position at and below which every record is done.
    pub(super) fn done_through(&self) -> GlobalPosition {
        self.done_through
    }

    /// How many records are neither acked nor parked yet.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// When the oldest record still in flight was sent: the first entry,
    /// since done ones leave the front at once.
    pub(super) fn oldest_sent_at(&self) -> Option<Instant> {
        self.entries.front().map(|entry| entry.sent_at)
    }
}

#[cfg(test)]
mod tests {
    use annals::{Metadata, OutboxMessage, Payload, StreamId};
    use chrono::Utc;
    use proptest::prelude::*;

    use super::*;

    fn record(sequence: u64) -> OutboxRecord {
        OutboxRecord {
            position: GlobalPosition::new(1, sequence),
            recorded_at: Utc::now(),
            message: OutboxMessage {
                message_id: uuid::Uuid::now_v7(),
                topic: "t".into(),
                key: "k".into(),
                event_type: "E".into(),
                event_version: 1,
                payload: Payload::encode(&sequence).unwrap(),
                stream: StreamId::new("s").unwrap(),
                stream_version: sequence,
                metadata: Metadata::default(),
            },
        }
    }

    #[test]
    fn the_prefix_stops_at_the_first_record_in_flight() {
        let mut window = AckWindow::new(GlobalPosition::START);
        let indexes: Vec<usize> = (1..=4).map(|n| window.push(record(n))).collect();
        assert_eq!(indexes, [0, 1, 2, 3]);
        window.complete(1);
        window.complete(3);
        assert_eq!(window.done_through(), GlobalPosition::START);
        assert_eq!(window.in_flight(), 2);
        window.complete(0);
        assert_eq!(window.done_through(), GlobalPosition::new(1, 2));
        assert!(window.complete(1).is_none(), "a second report is ignored");
        window.complete(2);
        assert_eq!(window.done_through(), GlobalPosition::new(1, 4));
        assert_eq!(window.in_flight(), 0);
        assert!(window.record(4).is_none());
    }

    #[test]
    fn the_oldest_send_is_that_of_the_first_record_in_flight() {
        let mut window = AckWindow::new(GlobalPosition::START);
        assert!(window.oldest_sent_at().is_none());
        let first = window.push(record(1));
        let sent_first = window.oldest_sent_at().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = window.push(record(2));
        window.complete(second);
        assert_eq!(window.oldest_sent_at(), Some(sent_first), "still the first");
        window.complete(first);
        assert!(window.oldest_sent_at().is_none(), "nothing in flight");
        window.push(record(3));
        assert!(window.oldest_sent_at().unwrap() > sent_first);
    }

    proptest! {
        /// Whatever order the broker acks in, the window's prefix is exactly
        /// the highest position below which everything is acked.
        #[test]
        fn the_prefix_is_the_longest_fully_acked_one(
            count in 1usize..60,
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..80),
        ) {
            let mut window = AckWindow::new(GlobalPosition::START);
            for n in 1..=count {
                window.push(record(n as u64));
            }
            let mut acked = vec![false; count];
            for pick in order {
                let index = pick.index(count);
                let fresh = window.complete(index).is_some();
                prop_assert_eq!(fresh, !acked[index]);
                acked[index] = true;
                let prefix = acked.iter().take_while(|acked| **acked).count();
                prop_assert_eq!(window.done_through(), GlobalPosition::new(if prefix == 0 { 0 } else { 1 }, prefix as u64));
                prop_assert_eq!(window.in_flight(), acked.iter().filter(|acked| !**acked).count());
            }
        }
    }
}
