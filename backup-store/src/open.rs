//! [`open_catalog`]: a catalog by URL.

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::{Error, MemoryCatalog, Result};

use crate::sqlite::SqliteCatalog;
use crate::url::redact;

/// Opens the catalog a URL names: `sqlite://PATH`, `postgres://…` (feature `postgres`) or
/// `memory://`. Schemas are migrated on open. A PostgreSQL URL may name the schema to keep the
/// tables in with a `schema=NAME` query parameter (see `PostgresCatalogBuilder::schema`), so
/// several repositories can share one database.
#[cfg_attr(feature = "postgres", doc = "\nSee [`crate::PostgresCatalogBuilder::schema`].")]
///
/// # Errors
/// [`Error::InvalidInput`] for another scheme (listing the supported ones) or a scheme whose
/// feature is off; the backend's errors when opening.
pub async fn open_catalog(url: &str) -> Result<Arc<dyn Catalog>> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteCatalog::open_url(url).await?)),
        "memory" => Ok(Arc::new(MemoryCatalog::new())),
        "postgres" | "postgresql" => postgres(url).await,
        _ => Err(Error::invalid(
            "catalog URL",
            format!("{:?}: the scheme is not one of sqlite://, postgres://, memory://", redact(url)),
        )),
    }
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<Arc<dyn Catalog>> {
    let (url, schema) = crate::url::take_schema(url);
    let mut builder = crate::postgres::PostgresCatalog::builder(url);
    if let Some(schema) = schema {
        builder = builder.schema(schema);
    }
    Ok(Arc::new(builder.build().await?))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<Arc<dyn Catalog>> {
    Err(Error::invalid("catalog URL", "postgres:// needs backup-store's `postgres` feature"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_schemes_list_the_supported_ones() {
        let e = open_catalog("mysql://user:secret@db/x").await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("sqlite://, postgres://, memory://"), "{e}");
        assert!(!e.to_string().contains("secret"), "passwords stay out of errors: {e}");
        let e = open_catalog("sqlite://").await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput);
    }
}
