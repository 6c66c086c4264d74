//! Migrations: instances starting together, re-runs, edited history, bad
//! schema names.

use annals::OutboxReader;
use annals_postgres::{Error, PgEventStore, PgOutbox, migrate};

use crate::common::{Schema, connect, database_url};

async fn recorded_versions(schema: &str) -> Vec<u32> {
    let client = connect(database_url()).await.unwrap();
    client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| u32::try_from(row.get::<_, i32>(0)).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_migrating_at_once_apply_each_version_once() {
    let schema = Schema::new();
    let mut first = connect(database_url()).await.unwrap();
    let mut second = connect(database_url()).await.unwrap();
    let (one, two) = tokio::join!(
        migrate(&mut first, schema.name()),
        migrate(&mut second, schema.name())
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    // Every version this build knows, without naming the newest: adding a
    // migration leaves this test as it is.
    let known: Vec<u32> = (1..=one.current).collect();
    assert!(known.len() >= 3, "{one:?}");
    let mut applied = [one.applied.clone(), two.applied.clone()];
    applied.sort();
    assert_eq!(
        applied,
        [vec![], known.clone()],
        "one applied, one found it done"
    );
    assert_eq!(two.current, one.current);
    let recorded = recorded_versions(schema.name()).await;
    assert_eq!(recorded, known);

    // Stores connecting together on the migrated schema, and a re-run: no-ops.
    let stores =
        futures::future::join_all((0..3).map(|_| PgEventStore::connect(schema.config()))).await;
    for store in stores {
        store.unwrap();
    }
    let again = migrate(&mut first, schema.name()).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.current, one.current);
    assert_eq!(recorded_versions(schema.name()).await, recorded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_stores_connecting_at_once_create_the_schema_once() {
    let schema = Schema::new();
    let stores =
        futures::future::join_all((0..4).map(|_| PgEventStore::connect(schema.config()))).await;
    for store in stores {
        store.unwrap();
    }
    let mut client = connect(database_url()).await.unwrap();
    let report = migrate(&mut client, schema.name()).await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    let known: Vec<u32> = (1..=report.current).collect();
    assert_eq!(recorded_versions(schema.name()).await, known);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_migration_is_refused() {
    let schema = Schema::new();
    let mut client = connect(database_url()).await.unwrap();
    migrate(&mut client, schema.name()).await.unwrap();
    client
        .execute(
            &format!(
                "UPDATE \"{}\".schema_migrations SET checksum = checksum + 1 WHERE version = 1",
                schema.name()
            ),
            &[],
        )
        .await
        .unwrap();
    let error = migrate(&mut client, schema.name()).await.unwrap_err();
    assert!(
        matches!(error, Error::MigrationMismatch { version: 1, .. }),
        "{error:?}"
    );
    assert!(!error.is_retriable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schema_name_is_refused_before_any_sql() {
    // No server listens here: reaching it would be a different error.
    let config = annals_postgres::Config::from_url("postgres://nobody@127.0.0.1:1/none")
        .unwrap()
        .with_schema("orders; DROP TABLE x");
    let error = PgEventStore::connect(config).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidSchemaName { .. }),
        "{error:?}"
    );
    let mut client = connect(database_url()).await.unwrap();
    let error = migrate(&mut client, "pg_catalog").await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidSchemaName { .. }),
        "{error:?}"
    );
    let annals_error: annals::Error = error.into();
    assert!(matches!(annals_error, annals::Error::Config(_)));
}

/// The relay migration (3) applies to an outbox that holds messages: it
/// fills their keys' shard hashes as `annals::key_hash` computes them, so
/// that they are relayed by the shard of their key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_migration_fills_the_shard_of_stored_messages() {
    let schema = before_migration(3, |name| {
        format!(
            "DROP TABLE \"{name}\".outbox_parked;
             ALTER TABLE \"{name}\".outbox DROP COLUMN key_hash;
             DROP FUNCTION \"{name}\".outbox_key_hash(text);"
        )
    })
    .await;
    let name = schema.name();
    let mut client = connect(database_url()).await.unwrap();
    let keys = ["a", "foobar", "order-17", "Bestellung-ü", "注文-3"];
    for key in keys {
        client
            .execute(
                &format!(
                    "INSERT INTO \"{name}\".outbox (message_id, topic, key, event_type,
                         event_version, payload, stream_id, stream_version, metadata)
                     VALUES ($1, 't', $2, 'E', 1, '{{}}', $2, 1, '{{}}')"
                ),
                &[&uuid::Uuid::now_v7(), &key],
            )
            .await
            .unwrap();
    }

    let report = migrate(&mut client, name).await.unwrap();
    assert_eq!(report.applied, [3]);
    let store = PgEventStore::connect(schema.config()).await.unwrap();
    let mut relayed = 0;
    for shard in annals::OutboxShard::split(3).unwrap() {
        for record in PgOutbox::new(&store)
            .read_outbox(shard, annals::GlobalPosition::START, 100)
            .await
            .unwrap()
        {
            assert!(shard.contains(&record.message.key), "{record:?}");
            relayed += 1;
        }
    }
    assert_eq!(relayed, keys.len());
}

