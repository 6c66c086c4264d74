//! Items the macros' generated code reaches. Not a public API.

use std::collections::HashMap;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize as _, Deserializer, Serialize};
use serde_json::value::RawValue;

pub use crate::{DomainEvent, EventType, Payload, Upcasters};
pub use serde_json;
pub use tokio;

/// Encodes an externally tagged enum value as the payload of its variant
/// (`{"Variant": payload}` becomes `payload`; a unit variant becomes `null`).
pub fn encode_variant<T: Serialize>(value: &T) -> Result<Payload, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    if text.starts_with('"') {
        return Payload::from_json("null".to_owned());
    }
    let tagged: HashMap<String, &RawValue> = serde_json::from_str(&text)?;
    match tagged.into_values().next() {
        Some(payload) => Ok(payload.to_owned().into()),
        None => Err(de::Error::custom(
            "an event enum serialised to an empty map",
        )),
    }
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
