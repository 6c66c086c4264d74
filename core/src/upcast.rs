//! Upcasters: bring stored events of old schema versions (or old names) to
//! the types the code knows, when reading.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

use crate::{BoxError, DomainEvent, Error, StreamId};

/// How many upcasting steps one stored event may take before the chain is
/// assumed to loop.
const MAX_STEPS: usize = 64;

/// One event produced by an upcasting step.
#[derive(Debug, Clone, PartialEq)]
pub struct UpcastedEvent {
    /// Its type name.
    pub event_type: String,
    /// Its schema version.
    pub event_version: u32,
    /// Its payload.
    pub payload: Value,
}

type Step = Box<dyn Fn(Value) -> Result<Vec<UpcastedEvent>, BoxError> + Send + Sync>;

/// A set of upcasting steps, each keyed by the (type, version) it reads.
///
/// Steps chain: a stored `OrderPlaced` v1 goes through the v1 step, then the
/// v2 step, until it reaches a type and version the code decodes. A step may
/// rename the type or split one event into several (1-to-N). A missing step
/// is an [`Error::MissingUpcaster`] naming the type and version.
///
/// ```
/// use annals::{DomainEvent, Upcasters, UpcastedEvent};
/// use serde::{Deserialize, Serialize};
/// use serde_json::{json, Value};
///
/// fn upcasters() -> Upcasters {
///     Upcasters::new()
///         // v1 had no currency; v2 defaults it.
///         .upcast("PriceSet", 1, |mut payload: Value| {
///             payload["currency"] = json!("EUR");
///             Ok::<_, std::convert::Infallible>(payload)
///         })
///         // The type was once called PriceChanged.
///         .rename("PriceChanged", 1, "PriceSet")
/// }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
/// #[event(upcasters = upcasters)]
/// enum PriceEvent {
///     #[event(name = "PriceSet", version = 2)]
///     Set { cents: u64, currency: String },
/// }
///
/// let events: Vec<PriceEvent> =
///     annals::decode_payload("PriceChanged", 1, r#"{"cents":100}"#)?;
/// assert_eq!(events, [PriceEvent::Set { cents: 100, currency: "EUR".into() }]);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), Step>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.steps.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

impl Upcasters {
    /// No steps.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shared empty set, the default of [`DomainEvent::upcasters`].
    pub fn none() -> &'static Upcasters {
        static NONE: LazyLock<Upcasters> = LazyLock::new(Upcasters::new);
        &NONE
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The type names that steps read (each once, in no particular order).
    pub fn source_types(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.steps.keys().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// Adds a step from `event_type` at `from_version` to the same type at
    /// `from_version + 1`.
    ///
    /// # Panics
    /// When a step for the same type and version was added before: that is a
    /// mistake in the set-up code, found at start-up.
    pub fn upcast<E>(
        self,
        event_type: &str,
        from_version: u32,
        step: impl Fn(Value) -> Result<Value, E> + Send + Sync + 'static,
    ) -> Self
    where
        E: Into<BoxError>,
    {
        let to_type = event_type.to_owned();
        self.split(event_type, from_version, move |payload| {
            Ok::<_, BoxError>(vec![UpcastedEvent {
                event_type: to_type.clone(),
                event_version: from_version + 1,
                payload: step(payload).map_err(Into::into)?,
            }])
        })
    }

    /// Adds a step that renames `from_type` at `version` to `to_type` at the
    /// same version, leaving the payload as it is.
    ///
    /// # Panics
    /// As [`Upcasters::upcast`].
    pub fn rename(self, from_type: &str, version: u32, to_type: &str) -> Self {
        let to_type = to_type.to_owned();
        self.split(from_type, version, move |payload| {
            Ok::<_, BoxError>(vec![UpcastedEvent {
                event_type: to_type.clone(),
                event_version: version,
                payload,
            }])
        })
    }

    /// Adds a general step: `event_type` at `version` becomes any number of
    /// events (none drops it, several split it), each of any type and version.
    ///
    /// # Panics
    /// As [`Upcasters::upcast`].
    pub fn split<E>(
        mut self,
        event_type: &str,
        version: u32,
        step: impl Fn(Value) -> Result<Vec<UpcastedEvent>, E> + Send + Sync + 'static,
    ) -> Self
    where
        E: Into<BoxError>,
    {
        let key = (event_type.to_owned(), version);
        assert!(
            !self.steps.contains_key(&key),
            "two upcasters read `{event_type}` version {version}"
        );
        self.steps.insert(
            key,
            Box::new(move |payload| step(payload).map_err(Into::into)),
        );
        self
    }

    fn step(&self, event_type: &str, version: u32) -> Option<&Step> {
        if self.steps.is_empty() {
            return None;
        }
        self.steps.get(&(event_type.to_owned(), version))
    }
}

/// Where a stored event came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) stream: &'a StreamId,
    pub(crate) version: u64,
}

