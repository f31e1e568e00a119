//! [`open_catalog`]: a catalog by URL.

use std::sync::Arc;

use backup_core::{Catalog, Error, MemoryCatalog, Result};

use crate::sqlite::SqliteCatalog;

/// Opens the catalog a URL names: `sqlite://PATH`, `postgres://…` (feature `postgres`) or
/// `memory://`. Schemas are migrated on open. A PostgreSQL URL may name the schema to keep the
/// tables in with a `schema=NAME` query parameter (see [`PostgresCatalogBuilder::schema`]), so
/// several repositories can share one database.
///
/// [`PostgresCatalogBuilder::schema`]: crate::PostgresCatalogBuilder::schema
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
    let (url, schema) = take_schema(url);
    let mut builder = crate::postgres::PostgresCatalog::builder(url);
    if let Some(schema) = schema {
        builder = builder.schema(schema);
    }
    Ok(Arc::new(builder.build().await?))
}

/// The URL without its `schema=` query parameter (the driver refuses parameters it does not
/// know), and that parameter's value.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(value) => {
                schema = Some(value.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    (url, schema)
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<Arc<dyn Catalog>> {
    Err(Error::invalid("catalog URL", "postgres:// needs backup-store's `postgres` feature"))
}

/// The URL without its password and secret query values, for error messages; also when it
/// does not parse.
pub(crate) fn redact(url: &str) -> String {
    let shown: String = url.chars().take(300).collect();
    let shown = match shown.split_once('?') {
        Some((base, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if ["secret", "password", "token", "key", "sas"]
                            .iter()
                            .any(|s| k.to_ascii_lowercase().contains(s)) =>
                    {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", masked.join("&"))
        }
        None => shown,
    };
    let Some((scheme, rest)) = shown.split_once("://") else { return shown };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None => shown,
        },
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parameter_is_taken_out_of_the_url() {
        assert_eq!(take_schema("postgres://u@h/db"), ("postgres://u@h/db".into(), None));
        assert_eq!(take_schema("postgres://u@h/db?schema=a_1"), ("postgres://u@h/db".into(), Some("a_1".into())));
        assert_eq!(
            take_schema("postgres://u@h/db?sslmode=disable&schema=b&connect_timeout=3"),
            ("postgres://u@h/db?sslmode=disable&connect_timeout=3".into(), Some("b".into()))
        );
    }

    #[tokio::test]
    async fn unknown_schemes_list_the_supported_ones() {
        let e = open_catalog("mysql://user:secret@db/x").await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("sqlite://, postgres://, memory://"), "{e}");
        assert!(!e.to_string().contains("secret"), "passwords stay out of errors: {e}");
        assert_eq!(redact("postgres://u:p%40ss@h:x/db?a=b"), "postgres://u:***@h:x/db?a=b");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("s3://bucket?region=x&secret_access_key=abc"), "s3://bucket?region=x&secret_access_key=***");
        let e = open_catalog("sqlite://").await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput);
    }
}
