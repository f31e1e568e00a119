//! S3 for real: the engine's conformance suite against an S3 protocol server in-process
//! (s3s-fs, SigV4 enforced, conditional writes enforced).

#[cfg(not(feature = "aws"))]
#[test]
fn s3_tests() {
    backup_store::testing::skipped("s3 tests", "built without the `aws` feature");
}

#[cfg(feature = "aws")]
mod with_s3 {
    use std::sync::Arc;

    use backup_core::{Catalog, ErrorKind, MemoryCatalog, conformance};
    use backup_store::{SqliteCatalog, StoreOptions, object_store_from_url, open_store};
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutMode, PutOptions};

    use backup_store::testing::S3Server;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn engine_suite_on_s3_with_memory_and_sqlite_catalogs() {
        let server = S3Server::start().await;
        let store = object_store_from_url(&server.url(), &StoreOptions::default()).unwrap();
        conformance::engine::run_all(store.clone(), Arc::new(MemoryCatalog::new())).await;
        // Again with SQLite, under a key prefix, writing through the multipart API with the
        // upload ids recorded (what the server does on S3): a crashed upload's parts go.
        let dir = tempfile::tempdir().unwrap();
        let sqlite: Arc<dyn Catalog> = Arc::new(SqliteCatalog::open(dir.path().join("c.db")).await.unwrap());
        let prefixed = server.url().replacen('?', "/under/a/prefix?", 1);
        let opened = open_store(&prefixed, &StoreOptions::default()).unwrap();
        assert!(opened.multipart.is_some());
        conformance::engine::run_all_with(opened.store, opened.multipart, sqlite).await;
    }

    /// The server is real: it checks signatures and preconditions.
    #[tokio::test]
    async fn the_server_enforces_signatures_and_conditional_writes() {
        let server = S3Server::start().await;
        let store = object_store_from_url(&server.url(), &StoreOptions::default()).unwrap();
        let key = Path::from("once");
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        store.put_opts(&key, "a".into(), create.clone()).await.unwrap();
        let e = store.put_opts(&key, "b".into(), create).await.unwrap_err();
        assert!(matches!(e, object_store::Error::AlreadyExists { .. }), "{e}");

        let wrong = StoreOptions::new().with("secret_access_key", "not-the-secret");
        let bad = object_store_from_url(&server.url(), &wrong).unwrap();
        let e = bad.get(&key).await.unwrap_err();
        assert!(!matches!(e, object_store::Error::NotFound { .. }), "a wrong signature is refused: {e}");
    }

    /// backup-repository's gocloud URL form works unchanged, credentials from the options.
    #[tokio::test]
    async fn backup_repository_storage_urls_work() {
        let server = S3Server::start().await;
        let host = server.endpoint.trim_start_matches("http://");
        let url =
            format!("s3://{}?endpoint={host}&disableSSL=true&s3ForcePathStyle=true&region=eu-central-1", server.bucket);
        let options = StoreOptions::new()
            .with("access_key_id", server.access_key.clone())
            .with("secret_access_key", server.secret_key.clone());
        let store = object_store_from_url(&url, &options).unwrap();
        store.put(&Path::from("x"), "hello".into()).await.unwrap();
        assert_eq!(store.get(&Path::from("x")).await.unwrap().bytes().await.unwrap(), "hello");
        // A key prefix in the URL's path keeps the engine's objects under it.
        let prefixed = object_store_from_url(
            &format!("s3://{}/tenant-a?endpoint={host}&disableSSL=true", server.bucket),
            &options,
        )
        .unwrap();
        prefixed.put(&Path::from("y"), "in a prefix".into()).await.unwrap();
        assert!(store.head(&Path::from("tenant-a/y")).await.is_ok());
        let e = object_store_from_url(&format!("s3://{}?no_such_setting=1", server.bucket), &options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("no_such_setting"), "{e}");
    }
}