/// The outbox migration (6) applies to an outbox that holds messages: what
/// was stored as `jsonb` is read back after it, every message, with the same
/// payload and metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_json_migration_keeps_stored_messages() {
    let schema = before_migration(6, |name| {
        format!(
            "ALTER TABLE \"{name}\".outbox
                 ALTER COLUMN payload TYPE jsonb USING payload::jsonb,
                 ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb;
             ALTER TABLE \"{name}\".outbox_parked
                 ALTER COLUMN payload TYPE jsonb USING payload::jsonb,
                 ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb;"
        )
    })
    .await;
    let name = schema.name();
    let mut client = connect(database_url()).await.unwrap();
    let correlation = uuid::Uuid::now_v7();
    let payloads = [
        serde_json::json!({"n": 1}),
        serde_json::json!({"b": [true, null, "ü"], "a": {"x": 1.5}}),
        serde_json::json!("just a string"),
    ];
    for (n, payload) in payloads.iter().enumerate() {
        client
            .execute(
                &format!(
                    "INSERT INTO \"{name}\".outbox (message_id, topic, key, event_type,
                         event_version, payload, stream_id, stream_version, metadata, key_hash)
                     VALUES ($1, 't', 'k', 'E', 1, $2::text::jsonb, 'k', $3, $4::text::jsonb,
                             \"{name}\".outbox_key_hash('k'))"
                ),
                &[
                    &uuid::Uuid::now_v7(),
                    &payload.to_string(),
                    &(n as i64 + 1),
                    &serde_json::json!({ "correlation_id": correlation }).to_string(),
                ],
            )
            .await
            .unwrap();
    }

    let report = migrate(&mut client, name).await.unwrap();
    assert_eq!(report.applied, [6]);
    let store = PgEventStore::connect(schema.config()).await.unwrap();
    let records = PgOutbox::new(&store)
        .read_outbox(annals::OutboxShard::ALL, annals::GlobalPosition::START, 100)
        .await
        .unwrap();
    assert_eq!(records.len(), payloads.len());
    for (record, payload) in records.iter().zip(&payloads) {
        let read: serde_json::Value = serde_json::from_str(record.message.payload.get()).unwrap();
        assert_eq!(&read, payload);
        assert_eq!(record.message.metadata.correlation_id, Some(correlation));
    }
}

/// A schema migrated to the newest version and taken back to the one before
/// `version` by the SQL `undo` gives for the schema's name (its effects
/// undone, its row in `schema_migrations` deleted).
async fn before_migration(version: i32, undo: impl FnOnce(&str) -> String) -> Schema {
    let schema = Schema::new();
    let name = schema.name();
    let mut client = connect(database_url()).await.unwrap();
    migrate(&mut client, name).await.unwrap();
    client.batch_execute(&undo(name)).await.unwrap();
    client
        .execute(
            &format!("DELETE FROM \"{name}\".schema_migrations WHERE version = $1"),
            &[&version],
        )
        .await
        .unwrap();
    schema
}
