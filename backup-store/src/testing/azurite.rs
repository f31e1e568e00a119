//! Azurite, the Azure Blob Storage emulator of the tests (`TEST_AZURITE_URL`,
//! `TEST_AZURITE_CONTAINER`): skipped by name when absent, a failure under `CI=true`.

use super::database::skipped;

/// The well-known account of Azurite (and of Microsoft's older storage emulator).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// The well-known key of [`AZURITE_ACCOUNT`]: public, the same in every Azurite.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The container `.ci/with-services` makes when `TEST_AZURITE_CONTAINER` does not name one.
const DEFAULT_CONTAINER: &str = "backup-test";

/// An Azurite blob service and a container in it, from [`azurite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Azurite {
    /// The account's endpoint, `http://127.0.0.1:PORT/devstoreaccount1` (no trailing `/`).
    pub url: String,
    /// A container that exists in it (`backup-test`).
    pub container: String,
}

impl Azurite {
    /// An `az://CONTAINER/PREFIX?…` URL that [`crate::open_store`] opens against this Azurite,
    /// the blobs under `prefix` (a `/`-separated key prefix such as `my_test/1234`; give each
    /// test its own, since the container is shared), with the query `account_name=devstoreaccount1`,
    /// `access_key=…` (percent-encoded), `endpoint=http://127.0.0.1:PORT/devstoreaccount1` and
    /// `allow_http=true`. The store needs backup-store's `azure` feature.
    ///
    /// It names the endpoint rather than setting `use_emulator=true`: object_store 0.14 takes
    /// an emulator's address from the environment variable `AZURITE_BLOB_STORAGE_URL` alone
    /// (else `127.0.0.1:10000`), so the URL would not say where the store is. The requests
    /// are the same (the account is the endpoint's first path segment either way); only
    /// `list_with_offset` differs: it sends `startFrom`, which Azurite does not support, where
    /// `use_emulator` filters in the client (the engine does not call it).
    ///
    /// # Panics
    /// When `prefix` does not make a URL.
    pub fn store_url(&self, prefix: &str) -> String {
        let base = format!("az://{}/{}", self.container, prefix.trim_matches('/'));
        let mut url = url::Url::parse(&base).unwrap_or_else(|e| panic!("{base:?}: {e}"));
        url.query_pairs_mut()
            .append_pair("account_name", AZURITE_ACCOUNT)
            .append_pair("access_key", AZURITE_KEY)
            .append_pair("endpoint", &self.url)
            .append_pair("allow_http", "true");
        url.into()
    }
}

/// The Azurite blob service of the tests (`TEST_AZURITE_URL`, with the container
/// `TEST_AZURITE_CONTAINER`, `backup-test` when unset; both from `.ci/with-services`), or
/// `None` after reporting the test as skipped by name. Under `CI=true` a missing URL fails
/// the test: CI configures every service.
///
/// # Panics
/// Under `CI=true` when `TEST_AZURITE_URL` is not set.
pub fn azurite(test: &str) -> Option<Azurite> {
    match std::env::var("TEST_AZURITE_URL") {
        Ok(url) if !url.is_empty() => Some(Azurite {
            url: url.trim_end_matches('/').to_owned(),
            container: std::env::var("TEST_AZURITE_CONTAINER")
                .ok()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| DEFAULT_CONTAINER.to_owned()),
        }),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: TEST_AZURITE_URL is not set, and CI=true forbids skipping")
        }
        _ => {
            skipped(test, "no TEST_AZURITE_URL");
            None
        }
    }
}

/// [`Azurite::store_url`] of [`azurite`]: an `az://` URL for [`crate::open_store`] with the
/// blobs under `prefix`, or `None` after reporting the test as skipped by name. The store
/// needs backup-store's `azure` feature.
///
/// # Panics
/// Under `CI=true` when `TEST_AZURITE_URL` is not set.
pub fn azurite_store_url(test: &str, prefix: &str) -> Option<String> {
    azurite(test).map(|service| service.store_url(prefix))
}

#[cfg(test)]
mod tests {
    use super::{AZURITE_KEY, Azurite};

    #[test]
    fn the_store_url_carries_the_key_intact() {
        let service =
            Azurite { url: "http://127.0.0.1:55700/devstoreaccount1".into(), container: "backup-test".into() };
        let url = url::Url::parse(&service.store_url("/some_test/1/")).unwrap();
        assert_eq!(url.scheme(), "az");
        assert_eq!(url.host_str(), Some("backup-test"));
        assert_eq!(url.path(), "/some_test/1");
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(
            pairs,
            [
                ("account_name".to_owned(), "devstoreaccount1".to_owned()),
                ("access_key".to_owned(), AZURITE_KEY.to_owned()),
                ("endpoint".to_owned(), "http://127.0.0.1:55700/devstoreaccount1".to_owned()),
                ("allow_http".to_owned(), "true".to_owned()),
            ]
        );
    }
}
