//! Migrations: instances starting together, re-runs, edited history, bad
//! schema names.

use annals_postgres::{Error, PgEventStore, migrate};

use crate::common::{Schema, connect, database_url};

async fn recorded_versions(schema: &str) -> Vec<i32> {
    let client = connect(database_url()).await.unwrap();
    client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
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
    let mut applied = [one.applied.clone(), two.applied.clone()];
    applied.sort();
    assert_eq!(
        applied,
        [vec![], vec![1, 2]],
        "one applied, one found it done"
    );
    assert_eq!((one.current, two.current), (2, 2));
    assert_eq!(recorded_versions(schema.name()).await, [1, 2]);

    // Stores connecting together on the migrated schema, and a re-run: no-ops.
    let stores =
        futures::future::join_all((0..3).map(|_| PgEventStore::connect(schema.config()))).await;
    for store in stores {
        store.unwrap();
    }
    let again = migrate(&mut first, schema.name()).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.current, 2);
    assert_eq!(recorded_versions(schema.name()).await, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_stores_connecting_at_once_create_the_schema_once() {
    let schema = Schema::new();
    let stores =
        futures::future::join_all((0..4).map(|_| PgEventStore::connect(schema.config()))).await;
    for store in stores {
        store.unwrap();
    }
    assert_eq!(recorded_versions(schema.name()).await, [1, 2]);
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
