//! The read model of the conformance suite's projection in PostgreSQL:
//! per version the tables `tally_v{version}` (per stream, events and
//! amount) and `tally_applied_v{version}` (one row per event: a second
//! application fails on its key), served through the views `tally` and
//! `tally_applied` that promoting a version points at its tables.

use std::collections::BTreeMap;

use annals::BoxError;
use annals::testing::conformance::projection::{Tallies, TallyModel};
use annals_postgres::PgTx;
use uuid::Uuid;

use crate::common::{TestStore, connect, database_url};

/// The model in the test store's schema.
#[derive(Debug, Clone)]
pub(crate) struct PgTally {
    schema: String,
}

impl PgTally {
    pub(crate) fn new(store: &TestStore) -> Self {
        PgTally {
            schema: store.schema().name().to_owned(),
        }
    }

    /// Tables `tally{suffix}` and `tally_applied{suffix}`, as committed.
    async fn read_tables(&self, suffix: &str) -> Tallies {
        let client = connect(database_url()).await.expect("a test connection");
        let schema = &self.schema;
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("\"{schema}\".tally{suffix}")],
            )
            .await
            .expect("looking the table up")
            .get(0);
        if !exists {
            return Tallies::default();
        }
        let streams: BTreeMap<String, (i64, i64)> = client
            .query(
                &format!("SELECT stream_id, events, amount FROM \"{schema}\".tally{suffix}"),
                &[],
            )
            .await
            .expect("the tally")
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect();
        let applied = client
            .query(
                &format!("SELECT event_id, runner FROM \"{schema}\".tally_applied{suffix}"),
                &[],
            )
            .await
            .expect("the applied events")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        Tallies { streams, applied }
    }
}

impl TallyModel<PgTx> for PgTally {
    async fn setup(&self, tx: &mut PgTx, version: u32) -> Result<(), BoxError> {
        let schema = &self.schema;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS \"{schema}\".tally_v{version}
                 (stream_id text PRIMARY KEY, events bigint NOT NULL, amount bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{schema}\".tally_applied_v{version}
                 (event_id uuid PRIMARY KEY, runner text NOT NULL)"
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &mut PgTx,
        version: u32,
        runner: &str,
        event_id: Uuid,
        stream: &str,
        amount: i64,
    ) -> Result<(), BoxError> {
        let schema = &self.schema;
        let applied = tx
            .prepare_cached(&format!(
                "INSERT INTO \"{schema}\".tally_applied_v{version} (event_id, runner) VALUES ($1, $2)"
            ))
            .await?;
        tx.execute(&applied, &[&event_id, &runner]).await?;
        let tally = tx
            .prepare_cached(&format!(
                "INSERT INTO \"{schema}\".tally_v{version} AS t (stream_id, events, amount)
                 VALUES ($1, 1, $2)
                 ON CONFLICT (stream_id) DO UPDATE
                    SET events = t.events + 1, amount = t.amount + excluded.amount"
            ))
            .await?;
        tx.execute(&tally, &[&stream, &amount]).await?;
        Ok(())
    }

    async fn promote(&self, tx: &mut PgTx, version: u32) -> Result<(), BoxError> {
        let schema = &self.schema;
        tx.batch_execute(&format!(
            "CREATE OR REPLACE VIEW \"{schema}\".tally AS SELECT * FROM \"{schema}\".tally_v{version};
             CREATE OR REPLACE VIEW \"{schema}\".tally_applied
                 AS SELECT * FROM \"{schema}\".tally_applied_v{version}"
        ))
        .await?;
        Ok(())
    }

    async fn reset(&self, tx: &mut PgTx, version: u32) -> Result<(), BoxError> {
        let schema = &self.schema;
        tx.batch_execute(&format!(
            "TRUNCATE \"{schema}\".tally_v{version}, \"{schema}\".tally_applied_v{version}"
        ))
        .await?;
        Ok(())
    }

    async fn read(&self, version: Option<u32>) -> Tallies {
        match version {
            Some(version) => self.read_tables(&format!("_v{version}")).await,
            None => self.read_tables("").await,
        }
    }

    /// The views select from version `version`'s tables, and, in one
    /// statement (one snapshot) while runners apply, show the same rows.
    async fn serves(&self, version: u32) -> bool {
        let client = connect(database_url()).await.expect("a test connection");
        let schema = &self.schema;
        let sources: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.view_table_usage
                  WHERE view_schema = $1 AND view_name IN ('tally', 'tally_applied')
                  ORDER BY view_name",
                &[&schema],
            )
            .await
            .expect("the views' tables")
            .iter()
            .map(|row| row.get(0))
            .collect();
        if sources
            != [
                format!("tally_v{version}"),
                format!("tally_applied_v{version}"),
            ]
        {
            return false;
        }
        let differing: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*)
                       FROM ((TABLE \"{schema}\".tally EXCEPT TABLE \"{schema}\".tally_v{version})
                             UNION ALL
                             (TABLE \"{schema}\".tally_v{version} EXCEPT TABLE \"{schema}\".tally)) AS d"
                ),
                &[],
            )
            .await
            .expect("the served read model")
            .get(0);
        differing == 0
    }
}
