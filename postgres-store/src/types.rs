//! How values cross the wire: transaction ids, positions, JSON text and
//! metadata.

use std::collections::BTreeMap;
use std::error::Error as StdError;

use annals::{GlobalPosition, Metadata};
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// A full (epoch-extended, 64-bit) transaction id: the `commit` half of a
/// [`GlobalPosition`](annals::GlobalPosition).
///
/// tokio-postgres has no mapping for `xid8`. Its binary form is an unsigned
/// 64-bit big-endian integer (`xid8send`), so it is read and written here
/// directly instead of casting through text in every statement, which would
/// also keep the (tx_id, position) index from serving the checkpoint
/// comparison. Public for statements of your own against the store's
/// `xid8` columns (`tx_id` of events, outbox and checkpoints).
///
/// ```
/// use annals_postgres::Xid8;
///
/// let position = annals::GlobalPosition::new(7, 42);
/// assert_eq!(Xid8(position.commit), Xid8(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xid8(pub u64);

impl ToSql for Xid8 {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_u64(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID8
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("an xid8 has 8 bytes, not {}", raw.len()))?;
        Ok(Xid8(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID8
    }
}

/// `u64` positions and versions as the `bigint` columns hold them: values
/// past `i64::MAX` cannot be stored, so they read as "after everything".
pub(crate) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A position as the statement parameters `(tx_id, position)`.
pub(crate) fn position_params(position: GlobalPosition) -> (Xid8, i64) {
    (Xid8(position.commit), bigint(position.sequence))
}

/// A schema version as the `integer` columns hold it; `what` (e.g. "message
/// 0193...") names what has it in the error, for a version past `i32::MAX`.
pub(crate) fn integer_version(
    version: u32,
    what: &dyn std::fmt::Display,
) -> Result<i32, annals::Error> {
    i32::try_from(version).map_err(|_| {
        annals::Error::Config(format!(
            "{what} has schema version {version}, larger than {}",
            i32::MAX
        ))
    })
}

/// JSON text written to a `jsonb` (or `json`) parameter as it is, and read
/// back as text, without parsing it into a value on the way: the server
/// parses it once, the reader decodes it once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonText<S>(pub(crate) S);

/// The version byte that starts the binary form of `jsonb`.
const JSONB_VERSION: u8 = 1;

impl<S: AsRef<str> + std::fmt::Debug> ToSql for JsonText<S> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::JSONB {
            out.put_u8(JSONB_VERSION);
        }
        out.put_slice(self.0.as_ref().as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for JsonText<&'a str> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((&JSONB_VERSION, text)) => text,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

/// The parts of [`Metadata`] without a column of their own, as stored in the
/// `metadata` column of `events`.
#[derive(Serialize)]
struct RestOfMetadata<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct StoredRestOfMetadata {
    tenant: Option<String>,
    user: Option<String>,
    traceparent: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The `metadata` column for `metadata`: `None` (NULL) when everything
/// beyond the ids is empty, as it mostly is.
pub(crate) fn rest_of_metadata(metadata: &Metadata) -> Result<Option<String>, serde_json::Error> {
    if metadata.tenant.is_none()
        && metadata.user.is_none()
        && metadata.traceparent.is_none()
        && metadata.headers.is_empty()
    {
        return Ok(None);
    }
    serde_json::to_string(&RestOfMetadata {
        tenant: metadata.tenant.as_deref(),
        user: metadata.user.as_deref(),
        traceparent: metadata.traceparent.as_deref(),
        headers: &metadata.headers,
    })
    .map(Some)
}

/// Rebuilds [`Metadata`] from the id columns and the `metadata` column.
pub(crate) fn metadata_from_columns(
    correlation_id: Option<uuid::Uuid>,
    causation_id: Option<uuid::Uuid>,
    command_id: Option<uuid::Uuid>,
    rest: Option<JsonText<&str>>,
) -> Result<Metadata, serde_json::Error> {
    let mut metadata = Metadata {
        correlation_id,
        causation_id,
        command_id,
        ..Metadata::default()
    };
    if let Some(JsonText(text)) = rest {
        let rest: StoredRestOfMetadata = serde_json::from_str(text)?;
        metadata.tenant = rest.tenant;
        metadata.user = rest.user;
        metadata.traceparent = rest.traceparent;
        metadata.headers = rest.headers;
    }
    Ok(metadata)
}

/// `annals::key_hash(key)` as the outbox's `key_hash` column holds it: the
/// u32's bits in a signed `integer` (PostgreSQL has no unsigned type). SQL
/// gets the u32 back with `key_hash::bigint & 4294967295`.
pub(crate) fn key_hash_column(key: &str) -> i32 {
    i32::from_ne_bytes(annals::key_hash(key).to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_keep_their_bits_in_the_signed_column() {
        // 0xe40c292c has its top bit set: stored negative, read back whole
        // with `key_hash::bigint & 4294967295`.
        let stored = key_hash_column("a");
        assert!(stored < 0);
        assert_eq!(i64::from(stored) & 0xffff_ffff, 0xe40c_292c);
        assert_eq!(i64::from(key_hash_column("")) & 0xffff_ffff, 0x811c_9dc5);
    }

    #[test]
    fn metadata_round_trips_through_its_columns() {
        let empty = Metadata {
            correlation_id: Some(uuid::Uuid::now_v7()),
            ..Metadata::default()
        };
        assert_eq!(rest_of_metadata(&empty).unwrap(), None);
        let full = Metadata {
            tenant: Some("acme".into()),
            user: Some("alice".into()),
            traceparent: Some("00-1-2-01".into()),
            headers: [("a".to_owned(), "b ✓".to_owned())].into(),
            ..empty.clone()
        };
        let rest = rest_of_metadata(&full).unwrap().unwrap();
        let back = metadata_from_columns(
            full.correlation_id,
            None,
            None,
            Some(JsonText(rest.as_str())),
        )
        .unwrap();
        assert_eq!(back, full);
    }

    #[test]
    fn xid8_and_jsonb_use_the_binary_forms() {
        let mut out = BytesMut::new();
        Xid8(0x0102).to_sql(&Type::XID8, &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(Xid8::from_sql(&Type::XID8, &out).unwrap(), Xid8(0x0102));
        let mut out = BytesMut::new();
        JsonText("{}").to_sql(&Type::JSONB, &mut out).unwrap();
        assert_eq!(&out[..], b"\x01{}");
        assert_eq!(JsonText::from_sql(&Type::JSONB, &out).unwrap().0, "{}");
    }
}
