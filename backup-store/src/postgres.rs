//! [`PostgresCatalog`]: the catalog for several server instances sharing one repository.

mod apply;
mod audit;
mod builder;
mod catalog;
mod error;
mod rows;
mod schema;
mod snapshot;
mod state;
mod statements;

use backup_core::Result;
use deadpool_postgres::{Object, Pool};

pub use builder::PostgresCatalogBuilder;

const BACKEND: &str = "postgres catalog";

/// The PostgreSQL catalog: tokio-postgres with a connection pool. Every step runs in one
/// transaction that first locks what it loads (the collection's row, rows and sessions by id,
/// `SELECT … FOR UPDATE`), so reservations and commits are serialised per collection across
/// every instance sharing the database; unique constraints on ids and on (collection, number)
/// back the rules up. Statements are prepared once per connection, and the queries of a step
/// are pipelined. Schema migrations run on connect, under an advisory lock.
///
/// ```no_run
/// use backup_store::PostgresCatalog;
///
/// # async fn f() -> backup_core::Result<()> {
/// let catalog = PostgresCatalog::builder("postgres://backup@db.internal/backups")
///     .pool_size(32)
///     .schema("backups")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresCatalog {
    pool: Pool,
    location: String,
}

impl PostgresCatalog {
    /// A builder for the database at `url` (`postgres://user:password@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresCatalogBuilder {
        PostgresCatalogBuilder::new(url.into())
    }

    /// Connects with the defaults.
    ///
    /// # Errors
    /// As [`PostgresCatalogBuilder::build`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).build().await
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(error::pool_error)
    }
}
