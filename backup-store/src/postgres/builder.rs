//! [`PostgresCatalogBuilder`]: connection, schema and pool settings.

use std::time::Duration;

use backup_core::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::error::{is_unique_violation, pg_error};
use super::{PostgresCatalog, schema};
use crate::url::redact;

/// Builds a [`PostgresCatalog`].
#[derive(Debug, Clone)]
pub struct PostgresCatalogBuilder {
    url: String,
    pool_size: usize,
    schema: Option<String>,
    connect_timeout: Duration,
}

impl PostgresCatalogBuilder {
    pub(super) fn new(url: String) -> Self {
        PostgresCatalogBuilder { url, pool_size: 16, schema: None, connect_timeout: Duration::from_secs(10) }
    }

    /// The most connections the pool opens (default 16).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// Keeps the tables in this schema (created if missing) instead of the connection's
    /// default, so that several repositories can share one database.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How long to wait for a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, creates the schema if asked to, and migrates it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL, a bad schema name or a zero pool size;
    /// [`Error::Backend`] (`Unavailable`) if the server cannot be reached; a clear error if
    /// the database was written by a newer build.
    pub async fn build(self) -> Result<PostgresCatalog> {
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e| Error::invalid("catalog URL", format!("{}: {e}", redact(&self.url))))?;
        if self.pool_size == 0 {
            return Err(Error::invalid("pool size", "must be at least 1"));
        }
        config.connect_timeout(self.connect_timeout);
        if let Some(schema) = &self.schema {
            if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Error::invalid("schema", format!("{schema:?} is not a name of [A-Za-z0-9_]")));
            }
            // Create it with a plain connection first: the pooled ones use it as search path.
            let (client, conn) = config.connect(NoTls).await.map_err(pg_error("connect"))?;
            let task = tokio::spawn(conn);
            match client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await {
                // Instances starting together race on IF NOT EXISTS; the loser finds it made.
                Err(e) if is_unique_violation(&e) => {}
                other => other.map_err(pg_error("create schema"))?,
            }
            drop(client);
            let _ = task.await;
            config.options(format!("-c search_path={schema}"));
        }
        let location = format!(
            "postgres catalog {}{}",
            redact(&self.url),
            self.schema.as_ref().map(|s| format!(" (schema {s})")).unwrap_or_default()
        );
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| Error::invalid("pool", e.to_string()))?;
        let catalog = PostgresCatalog { pool, location };
        let mut client = catalog.client().await?;
        schema::migrate(&mut client).await?;
        Ok(catalog)
    }
}
