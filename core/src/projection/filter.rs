//! Which stored events a projection reads.

use std::collections::BTreeSet;

use crate::{DomainEvent, RecordedEvent};

/// Selects stored events by type name and by stream id prefix, before they
/// are decoded.
///
/// ```
/// use annals::EventFilter;
///
/// let filter = EventFilter::all()
///     .with_types(["OrderPlaced", "OrderConfirmed"])
///     .with_stream_prefix("order-");
/// assert!(filter.accepts("order-7", "OrderPlaced"));
/// assert!(!filter.accepts("order-7", "StockReserved"));
/// assert!(!filter.accepts("cart-7", "OrderPlaced"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    types: Option<BTreeSet<String>>,
    stream_prefixes: Vec<String>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// The types `E` decodes, directly or through its upcasters.
    pub fn for_event<E: DomainEvent>() -> Self {
        let types = E::TYPES
            .iter()
            .map(|known| known.name.to_owned())
            .chain(E::upcasters().source_types().map(str::to_owned))
            .collect();
        EventFilter {
            types: Some(types),
            stream_prefixes: Vec::new(),
        }
    }

    /// Only these type names (replacing any earlier type selection).
    pub fn with_types<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only streams whose id starts with `prefix` (any of the prefixes, when
    /// called more than once).
    pub fn with_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefixes.push(prefix.into());
        self
    }

    /// The selected type names, `None` for all.
    pub fn types(&self) -> Option<&BTreeSet<String>> {
        self.types.as_ref()
    }

    /// The selected stream prefixes, empty for all.
    pub fn stream_prefixes(&self) -> &[String] {
        &self.stream_prefixes
    }

    /// Whether an event of `event_type` in `stream` is selected.
    pub fn accepts(&self, stream: &str, event_type: &str) -> bool {
        let type_ok = self
            .types
            .as_ref()
            .is_none_or(|types| types.contains(event_type));
        let stream_ok = self.stream_prefixes.is_empty()
            || self
                .stream_prefixes
                .iter()
                .any(|prefix| stream.starts_with(prefix.as_str()));
        type_ok && stream_ok
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &RecordedEvent) -> bool {
        self.accepts(record.stream.as_str(), &record.event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing_fixture::Sample;

    #[test]
    fn for_event_takes_known_and_upcasted_types() {
        let filter = EventFilter::for_event::<Sample>();
        assert!(filter.accepts("any", "SampleAdded"));
        assert!(
            filter.accepts("any", "SampleCreated"),
            "an upcaster reads it"
        );
        assert!(!filter.accepts("any", "Unrelated"));
        assert!(EventFilter::all().accepts("any", "Unrelated"));
    }
}
