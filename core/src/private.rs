//! Items the macros' generated code reaches. Not a public API.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize as _, Deserializer, Serialize};

pub use crate::{DomainEvent, EventType, Payload, Upcasters};
pub use serde_json;
pub use tokio;

/// Encodes an externally tagged enum value as the payload of its variant
/// (`{"Variant": payload}` becomes `payload`; a unit variant becomes `null`).
///
/// One serialisation: serde_json writes the compact `{"Variant":payload}`,
/// and the payload is cut out of that text in place. The cut is checked to
/// be one JSON value, so an enum that is not externally tagged (an
/// internally tagged one writes `{"type":"Variant",...}`) is an error, not a
/// wrong payload.
pub fn encode_variant<T: Serialize>(value: &T) -> Result<Payload, serde_json::Error> {
    let mut text = serde_json::to_string(value)?;
    if text.starts_with('"') {
        return Payload::from_json("null".to_owned());
    }
    let start = variant_payload_start(&text).ok_or_else(|| {
        <serde_json::Error as de::Error>::custom(
            "an event enum must serialise externally tagged, as {\"Variant\": payload}",
        )
    })?;
    text.truncate(text.len() - 1);
    text.drain(..start);
    Payload::from_json(text)
}

/// Where the payload starts in serde_json's compact `{"Variant":payload}`:
/// after the key's closing quote (escapes skipped) and the colon; `None`
/// when `text` is not an object with a key and a closing brace.
fn variant_payload_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if !text.starts_with("{\"") || !text.ends_with('}') {
        return None;
    }
    let mut index = 2;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => break,
            _ => index += 1,
        }
    }
    (bytes.get(index + 1) == Some(&b':') && index + 2 < bytes.len() - 1).then_some(index + 2)
}

/// Encodes a struct event: its whole JSON is the payload.
pub fn encode_struct<T: Serialize>(value: &T) -> Result<Payload, serde_json::Error> {
    Payload::encode(value)
}

/// Decodes `payload` as the content of `variant` of the externally tagged
/// enum `T`, in one pass over the text.
pub fn decode_variant<T: DeserializeOwned>(
    variant: &'static str,
    payload: &str,
) -> Result<T, serde_json::Error> {
    T::deserialize(VariantDeserializer { variant, payload })
}

/// Decodes a struct event.
pub fn decode_struct<T: DeserializeOwned>(payload: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(payload)
}

/// The error for a type name that the generated `decode` does not know.
pub fn unknown_type(name: &str, version: u32) -> serde_json::Error {
    de::Error::custom(format_args!(
        "this event type does not decode `{name}` version {version}"
    ))
}

/// Presents `payload` to serde as `{variant: payload}`.
struct VariantDeserializer<'a> {
    variant: &'static str,
    payload: &'a str,
}

impl<'de> Deserializer<'de> for VariantDeserializer<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'a> de::EnumAccess<'a> for VariantDeserializer<'a> {
    type Error = serde_json::Error;
    type Variant = PayloadDeserializer<'a>;

    fn variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let name: de::value::StrDeserializer<'_, serde_json::Error> =
            self.variant.into_deserializer();
        let value = seed.deserialize(name)?;
        Ok((
            value,
            PayloadDeserializer {
                payload: self.payload,
            },
        ))
    }
}

struct PayloadDeserializer<'a> {
    payload: &'a str,
}

impl<'a> PayloadDeserializer<'a> {
    fn run<T>(
        self,
        read: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
        ) -> Result<T, serde_json::Error>,
    ) -> Result<T, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(self.payload);
        let value = read(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

impl<'a> de::VariantAccess<'a> for PayloadDeserializer<'a> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        // A unit variant is stored as `null`; older writers may have stored `{}`.
        self.run(|deserializer| de::IgnoredAny::deserialize(deserializer).map(drop))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        self.run(|deserializer| seed.deserialize(deserializer))
    }

    fn tuple_variant<V: Visitor<'a>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.run(|deserializer| deserializer.deserialize_tuple(len, visitor))
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.run(|deserializer| deserializer.deserialize_struct("", fields, visitor))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        a: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Unit,
        Newtype(Inner),
        Tuple(u8, String),
        Struct {
            x: i64,
            #[serde(default)]
            y: Option<String>,
        },
        #[serde(rename = "renamed")]
        Renamed(u8),
    }

    fn round_trip(value: Sample, variant: &'static str, payload: &str) {
        let encoded = encode_variant(&value).unwrap();
        assert_eq!(encoded.get(), payload);
        let decoded: Sample = decode_variant(variant, encoded.get()).unwrap();
        assert_eq!(decoded, value);
    }

    #[test]
    fn every_variant_shape_round_trips() {
        round_trip(Sample::Unit, "Unit", "null");
        round_trip(Sample::Newtype(Inner { a: 1 }), "Newtype", r#"{"a":1}"#);
        round_trip(Sample::Tuple(3, "x".into()), "Tuple", r#"[3,"x"]"#);
        round_trip(
            Sample::Struct { x: -1, y: None },
            "Struct",
            r#"{"x":-1,"y":null}"#,
        );
        round_trip(Sample::Renamed(9), "renamed", "9");
    }

    #[test]
    fn encoding_cuts_the_payload_after_an_escaped_variant_name() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Odd {
            #[serde(rename = "say \"hi\":{")]
            Quoted { text: String },
        }
        let value = Odd::Quoted { text: "}\"".into() };
        let encoded = encode_variant(&value).unwrap();
        assert_eq!(encoded.get(), r#"{"text":"}\""}"#);
        let decoded: Odd = decode_variant("say \"hi\":{", encoded.get()).unwrap();
        assert_eq!(decoded, value);
    }

    #[test]
    fn encoding_refuses_an_enum_that_is_not_externally_tagged() {
        #[derive(Serialize)]
        #[serde(tag = "type")]
        enum Internal {
            Made { id: u32 },
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Untagged {
            Plain(u32),
            Object { a: u32, b: u32 },
        }
        assert!(encode_variant(&Internal::Made { id: 1 }).is_err());
        assert!(encode_variant(&Untagged::Object { a: 1, b: 2 }).is_err());
        assert!(encode_variant(&Untagged::Plain(1)).is_err());
    }

    #[test]
    fn decoding_honours_serde_defaults_and_rejects_garbage() {
        let decoded: Sample = decode_variant("Struct", r#"{"x":5}"#).unwrap();
        assert_eq!(decoded, Sample::Struct { x: 5, y: None });
        assert!(decode_variant::<Sample>("Struct", r#"{"y":"no x"}"#).is_err());
        assert!(decode_variant::<Sample>("Struct", r#"{"x":5} trailing"#).is_err());
        assert!(decode_variant::<Sample>("Newtype", "not json").is_err());
        let unit: Sample = decode_variant("Unit", "{}").unwrap();
        assert_eq!(unit, Sample::Unit);
    }
}