/// Decodes a stored payload into `E`, upcasting through `E::upcasters()`
/// first when `E` does not know the stored type and version.
///
/// Returns several events when an upcaster splits one, none when one drops it.
/// Readers normally get this for free through
/// [`RecordedEvent::decode`](crate::RecordedEvent::decode); the function is
/// public for consumers of payloads that did not come from a store.
pub fn decode_payload<E: DomainEvent>(
    event_type: &str,
    event_version: u32,
    payload: &str,
) -> Result<Vec<E>, Error> {
    static UNKNOWN: LazyLock<StreamId> =
        LazyLock::new(|| StreamId::new("(no stream)").expect("valid"));
    decode_stored(
        Origin {
            stream: &UNKNOWN,
            version: 0,
        },
        event_type,
        event_version,
        payload,
    )
}

pub(crate) fn decode_stored<E: DomainEvent>(
    origin: Origin<'_>,
    event_type: &str,
    event_version: u32,
    payload: &str,
) -> Result<Vec<E>, Error> {
    if E::knows(event_type, event_version) {
        return decode_known(origin, event_type, event_version, payload).map(|event| vec![event]);
    }
    let parsed: Value = serde_json::from_str(payload).map_err(|source| Error::Decode {
        stream: origin.stream.clone(),
        version: origin.version,
        event_type: event_type.to_owned(),
        event_version,
        source,
    })?;
    let upcasters = E::upcasters();
    let mut pending = VecDeque::from([UpcastedEvent {
        event_type: event_type.to_owned(),
        event_version,
        payload: parsed,
    }]);
    let mut decoded = Vec::new();
    let mut steps = 0;
    while let Some(item) = pending.pop_front() {
        if E::knows(&item.event_type, item.event_version) {
            let text = item.payload.to_string();
            decoded.push(decode_known(
                origin,
                &item.event_type,
                item.event_version,
                &text,
            )?);
            continue;
        }
        let Some(step) = upcasters.step(&item.event_type, item.event_version) else {
            return Err(no_way_forward::<E>(origin, item));
        };
        steps += 1;
        if steps > MAX_STEPS {
            return Err(Error::Upcast {
                stream: origin.stream.clone(),
                version: origin.version,
                event_type: item.event_type,
                event_version: item.event_version,
                source: format!("more than {MAX_STEPS} upcasting steps: the chain loops").into(),
            });
        }
        let outputs = step(item.payload).map_err(|source| Error::Upcast {
            stream: origin.stream.clone(),
            version: origin.version,
            event_type: item.event_type.clone(),
            event_version: item.event_version,
            source,
        })?;
        for output in outputs.into_iter().rev() {
            pending.push_front(output);
        }
    }
    Ok(decoded)
}

fn decode_known<E: DomainEvent>(
    origin: Origin<'_>,
    event_type: &str,
    event_version: u32,
    payload: &str,
) -> Result<E, Error> {
    E::decode(event_type, event_version, payload).map_err(|source| Error::Decode {
        stream: origin.stream.clone(),
        version: origin.version,
        event_type: event_type.to_owned(),
        event_version,
        source,
    })
}

fn no_way_forward<E: DomainEvent>(origin: Origin<'_>, item: UpcastedEvent) -> Error {
    match E::newest_version(&item.event_type) {
        Some(known_version) if known_version > item.event_version => Error::MissingUpcaster {
            stream: origin.stream.clone(),
            version: origin.version,
            event_type: item.event_type,
            event_version: item.event_version,
            known_version,
        },
        _ => Error::UnknownEventType {
            stream: origin.stream.clone(),
            version: origin.version,
            event_type: item.event_type,
            event_version: item.event_version,
        },
    }
}
