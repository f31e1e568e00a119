//! Version locks enforced by the store itself: read-only files on local disk, and S3 Object
//! Lock against moto (`TEST_MOTO_URL`, started by `.ci/with-services`), the S3 server at hand
//! that enforces it: the bucket's own credentials cannot delete a locked version's object.

use std::sync::Arc;
use std::time::Duration;

use backup_core::{
    Actor, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, LockMode, LockPolicy, ManualClock, Version,
};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

/// Every test's bound: the lock tests wait a few seconds of real time, no more.
const BOUND: Duration = Duration::from_secs(90);

fn locked_spec(seconds: i64) -> CollectionSpec {
    CollectionSpec::new("db-${version}", Limits::new(5, 1 << 20, 5 << 20).unwrap())
        .with_lock(LockPolicy::new(LockMode::Compliance, chrono::Duration::seconds(seconds)))
}

async fn upload(engine: &Engine, id: &CollectionId, body: &'static str) -> Version {
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
    engine.upload(&Actor::user("me"), id, body).await.unwrap()
}

const DESCRIPTION_SUFFIX: &str = backup_core::store::DESCRIPTION_SUFFIX;

#[cfg(unix)]
mod local_disk {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(file: &std::path::Path) -> u32 {
        std::fs::metadata(file).unwrap().permissions().mode() & 0o7777
    }

    /// A locked version's object and description are read-only; the description is still
    /// rewritten over its read-only self (when the lock is lengthened), and the object still
    /// goes once the lock has ended. (As root no mode stops a write: what this checks there is
    /// that the modes are set and that writes take the path that works for other users.)
    #[tokio::test]
    async fn locked_files_are_read_only_and_still_rewritten_and_deleted() {
        tokio::time::timeout(BOUND, async {
            let dir = tempfile::tempdir().unwrap();
            let blobs = dir.path().join("blobs");
            let opened = backup_store::OpenedStore::local_disk(&blobs).unwrap();
            let locks = opened.object_locks.clone().expect("local disk has read-only files");
            locks.check().await.unwrap();
            assert!(
                locks.describe().contains("cannot stop the files' owner or root from deleting"),
                "{}",
                locks.describe()
            );
            let store = opened.store.clone();
            let clock = Arc::new(ManualClock::starting_now());
            let engine = opened
                .configure(Engine::builder())
                .clock(clock.clone())
                .trash_retention(Duration::ZERO)
                .grace(Duration::ZERO)
                .build()
                .unwrap();
            let (me, id): (_, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
            engine.create_collection(&me, &id, locked_spec(60)).await.unwrap();
            let v = upload(&engine, &id, "hello").await;
            let object = blobs.join(&v.object_key);
            let description = blobs.join(format!("{}{DESCRIPTION_SUFFIX}", v.object_key));
            assert_eq!(mode(&object), 0o444);
            assert_eq!(mode(&description), 0o444);

            // Lengthening the lock rewrites the description over the read-only one (a new
            // file renamed over it), read-only again afterwards.
            let lock = v.lock.unwrap();
            let before = std::fs::read_to_string(&description).unwrap();
            let until = lock.until.checked_add(chrono::Duration::seconds(30)).unwrap();
            let lengthened = engine.lock_version(&me, &id, v.number, Some(LockMode::Compliance), until).await.unwrap();
            assert_eq!(lengthened.lock.unwrap().until, until);
            assert_ne!(std::fs::read_to_string(&description).unwrap(), before, "the description was rewritten");
            assert_eq!(mode(&description), 0o444);
            assert_eq!(engine.delete_version(&me, &id, v.number).await.unwrap_err().kind(), ErrorKind::Conflict);

            // Once the lock has ended, the engine deletes the read-only object.
            clock.advance(chrono::Duration::seconds(120));
            engine.delete_version(&me, &id, v.number).await.unwrap();
            let report = engine.recover().await.unwrap();
            assert!(report.failures.is_empty(), "{report:?}");
            assert!(!object.exists(), "the read-only object was deleted");
            let e = store.get(&Path::from(v.object_key.as_str())).await.unwrap_err();
            assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
        })
        .await
        .expect("bounded");
    }

    /// Both ways the store writes replace a read-only file: object_store's own put (a staging
    /// file renamed over it) and the descriptions' in-place writes (which hand a read-only
    /// file to that put).
    #[tokio::test]
    async fn read_only_files_are_replaced_by_a_put() {
        let dir = tempfile::tempdir().unwrap();
        let durable = backup_store::local_disk_store(dir.path()).unwrap();
        let descriptions = backup_store::local_disk::description_store(dir.path()).unwrap();
        let locks = backup_store::local_disk::ReadOnlyFiles::new(dir.path()).unwrap();
        let lock = backup_core::VersionLock::new(LockMode::Governance, backup_core::Timestamp::end_of_time());
        for (name, store) in [("durable", &durable), ("descriptions", &descriptions)] {
            let key = Path::from(format!("c/{name}.version.json"));
            store.put(&key, "one".into()).await.unwrap();
            backup_core::ObjectLocks::retain(&locks, &key, &lock).await.unwrap();
            let file = dir.path().join(key.as_ref());
            assert_eq!(mode(&file), 0o444);
            store.put(&key, "two".into()).await.unwrap();
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "two", "{name}");
            assert_ne!(mode(&file), 0o444, "{name}: a new file took the read-only one's place");
            store.delete(&key).await.unwrap();
        }
        let e = backup_core::ObjectLocks::retain(&locks, &Path::from("c/missing"), &lock).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
}

#[cfg(feature = "aws")]
mod s3 {
    use super::*;
    use backup_core::VersionLock;
    use backup_store::testing::{S3Server, moto_url};
    use backup_store::{StoreOptions, open_store};
    use object_store::aws::{AmazonS3, AmazonS3Builder};
    use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};

