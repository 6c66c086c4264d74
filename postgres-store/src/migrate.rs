//! Versioned migrations kept as `.sql` files, applied in one transaction
//! under an advisory lock, recorded in `schema_migrations`.

use std::collections::BTreeMap;

use crate::schema::SchemaName;
use crate::statements::MigrationStatements;
use crate::{Error, Result};

struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// The migration `version` named `name`, from `migrations/{file}.sql`.
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $file, ".sql")),
        }
    };
}

/// Every migration, oldest first. Append new ones; never edit one that has
/// shipped (the checksum check refuses to run against an edited history).
const MIGRATIONS: &[Migration] = &[
    migration!(1, "tables", "0001_tables"),
    migration!(2, "refuse_append", "0002_refuse_append"),
    migration!(3, "relay", "0003_relay"),
    migration!(4, "projections", "0004_projections"),
    migration!(5, "projection_serving", "0005_projection_serving"),
    migration!(6, "outbox_json", "0006_outbox_json"),
    migration!(7, "streams_without_check", "0007_streams_without_check"),
    migration!(8, "relay_in_flight", "0008_relay_in_flight"),
];

/// What one migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The versions this run applied, oldest first; empty when the schema was
    /// up to date.
    pub applied: Vec<u32>,
    /// The newest version in the schema after the run.
    pub current: u32,
}

/// Creates or upgrades the store's tables in `schema`.
///
/// Safe to run from many instances at once: they take turns on an advisory
/// lock, and whoever comes second finds the work done. All pending
/// migrations run in one transaction, so a failure leaves the schema as it
/// was. Versions the database has and this build does not know (a newer
/// build migrated first) are left alone.
///
/// [`PgEventStore::connect`](crate::PgEventStore::connect) calls this unless
/// told otherwise; call it yourself to migrate from a deployment step.
///
/// ```no_run
/// # async fn run() -> Result<(), annals_postgres::Error> {
/// let config = annals_postgres::Config::from_url("postgres://postgres@localhost/app")?;
/// let (mut client, connection) = config.postgres().connect(tokio_postgres::NoTls).await?;
/// tokio::spawn(connection);
/// let report = annals_postgres::migrate(&mut client, "annals").await?;
/// println!("applied {:?}, now at version {}", report.applied, report.current);
/// # Ok(())
/// # }
/// ```
pub async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> Result<MigrationReport> {
    let schema = SchemaName::new(schema)?;
    let sql = MigrationStatements::new(&schema);
    let transaction = client.transaction().await?;
    let lock_key = format!("annals.migrate.{}", schema.as_str());
    transaction.execute(&sql.lock, &[&lock_key]).await?;
    transaction.batch_execute(&sql.create_schema).await?;
    transaction.batch_execute(&sql.create_version_table).await?;
    let mut recorded = BTreeMap::new();
    for row in transaction.query(&sql.applied, &[]).await? {
        let version: i32 = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let checksum: i64 = row.try_get(2)?;
        recorded.insert(version, (name, checksum));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let version = i32::try_from(migration.version).expect("migration versions are small");
        let checksum = checksum(migration.sql);
        if let Some((name, found)) = recorded.get(&version) {
            if *name != migration.name || *found != checksum {
                return Err(Error::MigrationMismatch {
                    version: migration.version,
                    expected: format!("{} {checksum:x}", migration.name),
                    found: format!("{name} {found:x}"),
                });
            }
            continue;
        }
        transaction
            .batch_execute(&schema.fill(migration.sql))
            .await
            .map_err(|source| Error::Migration {
                version: migration.version,
                name: migration.name,
                source,
            })?;
        transaction
            .execute(&sql.record, &[&version, &migration.name, &checksum])
            .await?;
        applied.push(migration.version);
    }
    transaction.commit().await?;
    let newest_known = MIGRATIONS.last().map_or(0, |migration| migration.version);
    let newest_recorded = recorded
        .keys()
        .last()
        .map_or(0, |version| u32::try_from(*version).unwrap_or(0));
    for version in &applied {
        tracing::info!(schema = schema.as_str(), version, "applied migration");
    }
    if newest_recorded > newest_known {
        tracing::info!(
            schema = schema.as_str(),
            newest_recorded,
            newest_known,
            "the schema was migrated by a newer build"
        );
    }
    Ok(MigrationReport {
        applied,
        current: newest_known.max(newest_recorded),
    })
}

/// FNV-1a over the migration's text: enough to notice an edit, stable
/// across builds and platforms.
fn checksum(text: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_checksums_differ() {
        for pair in MIGRATIONS.windows(2) {
            assert_eq!(pair[1].version, pair[0].version + 1);
            assert_ne!(checksum(pair[0].sql), checksum(pair[1].sql));
        }
        assert_eq!(checksum(""), checksum(""));
        assert_ne!(checksum("a"), checksum("b"));
    }
}
