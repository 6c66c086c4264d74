//! The schema name, validated before any SQL runs.

use crate::statements::template::{expand, fill};
use crate::{Error, Result};

/// The longest identifier PostgreSQL keeps whole (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

/// A schema name that is safe to put into SQL text: a plain identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaName(String);

impl SchemaName {
    /// Checks `name`: 1 to 63 ASCII letters, digits and underscores, not
    /// starting with a digit, and not `pg_...` (reserved for the system).
    pub(crate) fn new(name: &str) -> Result<Self> {
        let invalid = |reason| {
            Err(Error::InvalidSchemaName {
                name: name.chars().take(80).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return invalid("it is empty");
        }
        if name.len() > MAX_IDENTIFIER_LEN {
            return invalid("it is longer than 63 bytes");
        }
        if !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            return invalid("only ASCII letters, digits and underscores are allowed");
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return invalid("it starts with a digit");
        }
        if name.to_ascii_lowercase().starts_with("pg_") {
            return invalid("the prefix pg_ is reserved for system schemas");
        }
        Ok(SchemaName(name.to_owned()))
    }

    /// The name as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an identifier. Validation leaves nothing to
    /// escape; quoting keeps upper-case letters as they are.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// `sql` with every `{schema}` replaced by the quoted name.
    pub(crate) fn fill(&self, sql: &str) -> String {
        fill(sql, &[("schema", &self.quoted())])
    }

    /// The statement of a template without variants (see
    /// [`expand`]), for this schema.
    pub(crate) fn statement(&self, template: &str) -> String {
        self.fill(&expand(template, &[], 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["annals", "Orders_2", "_x", &"s".repeat(63)] {
            assert!(SchemaName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a\"b",
            "a;drop schema x",
            "pg_mine",
            "PG_Mine",
            "ünï",
            &"s".repeat(64),
        ] {
            assert!(
                matches!(SchemaName::new(bad), Err(Error::InvalidSchemaName { .. })),
                "{bad}"
            );
        }
    }
}
