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

    use backup_core::catalog::Catalog;
    use backup_core::testing::{body_of, pattern};
    use backup_core::{
        Actor, CollectionSpec, Engine, ErrorKind, Limits, MemoryCatalog, UploadOptions, VersionSelector, conformance,
    };
    use backup_store::{SqliteCatalog, StoreOptions, object_store_from_url, open_store};
    use futures::TryStreamExt;
    use object_store::multipart::{MultipartStore, PartId};
    use object_store::path::Path;
    use object_store::{MultipartId, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult};

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

    /// What the S3 client's create request does, seen from the engine.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Create {
        /// As asked.
        Forward,
        /// S3 creates the upload, and the answer is lost: as a process killed before it
        /// recorded the id (nobody knows the id).
        AnswerLost,
        /// S3 creates two (the client retried after a stall) and the engine sees the second.
        Retried,
    }

    /// A multipart store that does to creates what [`Create`] says, and counts them.
    struct Creates {
        inner: Arc<dyn MultipartStore>,
        mode: Create,
        count: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl MultipartStore for Creates {
        async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
            self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let id = self.inner.create_multipart(path).await?;
            match self.mode {
                Create::Forward => Ok(id),
                Create::AnswerLost => {
                    Err(object_store::Error::Generic { store: "test", source: "the answer was lost".into() })
                }
                Create::Retried => self.inner.create_multipart(path).await,
            }
        }

        async fn put_part(
            &self,
            path: &Path,
            id: &MultipartId,
            part_idx: usize,
            data: PutPayload,
        ) -> object_store::Result<PartId> {
            self.inner.put_part(path, id, part_idx, data).await
        }

        async fn complete_multipart(
            &self,
            path: &Path,
            id: &MultipartId,
            parts: Vec<PartId>,
        ) -> object_store::Result<PutResult> {
            self.inner.complete_multipart(path, id, parts).await
        }

        async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
            self.inner.abort_multipart(path, id).await
        }
    }

    /// An engine on the server's bucket (under a key prefix, as the server runs) whose
    /// creates behave as `mode` says, with or without the store's listing of open uploads.
    async fn engine_on(
        server: &S3Server,
        catalog: Arc<dyn Catalog>,
        mode: Create,
        listing: bool,
    ) -> (Engine, Arc<Creates>) {
        let opened = open_store(&server.url().replacen('?', "/tenant?", 1), &StoreOptions::default()).unwrap();
        let creates = Arc::new(Creates { inner: opened.multipart.clone().unwrap(), mode, count: Default::default() });
        let mut builder = Engine::builder()
            .catalog(catalog)
            .store(opened.store.clone())
            .multipart_store(creates.clone())
            .part_size(5 << 20)
            .adopt_store(true);
        if listing {
            builder = builder.upload_leftovers(opened.leftovers.clone().expect("S3 lists its open uploads"));
        }
        (builder.build().unwrap(), creates)
    }

    const SIX_MIB: usize = 6 << 20;

    /// A multipart upload the catalog never recorded (the process died between S3's create
    /// and the record, or the answer was lost) is found by S3's listing under the released
    /// upload's key and aborted by `recover()`: its parts are not kept for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_whose_id_was_never_recorded_is_aborted_by_recover() {
        let server = S3Server::start().await;
        let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
        let (engine, _) = engine_on(&server, catalog.clone(), Create::AnswerLost, false).await;
        let (me, id) = (Actor::user("me"), "db".parse().unwrap());
        engine
            .create_collection(
                &me,
                &id,
                CollectionSpec::new("db-${version}", Limits::new(3, 8 << 20, 24 << 20).unwrap()),
            )
            .await
            .unwrap();
        let options = UploadOptions::new().expected_size(SIX_MIB as u64);
        let e = engine.upload_with(&me, &id, body_of(pattern(1, SIX_MIB), 1 << 20), options).await.unwrap_err();
        assert!(e.to_string().contains("the answer was lost"), "{e}");
        assert_eq!(server.open_uploads().len(), 1, "S3 holds an upload nobody recorded");

        // Without the listing, recover() cannot know it (the row holds no id).
        engine.recover().await.unwrap();
        assert_eq!(server.open_uploads().len(), 1);
        // With it, the released upload's key is listed and what is open there is aborted.
        let (engine, _) = engine_on(&server, catalog, Create::Forward, true).await;
        let report = engine.recover().await.unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(server.open_uploads(), Vec::<String>::new());
        assert!(report.leftovers_removed >= 1, "{report:?}");
    }

    /// A create the S3 client retried after a stall leaves a first upload nobody has the id
    /// of, under the key of a version that commits: the engine aborts it once the version is
    /// whole. And a body smaller than a part is one PUT: no multipart upload at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_create_leaves_nothing_open_and_small_bodies_are_one_put() {
        let server = S3Server::start().await;
        let (engine, creates) = engine_on(&server, Arc::new(MemoryCatalog::new()), Create::Retried, true).await;
        let (me, id) = (Actor::user("me"), "db".parse().unwrap());
        engine
            .create_collection(
                &me,
                &id,
                CollectionSpec::new("db-${version}", Limits::new(3, 8 << 20, 24 << 20).unwrap()),
            )
            .await
            .unwrap();
        let body = pattern(2, SIX_MIB);
        let v = engine.upload(&me, &id, body_of(body.clone(), 1 << 20)).await.unwrap();
        assert_eq!(creates.count.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(server.open_uploads(), Vec::<String>::new(), "the retried create's first upload was aborted");
        let download = engine.download(&me, &id, VersionSelector::Number(v.number)).await.unwrap();
        let chunks: Vec<bytes::Bytes> = download.into_stream().try_collect().await.unwrap();
        assert_eq!(chunks.concat(), body, "the version is whole");

        let small = engine.upload(&me, &id, body_of(pattern(3, 1000), 300)).await.unwrap();
        assert_eq!(creates.count.load(std::sync::atomic::Ordering::SeqCst), 1, "no multipart upload for 1,000 bytes");
        assert_eq!(small.size, 1000);
        assert_eq!(server.open_uploads(), Vec::<String>::new());
    }
}
