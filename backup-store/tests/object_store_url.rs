//! Object stores by URL: every scheme builds, unknown ones are listed, cloud builders are
//! configured without a network.

use backup_core::ErrorKind;
use backup_store::{StoreOptions, object_store_from_url};
use object_store::ObjectStoreExt;
use object_store::path::Path;

#[tokio::test]
async fn memory_and_file_urls() {
    let store = object_store_from_url("memory://", &StoreOptions::default()).unwrap();
    store.put(&Path::from("a"), "x".into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new/folder");
    let store = object_store_from_url(&format!("file://{}", root.display()), &StoreOptions::default()).unwrap();
    assert!(root.is_dir(), "the folder is created");
    store.put(&Path::from("k/v"), "x".into()).await.unwrap();
    assert!(root.join("k/v").is_file());
}

#[test]
fn bad_urls_are_refused_with_the_reason() {
    let cases = [
        ("ftp://host/x", "is not one of memory://, file:///PATH"),
        ("not a url", "relative URL without a base"),
        ("file://relative/path", "expected file:///absolute/path"),
    ];
    for (url, reason) in cases {
        let e = object_store_from_url(url, &StoreOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(e.to_string().contains(reason), "{url}: {e}");
    }
}

#[cfg(feature = "aws")]
#[test]
fn s3_builds_without_a_network_and_needs_a_bucket() {
    let options = StoreOptions::new().with("access_key_id", "a").with("secret_access_key", "b");
    object_store_from_url("s3://bucket/prefix?region=eu-west-1", &options).unwrap();
    let e = object_store_from_url("s3:///?region=x", &options).unwrap_err();
    assert!(e.to_string().contains("bucket is missing"), "{e}");
}

#[cfg(feature = "gcp")]
#[test]
fn gcs_is_configured_from_the_url_and_options() {
    // A service account key with its own endpoint: no network is touched to build it.
    let key = r#"{"private_key":"","private_key_id":"","client_email":"x@y.iam.gserviceaccount.com","disable_oauth":true,"gcs_base_url":"http://127.0.0.1:1"}"#;
    let options = StoreOptions::new().with("service_account_key", key);
    object_store_from_url("gs://bucket/prefix", &options).unwrap();
    let e = object_store_from_url("gs://bucket?nonsense=1", &options).unwrap_err();
    assert!(e.to_string().contains("nonsense"), "{e}");
}

#[cfg(feature = "azure")]
#[test]
fn azure_is_configured_from_the_url_and_options() {
    object_store_from_url("az://container/prefix?use_emulator=true", &StoreOptions::default()).unwrap();
    let options = StoreOptions::new().with("account_name", "acct").with("access_key", "a2V5");
    object_store_from_url("az://container", &options).unwrap();
    let e = object_store_from_url("az://container?nonsense=1", &options).unwrap_err();
    assert!(e.to_string().contains("nonsense"), "{e}");
}

#[cfg(not(all(feature = "aws", feature = "gcp", feature = "azure")))]
#[test]
fn cloud_schemes_without_their_feature_name_it() {
    for (url, feature) in [("s3://b", "aws"), ("gs://b", "gcp"), ("az://c", "azure")] {
        if let Err(e) = object_store_from_url(url, &StoreOptions::default()) {
            if e.to_string().contains("feature") {
                assert!(e.to_string().contains(feature), "{e}");
            }
        }
    }
}
