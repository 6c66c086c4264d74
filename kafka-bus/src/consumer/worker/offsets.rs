//! Which offset of a partition may be committed: the contiguous prefix of
//! settled records, never past one that is still kept for a blocked key.

use std::collections::BTreeSet;

/// The records of one partition a worker has settled (handled,
/// dead-lettered, skipped) and those it keeps for blocked keys.
///
/// Records are taken in offset order and each is settled or kept before the
/// next is taken, so every offset below the last settled one is settled,
/// except those kept: the committable offset is the lowest kept one, or the
/// last settled one + 1.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    settled_until: Option<i64>,
    kept: BTreeSet<i64>,
}

impl OffsetTracker {
    /// Records that the record at `offset` is settled.
    pub(crate) fn settle(&mut self, offset: i64) {
        self.kept.remove(&offset);
        self.settled_until = Some(
            self.settled_until
                .map_or(offset + 1, |until| until.max(offset + 1)),
        );
    }

    /// Records that the record at `offset` is kept for a blocked key.
    pub(crate) fn keep(&mut self, offset: i64) {
        self.kept.insert(offset);
    }

    /// The offset to commit: where a restart must begin so that nothing
    /// unsettled is skipped. `None` before anything was settled or kept.
    pub(crate) fn committable(&self) -> Option<i64> {
        match (self.kept.first(), self.settled_until) {
            (Some(kept), _) => Some(*kept),
            (None, until) => until,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever records are kept and in which order they are settled
        /// later, the committable offset never passes an unsettled record and
        /// never goes back.
        #[test]
        fn never_past_an_unsettled_record(
            kept_at in proptest::collection::btree_set(0i64..60, 0..12),
            settle_order in Just((0i64..60).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let mut tracker = OffsetTracker::default();
            let mut unsettled: BTreeSet<i64> = BTreeSet::new();
            let mut last = None;
            for offset in 0..60 {
                if kept_at.contains(&offset) {
                    tracker.keep(offset);
                    unsettled.insert(offset);
                } else {
                    tracker.settle(offset);
                }
                check(&tracker, &unsettled, offset + 1, &mut last);
            }
            for offset in settle_order.into_iter().filter(|offset| kept_at.contains(offset)) {
                tracker.settle(offset);
                unsettled.remove(&offset);
                check(&tracker, &unsettled, 60, &mut last);
            }
            prop_assert_eq!(tracker.committable(), Some(60));
            prop_assert!(tracker.kept.is_empty());
        }
    }

    fn check(
        tracker: &OffsetTracker,
        unsettled: &BTreeSet<i64>,
        taken: i64,
        last: &mut Option<i64>,
    ) {
        let committable = tracker.committable().expect("something was taken");
        let expected = unsettled.first().copied().unwrap_or(taken);
        assert_eq!(committable, expected);
        assert!(last.is_none_or(|last| last <= committable), "went back");
        *last = Some(committable);
    }
}
