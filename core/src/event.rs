//! Domain events: a stable type name and a schema version per type.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Upcasters;

/// The JSON text of an event, snapshot or message payload, kept as text so
/// that it is stored and relayed without being parsed again.
///
/// Equality compares the text: a store may normalise JSON (Postgres `jsonb`
/// reorders keys and adds spaces), so compare [`Payload::to_value`] to
/// compare meaning.
///
/// ```
/// use annals::Payload;
///
/// let payload = Payload::from_json(r#"{"cents": 250}"#.to_owned())?;
/// assert_eq!(payload.to_value()?["cents"], 250);
/// assert!(Payload::from_json("{not json".to_owned()).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// Checks that `text` is JSON and keeps it as it is.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Payload)
    }

    /// Serialises `value`.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Payload)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether the text is empty (never, for valid JSON).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// Parses the text into a JSON value.
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Deserialises the text.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The raw value.
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The boxed raw value.
    pub fn into_raw(self) -> Box<RawValue> {
        self.0
    }
}

impl From<Box<RawValue>> for Payload {
    fn from(raw: Box<RawValue>) -> Self {
        Payload(raw)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Payload)
    }
}

/// The stored name and schema version of one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType {
    /// The stable name, e.g. `OrderPlaced`. It must not change when the Rust
    /// type is renamed; renaming a stored type takes an upcaster.
    pub name: &'static str,
    /// The schema version of the payload, starting at 1.
    pub version: u32,
}

impl EventType {
    /// A type name and version.
    pub const fn new(name: &'static str, version: u32) -> Self {
        EventType { name, version }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// An event of the domain, stored as a type name, a schema version and a JSON
/// payload.
///
/// Implement it with `#[derive(DomainEvent)]` on an enum (one stored type per
/// variant) or a struct (one stored type). The enum must use serde's default
/// (externally tagged) representation; the payload of a variant is its
/// content, the type name is stored beside it.
///
/// ```
/// use annals::{DomainEvent, EventType};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// enum AccountEvent {
///     #[event(name = "AccountOpened", version = 2)]
///     Opened { owner: String, currency: String },
///     #[event(name = "MoneyDeposited")]
///     Deposited { cents: u64 },
///     #[event(name = "AccountClosed")]
///     Closed,
/// }
///
/// let event = AccountEvent::Deposited { cents: 250 };
/// assert_eq!(event.event_type(), EventType::new("MoneyDeposited", 1));
/// let payload = event.encode()?;
/// assert_eq!(payload.get(), r#"{"cents":250}"#);
/// let back = AccountEvent::decode("MoneyDeposited", 1, payload.get())?;
/// assert_eq!(back, event);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// Every stored type (name and version) that [`DomainEvent::decode`]
    /// accepts.
    const TYPES: &'static [EventType];

    /// The stored type of this value.
    fn event_type(&self) -> EventType;

    /// The payload of this value as JSON (without the type name).
    fn encode(&self) -> Result<Payload, serde_json::Error>;

    /// Decodes a payload stored under `name` at `version`, which must be one
    /// of [`DomainEvent::TYPES`].
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, serde_json::Error>;

    /// The upcasters that bring stored events of older versions (or older
    /// names) to the ones in [`DomainEvent::TYPES`]. None by default; the
    /// derive takes `#[event(upcasters = path::to_fn)]`.
    fn upcasters() -> &'static Upcasters {
        Upcasters::none()
    }

    /// Whether `name` at `version` is one of [`DomainEvent::TYPES`].
    fn knows(name: &str, version: u32) -> bool {
        Self::TYPES
            .iter()
            .any(|known| known.name == name && known.version == version)
    }

    /// The newest version of `name` in [`DomainEvent::TYPES`], if any.
    fn newest_version(name: &str) -> Option<u32> {
        Self::TYPES
            .iter()
            .filter(|known| known.name == name)
            .map(|known| known.version)
            .max()
    }
}