    fn fresh_bucket() -> String {
        format!("lock-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
    }

    /// The bucket with the credentials its owner has (moto takes any).
    fn s3(moto: &str, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(moto)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("owner")
            .with_secret_access_key("owner-secret")
            .build()
            .unwrap()
    }

    fn url(moto: &str, bucket: &str, object_lock: &str) -> String {
        format!(
            "s3://{bucket}?endpoint={moto}&allow_http=true&region=us-east-1&access_key_id=owner\
             &secret_access_key=owner-secret&object_lock={object_lock}"
        )
    }

    /// Sends a request signed with the owner's credentials; its status and body.
    async fn send(
        s3: &AmazonS3,
        method: Method,
        key: &Path,
        options: SignedUrlOptions,
    ) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
        let url = s3.signed_url_opts(method.clone(), key, Duration::from_secs(60), &options).await.unwrap();
        // S3 wants a length on a PUT, even an empty one, and reqwest sends none for no body.
        let put = method == Method::PUT;
        let mut request = reqwest::Client::new().request(method, url);
        if put {
            request = request.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        for (name, value) in &options.signed_headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.text().await.unwrap())
    }

    async fn create_bucket(moto: &str, bucket: &str, object_lock: bool) {
        let mut options = SignedUrlOptions::default();
        if object_lock {
            options = options.with_signed_header(
                HeaderName::from_static("x-amz-bucket-object-lock-enabled"),
                HeaderValue::from_static("true"),
            );
        }
        let (status, _, body) = send(&s3(moto, bucket), Method::PUT, &Path::default(), options).await;
        assert!(status.is_success(), "create bucket {bucket}: {status} {body}");
    }

    async fn retention(s3: &AmazonS3, key: &Path) -> (Option<String>, Option<String>) {
        let (status, headers, body) = send(s3, Method::HEAD, key, SignedUrlOptions::default()).await;
        assert!(status.is_success(), "HEAD {key}: {status} {body}");
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        (header("x-amz-object-lock-mode"), header("x-amz-object-lock-retain-until-date"))
    }

