//! Every statement the store runs, from its file in `sql/`, runs once
//! against the server: a broken file fails here first, whatever test would
//! have reached it.

use std::error::Error as _;

use annals_postgres::tokio_postgres::error::SqlState;
use annals_postgres::tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use bytes::BytesMut;

use crate::common::{connect, database_url, fresh_store};

/// A NULL of whatever type the statement wants.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Whether the server refused the statement itself rather than the values
/// it ran with: a syntax error, an unknown table, column, function or type,
/// a type mismatch (class 42), or something it does not support (0A).
fn refuses_the_statement(code: &SqlState) -> bool {
    code.code().starts_with("42") || code.code().starts_with("0A")
}

#[tokio::test]
async fn every_statement_is_prepared_and_run_by_the_server() {
    let store = fresh_store().await;
    let statements = annals_postgres::__private::statements(store.schema().name(), 4)
        .expect("the test schema's name is valid");
    assert!(statements.len() > 80, "{} statements", statements.len());
    let mut client = connect(database_url()).await.expect("a test connection");
    // Everything runs in one transaction that is rolled back, each
    // statement behind a savepoint, with NULLs for its parameters: what
    // they write or refuse is the other tests' business.
    let mut transaction = client.transaction().await.unwrap();
    let mut refused = Vec::new();
    for (name, sql, types) in &statements {
        let savepoint = transaction.savepoint("statement").await.unwrap();
        let ran = match savepoint.prepare_typed(sql, types).await {
            Ok(statement) => {
                let params: Vec<&(dyn ToSql + Sync)> = statement
                    .params()
                    .iter()
                    .map(|_| &Null as &(dyn ToSql + Sync))
                    .collect();
                savepoint.query(&statement, &params).await.map(drop)
            }
            Err(error) => Err(error),
        };
        if let Err(error) = ran
            && error.code().is_some_and(refuses_the_statement)
        {
            let reason = error
                .source()
                .map_or_else(|| error.to_string(), ToString::to_string);
            refused.push(format!("{name}: {reason}\n{sql}"));
        }
        savepoint.rollback().await.unwrap();
    }
    transaction.rollback().await.unwrap();
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n\n"));
}
