//! The database the benchmark runs against, and schemas of its own in it.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use annals_postgres::{Config, PgEventStore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

/// Where the suites run, and what they leave behind to clean up.
#[derive(Debug)]
pub(crate) struct Database {
    url: String,
    schemas: Mutex<Vec<String>>,
}

impl Database {
    /// The database of `ANNALS_TEST_DATABASE_URL`.
    pub(crate) fn from_env() -> Result<Self, String> {
        let url = std::env::var("ANNALS_TEST_DATABASE_URL").map_err(|_| {
            "set ANNALS_TEST_DATABASE_URL to a libpq URL, e.g. postgres://postgres@127.0.0.1:5432/test"
                .to_owned()
        })?;
        Ok(Database {
            url,
            schemas: Mutex::new(Vec::new()),
        })
    }

    /// A new schema name, dropped by [`Database::drop_schemas`].
    pub(crate) fn new_schema(&self, purpose: &str) -> String {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let name = format!(
            "annals_bench_{purpose}_{seconds}_{:06x}",
            fastrand::u32(..0xff_ffff)
        );
        self.schemas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(name.clone());
        name
    }

    /// The store configuration for `schema`.
    pub(crate) fn config(&self, schema: &str) -> Result<Config, annals_postgres::Error> {
        Ok(Config::from_url(&self.url)?
            .with_schema(schema)
            .with_application_name("annals-bench"))
    }

    /// A store in a new schema, migrated.
    pub(crate) async fn store(
        &self,
        purpose: &str,
        configure: impl FnOnce(Config) -> Config,
    ) -> Result<PgEventStore, annals_postgres::Error> {
        let schema = self.new_schema(purpose);
        PgEventStore::connect(configure(self.config(&schema)?)).await
    }

    /// A plain connection, as the raw limits use.
    pub(crate) fn connect(
        &self,
    ) -> impl Future<Output = Result<Client, tokio_postgres::Error>> + Send + 'static {
        let url = self.url.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("benchmark connection ended: {error}");
                }
            });
            Ok(client)
        }
    }

    /// Drops every schema the run created.
    pub(crate) async fn drop_schemas(&self) -> Result<(), tokio_postgres::Error> {
        let schemas = std::mem::take(
            &mut *self
                .schemas
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if schemas.is_empty() {
            return Ok(());
        }
        let client = self.connect().await?;
        for schema in schemas {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await?;
        }
        Ok(())
    }
}

/// `template` with `{schema}` replaced by the quoted schema name.
pub(crate) fn render(template: &str, schema: &str) -> String {
    template.replace("{schema}", &format!("\"{schema}\""))
}

/// Runs the statement `template` for `schema` with `params`; the rows it
/// changed.
pub(crate) async fn execute(
    client: &Client,
    template: &str,
    schema: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, String> {
    client
        .execute(&render(template, schema), params)
        .await
        .map_err(|error| error.to_string())
}

/// Runs the statements of `template`, without parameters, for `schema`.
pub(crate) async fn batch(client: &Client, template: &str, schema: &str) -> Result<(), String> {
    client
        .batch_execute(&render(template, schema))
        .await
        .map_err(|error| error.to_string())
}