    /// What the brief promises: the bucket's own credentials cannot delete a locked version's
    /// object (moto refuses the DELETE of its version), a retention is never shortened, and
    /// the engine deletes the version once the lock has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bucket_refuses_to_delete_a_locked_version() {
        let Some(moto) = moto_url("the_bucket_refuses_to_delete_a_locked_version") else { return };
        tokio::time::timeout(BOUND, async {
            let bucket = fresh_bucket();
            create_bucket(&moto, &bucket, true).await;
            let opened = open_store(&url(&moto, &bucket, "true"), &StoreOptions::default()).unwrap();
            let locks = opened.object_locks.clone().expect("object_lock=true gives S3 Object Lock");
            locks.check().await.unwrap();
            assert!(locks.describe().contains("COMPLIANCE"), "{}", locks.describe());
            let store = opened.store.clone();
            let engine = opened.configure(Engine::builder()).trash_retention(Duration::ZERO).build().unwrap();
            let (me, id): (_, CollectionId) = (Actor::user("me"), "db".parse().unwrap());
            engine.create_collection(&me, &id, locked_spec(3)).await.unwrap();
            let v = upload(&engine, &id, "hello").await;
            let lock = v.lock.expect("the policy locks the version");
            let key = Path::from(v.object_key.as_str());
            let owner = s3(&moto, &bucket);

            // Both the object and its description carry the retention.
            let description = Path::from(format!("{}{DESCRIPTION_SUFFIX}", v.object_key));
            for k in [&key, &description] {
                let (mode, until) = retention(&owner, k).await;
                assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{k}");
                assert!(until.is_some(), "{k}");
            }

            // The owner's credentials cannot delete the locked version.
            let version = store.head(&key).await.unwrap().version.expect("a bucket with Object Lock has versioning");
            let delete = SignedUrlOptions::default().with_query([("versionId", version.as_str())]);
            let (status, _, body) = send(&owner, Method::DELETE, &key, delete.clone()).await;
            assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{body}");
            assert_eq!(store.get(&key).await.unwrap().bytes().await.unwrap(), "hello");
            // Nor does the engine.
            assert_eq!(engine.delete_version(&me, &id, v.number).await.unwrap_err().kind(), ErrorKind::Conflict);

            // A shorter lock leaves the retention as it is (moto would accept shortening it).
            let before = retention(&owner, &key).await;
            let shorter = VersionLock::new(LockMode::Governance, backup_core::Timestamp::from(chrono::Utc::now()));
            locks.retain(&key, &shorter).await.unwrap();
            assert_eq!(retention(&owner, &key).await, before, "never shortened, never weakened");

            // Once the lock has ended (moto keeps real time), the engine deletes the version
            // and its object is gone from the engine's view.
            let ended = lock.until.to_datetime() + chrono::Duration::seconds(1);
            while chrono::Utc::now() < ended {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            engine.delete_version(&me, &id, v.number).await.unwrap();
            let report = engine.recover().await.unwrap();
            assert!(report.failures.is_empty(), "{report:?}");
            let e = store.get(&key).await.unwrap_err();
            assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
            // The old version itself may go now, by the owner's credentials.
            let (status, _, body) = send(&owner, Method::DELETE, &key, delete).await;
            assert!(status.is_success(), "{status} {body}");
        })
        .await
        .expect("bounded");
    }

    /// A bucket created without Object Lock is told apart, and a retention on it is refused
    /// naming the key and S3's error code.
    #[tokio::test]
    async fn a_bucket_without_object_lock_is_refused() {
        let Some(moto) = moto_url("a_bucket_without_object_lock_is_refused") else { return };
        tokio::time::timeout(BOUND, async {
            let bucket = fresh_bucket();
            create_bucket(&moto, &bucket, false).await;
            let opened = open_store(&url(&moto, &bucket, "true"), &StoreOptions::default()).unwrap();
            let locks = opened.object_locks.clone().unwrap();
            let e = locks.check().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains(&bucket) && e.to_string().contains("Object Lock is not enabled"), "{e}");

            let key = Path::from("c/v1");
            opened.store.put(&key, "x".into()).await.unwrap();
            let lock = VersionLock::new(LockMode::Compliance, backup_core::Timestamp::end_of_time());
            let e = locks.retain(&key, &lock).await.unwrap_err();
            assert!(e.to_string().contains("c/v1") && e.to_string().contains("InvalidRequest"), "{e}");
        })
        .await
        .expect("bounded");
    }

    /// s3s-fs knows no Object Lock: `check` says so.
    #[tokio::test]
    async fn a_server_without_object_lock_is_refused() {
        tokio::time::timeout(BOUND, async {
            let server = S3Server::start().await;
            let opened = open_store(&format!("{}&object_lock=true", server.url()), &StoreOptions::default()).unwrap();
            let e = opened.object_locks.unwrap().check().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("Object Lock is not enabled"), "{e}");
        })
        .await
        .expect("bounded");
    }

    /// `object_lock` is ours, true or false; anything else is refused by name.
    #[test]
    fn the_object_lock_option_is_true_or_false() {
        let base = "s3://bucket?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1\
                    &access_key_id=a&secret_access_key=b";
        let options = StoreOptions::default();
        assert!(open_store(base, &options).unwrap().object_locks.is_none());
        assert!(open_store(&format!("{base}&object_lock=false"), &options).unwrap().object_locks.is_none());
        assert!(open_store(&format!("{base}&object_lock=true"), &options).unwrap().object_locks.is_some());
        let e = open_store(&format!("{base}&object_lock=yes"), &options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("object_lock=\"yes\": expected true or false"), "{e}");
        let by_option = StoreOptions::new().with("object_lock", "true");
        assert!(open_store(base, &by_option).unwrap().object_locks.is_some());
    }
}
