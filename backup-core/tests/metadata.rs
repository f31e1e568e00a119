//! A version's metadata: given at upload, checked before a byte is read, kept by the
//! catalog, and carried by the version's description into a rebuilt catalog.

use std::sync::Arc;

use backup_core::testing::{body_of, pattern};
use backup_core::{
    Actor, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, MAX_METADATA_BYTES, MemoryCatalog, RebuildOptions,
    UploadOptions, VersionQuery, VersionSelector,
};
use object_store::memory::InMemory;

#[tokio::test]
async fn metadata_is_checked_kept_and_rebuilt_from_the_store() {
    let store = Arc::new(InMemory::new());
    let engine = Engine::builder().store(store.clone()).build().unwrap();
    let (me, id): (Actor, CollectionId) = (Actor::user("me"), "repo".parse().unwrap());
    engine
        .create_collection(
            &me,
            &id,
            CollectionSpec::new("repo-${version}.bundle", Limits::new(5, 1 << 20, 5 << 20).unwrap()),
        )
        .await
        .unwrap();

    let refs = "8f1e2d3c refs/heads/main\n0a1b2c3d refs/tags/v1.0\n";
    let options = UploadOptions::new().metadata("git.refs", refs).metadata("git.head", "refs/heads/main");
    let staged = engine.begin_upload(&me, &id, body_of(pattern(1, 5000), 700), options).await.unwrap();
    let v1 = staged.commit().await.unwrap();
    assert_eq!(v1.metadata["git.refs"], refs);
    let v2 = engine.upload(&me, &id, body_of(pattern(2, 10), 7)).await.unwrap();
    assert!(v2.metadata.is_empty());

    // Refused before a byte is read, and nothing is stored.
    for (bad, says) in [
        (UploadOptions::new().metadata("", "x"), "not a name"),
        (UploadOptions::new().metadata("a b", "x"), "not a name"),
        (UploadOptions::new().metadata("nul", "a\0b"), "NUL"),
        (UploadOptions::new().metadata("big", "x".repeat(MAX_METADATA_BYTES)), "bytes, at most"),
        ((0..65).fold(UploadOptions::new(), |o, i| o.metadata(format!("k{i}"), "v")), "entries"),
    ] {
        let body = futures::stream::iter([Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("read"))]);
        let e = engine.begin_upload(&me, &id, body, bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    let listed = engine.versions(&me, &id, VersionQuery::first(10)).await.unwrap().items;
    assert_eq!(listed.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(listed[0].metadata, v1.metadata, "listed with its metadata");

    // The catalog is lost: the descriptions bring the metadata back.
    let rebuilt =
        Engine::builder().catalog(Arc::new(MemoryCatalog::new())).store(store).adopt_store(true).build().unwrap();
    rebuilt.rebuild_catalog(&RebuildOptions::empty_catalog()).await.unwrap();
    let back = rebuilt.version(&me, &id, VersionSelector::Number(1)).await.unwrap();
    assert_eq!(back.metadata, v1.metadata);
    assert!(rebuilt.version(&me, &id, VersionSelector::Latest).await.unwrap().metadata.is_empty());
}
