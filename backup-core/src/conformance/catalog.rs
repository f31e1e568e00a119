//! The catalog conformance suite.

use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures::{StreamExt, TryStreamExt};

use super::unique_collection;
use crate::catalog::{AbortCondition, AbortOutcome, Catalog, CatalogRecord, VersionQuery};
use crate::digest::{Digest, DigestAlgorithm};
use crate::error::ErrorKind;
use crate::id::{CollectionId, SessionId, VersionId};
use crate::protocol::{CommitRequest, ReserveRequest, SizeHint};
use crate::rotation::RotationStrategies;
use crate::session::{AuditEvent, Session};
use crate::spec::{CollectionSpec, Limits};
use crate::version::{Collection, PendingUpload, Uploader, Version, VersionSelector, VersionState};

/// Runs every check of the suite.
pub async fn run_all(catalog: Arc<dyn Catalog>) {
    collections_crud(catalog.as_ref()).await;
    list_collections_paginates(catalog.as_ref()).await;
    reserve_commit_numbers_and_lists(catalog.as_ref()).await;
    commit_applies_rotation_and_purge(catalog.as_ref()).await;
    quota_is_enforced_at_reserve_and_commit(catalog.as_ref()).await;
    leases_expire_renew_and_abort(catalog.as_ref()).await;
    abort_reports_what_it_found(catalog.as_ref()).await;
    delete_collection_refuses_non_empty(catalog.as_ref()).await;
    single_use_session_is_consumed_by_commit(catalog.as_ref()).await;
    sessions_register_list_revoke(catalog.as_ref()).await;
    audit_events_are_appended_in_order(catalog.as_ref()).await;
    export_is_a_complete_consistent_snapshot(catalog.as_ref()).await;
    restore_brings_back_a_trashed_version_if_it_fits(catalog.as_ref()).await;
    concurrent_reservations_are_atomic(catalog.clone()).await;
    concurrent_commits_get_unique_numbers(catalog.clone()).await;
}

/// The checks that need a catalog of their own, empty at the start: import into it.
pub async fn run_all_on_empty(empty: Arc<dyn Catalog>, scratch: Arc<dyn Catalog>) {
    import_refuses_bad_snapshots(empty.as_ref()).await;
    import_restores_an_export(scratch.as_ref(), empty.as_ref()).await;
}

/// Every record of a snapshot, the header's time left out, in a stable order: for comparing
/// two catalogs.
pub async fn contents(catalog: &dyn Catalog) -> Vec<CatalogRecord> {
    let mut records: Vec<CatalogRecord> =
        catalog.export().await.expect("export").try_collect().await.expect("export stream");
    assert!(matches!(records.first(), Some(CatalogRecord::Header { .. })), "a snapshot starts with its header");
    records.remove(0);
    records.sort_by_key(|r| serde_json::to_string(r).expect("records serialise"));
    records
}

/// Microsecond precision: what every catalog can store.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn audit(action: &str) -> AuditEvent {
    AuditEvent::new(now(), "conformance", action)
}

fn spec(max_versions: u32, soft: u64, hard: u64) -> CollectionSpec {
    CollectionSpec::new("c-${version}.bin", Limits::new(max_versions, soft, hard).expect("valid limits"))
}

async fn create(catalog: &dyn Catalog, prefix: &str, spec: CollectionSpec) -> CollectionId {
    let id = unique_collection(prefix);
    let c = Collection::new(id.clone(), spec, now());
    catalog.create_collection(&c, &audit("collection.create").collection(&id)).await.expect("create collection");
    id
}

fn strategies() -> Arc<RotationStrategies> {
    Arc::new(RotationStrategies::default())
}

fn reserve_request(id: &CollectionId, hint: SizeHint, at: DateTime<Utc>) -> ReserveRequest {
    let vid = VersionId::generate();
    ReserveRequest::new(
        vid,
        id.clone(),
        format!("conformance/{id}/{vid}"),
        Uploader { user: "tester".into(), access_key: Some("key".into()), session: None },
        hint,
        at,
        at + Duration::minutes(10),
        strategies(),
    )
}

fn exact(n: u64) -> SizeHint {
    SizeHint { lower: n, exact: Some(n) }
}

async fn reserve(catalog: &dyn Catalog, id: &CollectionId, hint: SizeHint) -> PendingUpload {
    catalog.reserve(&reserve_request(id, hint, now())).await.expect("reserve")
}

fn commit_request(p: &PendingUpload, size: u64) -> CommitRequest {
    let digest = Digest::of(DigestAlgorithm::Blake3, &size.to_le_bytes());
    CommitRequest::new(p.id, p.collection.clone(), size, digest, now(), None, strategies())
}

async fn upload(catalog: &dyn Catalog, id: &CollectionId, size: u64) -> Version {
    let p = reserve(catalog, id, exact(size)).await;
    catalog.commit(&commit_request(&p, size)).await.expect("commit").version
}

/// Create, read, update with revisions, refuse duplicates and unknown ids.
pub async fn collections_crud(catalog: &dyn Catalog) {
    let id = create(catalog, "crud", spec(3, 10, 40).with_description("first")).await;
    let got = catalog.get_collection(&id).await.expect("get");
    assert_eq!((got.spec.description.as_str(), got.revision), ("first", 1));
    let dup = Collection::new(id.clone(), spec(1, 1, 1), now());
    let e = catalog.create_collection(&dup, &audit("collection.create")).await.expect_err("duplicate create");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");

    let mut updated = got.clone();
    updated.spec = spec(4, 10, 40).with_description("second");
    updated.revision = 2;
    updated.updated_at = now();
    catalog.update_collection(&updated, 1, &audit("collection.update")).await.expect("update");
    assert_eq!(catalog.get_collection(&id).await.expect("get").spec.description, "second");
    let e = catalog.update_collection(&updated, 1, &audit("collection.update")).await.expect_err("stale revision");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    let missing = unique_collection("missing");
    assert_eq!(catalog.get_collection(&missing).await.expect_err("missing").kind(), ErrorKind::NotFound);
    let e = catalog.collection_state(&missing).await.expect_err("missing state");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = catalog.reserve(&reserve_request(&missing, exact(1), now())).await.expect_err("reserve in missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    catalog.delete_collection(&id, &audit("collection.delete")).await.expect("delete empty");
    assert_eq!(catalog.get_collection(&id).await.expect_err("deleted").kind(), ErrorKind::NotFound);
    let e = catalog.delete_collection(&id, &audit("collection.delete")).await.expect_err("delete twice");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// Listing is ordered by id and continues after a cursor.
pub async fn list_collections_paginates(catalog: &dyn Catalog) {
    let prefix = unique_collection("page");
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = CollectionId::new(format!("{prefix}-{i}")).expect("valid");
        catalog
            .create_collection(&Collection::new(id.clone(), spec(1, 1, 1), now()), &audit("collection.create"))
            .await
            .expect("create");
        ids.push(id);
    }
    let before = CollectionId::new(format!("{prefix}-")).expect("valid");
    let first = catalog.list_collections(Some(&before), 2).await.expect("list");
    assert_eq!(first.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), ids[..2]);
    let next = catalog.list_collections(Some(&first[1].id), 2).await.expect("list");
    assert_eq!(next.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), ids[2..4]);
    for id in &ids {
        catalog.delete_collection(id, &audit("collection.delete")).await.expect("delete");
    }
}

/// Reservations are pending and invisible; commits number versions 1, 2, 3 and lists show them.
pub async fn reserve_commit_numbers_and_lists(catalog: &dyn Catalog) {
    let id = create(catalog, "numbers", spec(10, 100, 1000)).await;
    let p = reserve(catalog, &id, exact(5)).await;
    assert_eq!((p.reserved, p.pool_share), (5, 0));
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.pending.len(), 1);
    assert!(state.committed.is_empty());
    assert!(
        catalog.list_versions(&id, &VersionQuery::first(10)).await.expect("list").is_empty(),
        "pending is invisible"
    );
    let e = catalog.get_version(&id, VersionSelector::Latest).await.expect_err("nothing committed");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let v1 = catalog.commit(&commit_request(&p, 5)).await.expect("commit").version;
    assert_eq!((v1.number, v1.size, v1.state, v1.filename.as_str()), (1, 5, VersionState::Committed, "c-1.bin"));
    assert_eq!(v1.uploader.access_key.as_deref(), Some("key"));
    let v2 = upload(catalog, &id, 7).await;
    let v3 = upload(catalog, &id, 9).await;
    assert_eq!((v2.number, v3.number), (2, 3));
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!((state.next_number, state.pending.len(), state.committed.len()), (4, 0, 3));

    assert_eq!(catalog.get_version(&id, VersionSelector::Latest).await.expect("latest"), v3);
    assert_eq!(catalog.get_version(&id, VersionSelector::Number(2)).await.expect("v2"), v2);
    let e = catalog.get_version(&id, VersionSelector::Number(4)).await.expect_err("no v4");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let page = catalog.list_versions(&id, &VersionQuery::first(2)).await.expect("list");
    assert_eq!(page.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    let page = catalog.list_versions(&id, &VersionQuery::first(2).after(2)).await.expect("list");
    assert_eq!(page, std::slice::from_ref(&v3));
    let e = catalog.commit(&commit_request(&p, 5)).await.expect_err("commit twice");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let known = catalog
        .known_object_keys(&[v1.object_key.clone(), "conformance/none".into(), v3.object_key.clone()])
        .await
        .expect("known");
    assert_eq!(known.len(), 2);
}

/// A commit trashes the versions FIFO evicts, atomically; trashed versions can be listed,
/// purged, and are then forgotten by `known_object_keys`. Manual trashing works likewise.
pub async fn commit_applies_rotation_and_purge(catalog: &dyn Catalog) {
    let id = create(catalog, "rotation", spec(2, 100, 200)).await;
    let v1 = upload(catalog, &id, 1).await;
    let _v2 = upload(catalog, &id, 2).await;
    let p = reserve(catalog, &id, exact(3)).await;
    let committed = catalog.commit(&commit_request(&p, 3)).await.expect("commit");
    assert_eq!(committed.evicted.len(), 1);
    let ev = &committed.evicted[0];
    assert_eq!((ev.number, ev.state), (1, VersionState::Trashed));
    assert!(ev.trash_reason.as_deref().is_some_and(|r| r.starts_with("fifo")), "{:?}", ev.trash_reason);
    let visible: Vec<u64> =
        catalog.list_versions(&id, &VersionQuery::first(10)).await.expect("list").iter().map(|v| v.number).collect();
    assert_eq!(visible, [2, 3]);
    let all: Vec<u64> = catalog
        .list_versions(&id, &VersionQuery::first(10).with_trashed())
        .await
        .expect("list")
        .iter()
        .map(|v| v.number)
        .collect();
    assert_eq!(all, [1, 2, 3]);

    let trashed =
        catalog.trash_version(&id, 2, now(), "deleted by conformance", &audit("version.delete")).await.expect("trash");
    assert_eq!(trashed.state, VersionState::Trashed);
    let e = catalog.trash_version(&id, 2, now(), "again", &audit("version.delete")).await.expect_err("trash twice");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let due = catalog.list_trashed(now() + Duration::seconds(1), 10_000).await.expect("list trashed");
    let ours: Vec<&Version> = due.iter().filter(|v| v.collection == id).collect();
    assert_eq!(ours.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(catalog.mark_purged(&[v1.id], now()).await.expect("purge"), [v1.id]);
    let again = catalog
        .mark_purged(&[v1.id, VersionId::generate()], now())
        .await
        .expect("purging again and unknown ids is fine");
    assert!(again.is_empty(), "only versions that were trashed are reported marked");
    let due = catalog.list_trashed(now() + Duration::seconds(1), 10_000).await.expect("list trashed");
    assert!(!due.iter().any(|v| v.id == v1.id));
    assert!(catalog.known_object_keys(std::slice::from_ref(&v1.object_key)).await.expect("known").is_empty());
    // Numbers are never reused.
    let v4 = upload(catalog, &id, 4).await;
    assert_eq!(v4.number, 4);
}

/// The allowance, the announced size, the shares of uploads in flight and the final size are
/// all checked.
pub async fn quota_is_enforced_at_reserve_and_commit(catalog: &dyn Catalog) {
    // 2 versions of 100, 300 in all: 100 of extra space.
    let id = create(catalog, "quota", spec(2, 100, 300)).await;
    let e = catalog.reserve(&reserve_request(&id, exact(201), now())).await.expect_err("announced too big");
    assert!(matches!(e, crate::Error::QuotaExceeded { allowed: 200, received_at_least: 201 }), "{e:?}");
    let e = catalog
        .reserve(&reserve_request(&id, SizeHint { lower: 250, exact: None }, now()))
        .await
        .expect_err("lower bound too big");
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);

    let big = reserve(catalog, &id, SizeHint::default()).await;
    assert_eq!((big.reserved, big.pool_share), (200, 100), "an unknown size reserves the whole allowance");
    let small = reserve(catalog, &id, SizeHint::default()).await;
    assert_eq!((small.reserved, small.pool_share), (100, 0), "the pool is held by the first");
    let e = catalog.commit(&commit_request(&small, 101)).await.expect_err("over the reservation");
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
    catalog.commit(&commit_request(&big, 180)).await.expect("commit within the reservation");
    catalog.commit(&commit_request(&small, 100)).await.expect("commit the small one");
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.committed_bytes(), 280);
    // Next: evicts the 180, keeps the 100: allowed 200.
    let p = reserve(catalog, &id, SizeHint::default()).await;
    assert_eq!(p.reserved, 200);
    catalog.abort(&p.id, AbortCondition::Always).await.expect("abort");
}

/// Expired leases stop counting, cannot commit, and are what recovery may abort.
pub async fn leases_expire_renew_and_abort(catalog: &dyn Catalog) {
    let id = create(catalog, "lease", spec(2, 100, 300)).await;
    let t0 = now();
    let stale = catalog.reserve(&reserve_request(&id, SizeHint::default(), t0)).await.expect("reserve");
    assert_eq!(stale.reserved, 200);
    let later = t0 + Duration::minutes(11);
    // The expired reservation no longer holds its share.
    let fresh = catalog.reserve(&reserve_request(&id, SizeHint::default(), later)).await.expect("reserve");
    assert_eq!(fresh.reserved, 200);
    let expired = catalog.list_expired_pending(later, 10_000).await.expect("expired");
    assert!(expired.iter().any(|p| p.id == stale.id));
    assert!(!expired.iter().any(|p| p.id == fresh.id));
    let mut req = commit_request(&stale, 10);
    req.now = later;
    let e = catalog.commit(&req).await.expect_err("commit after the lease");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    assert_eq!(
        catalog.abort(&fresh.id, AbortCondition::ExpiredAt(later)).await.expect("abort"),
        AbortOutcome::StillLive
    );
    catalog.renew_lease(&stale.id, later + Duration::minutes(10)).await.expect("renew");
    assert_eq!(
        catalog.abort(&stale.id, AbortCondition::ExpiredAt(later)).await.expect("abort"),
        AbortOutcome::StillLive
    );
    match catalog.abort(&stale.id, AbortCondition::ExpiredAt(later + Duration::minutes(11))).await.expect("abort") {
        AbortOutcome::Released(p) => assert_eq!(p.id, stale.id),
        other => panic!("expected Released, got {other:?}"),
    }
    let e = catalog.renew_lease(&stale.id, later).await.expect_err("renew an aborted upload");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    catalog.abort(&fresh.id, AbortCondition::Always).await.expect("abort");
}

/// Abort tells a released row from a committed one and from nothing.
pub async fn abort_reports_what_it_found(catalog: &dyn Catalog) {
    let id = create(catalog, "abort", spec(3, 100, 300)).await;
    let p = reserve(catalog, &id, exact(1)).await;
    assert!(matches!(catalog.abort(&p.id, AbortCondition::Always).await.expect("abort"), AbortOutcome::Released(_)));
    assert_eq!(catalog.abort(&p.id, AbortCondition::Always).await.expect("abort"), AbortOutcome::NotFound);
    let v = upload(catalog, &id, 2).await;
    match catalog.abort(&v.id, AbortCondition::Always).await.expect("abort") {
        AbortOutcome::Committed(found) => assert_eq!(found.number, v.number),
        other => panic!("expected Committed, got {other:?}"),
    }
    assert_eq!(
        catalog.collection_state(&id).await.expect("state").committed.len(),
        1,
        "abort never touches a committed version"
    );
}

/// A collection with versions or uploads in flight cannot be deleted.
pub async fn delete_collection_refuses_non_empty(catalog: &dyn Catalog) {
    let id = create(catalog, "nonempty", spec(3, 100, 300)).await;
    let p = reserve(catalog, &id, exact(1)).await;
    let e = catalog.delete_collection(&id, &audit("collection.delete")).await.expect_err("pending upload");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    catalog.commit(&commit_request(&p, 1)).await.expect("commit");
    let e = catalog.delete_collection(&id, &audit("collection.delete")).await.expect_err("committed version");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let v = catalog.trash_version(&id, 1, now(), "test", &audit("version.delete")).await.expect("trash");
    let e = catalog.delete_collection(&id, &audit("collection.delete")).await.expect_err("trashed version with object");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(catalog.mark_purged(&[v.id], now()).await.expect("purge"), [v.id]);
    catalog.delete_collection(&id, &audit("collection.delete")).await.expect("delete after purge");
}

fn session(user: &str, at: DateTime<Utc>) -> Session {
    let token = uuid::Uuid::new_v4().to_string();
    Session::new(SessionId::of_token(&token), user, at, at + Duration::hours(6), "Login")
}

/// A single-use session is revoked by the commit it authorizes; a second commit fails and
/// leaves its upload pending, untouched.
pub async fn single_use_session_is_consumed_by_commit(catalog: &dyn Catalog) {
    let id = create(catalog, "oneshot", spec(3, 100, 300)).await;
    let mut s = session(&format!("user-{id}"), now());
    s.single_use = true;
    catalog.insert_session(&s).await.expect("insert session");
    let a = reserve(catalog, &id, exact(1)).await;
    let b = reserve(catalog, &id, exact(1)).await;
    let mut ra = commit_request(&a, 1);
    ra.consume_session = Some(s.id.clone());
    catalog.commit(&ra).await.expect("first commit");
    assert!(catalog.get_session(&s.id).await.expect("session").revoked_at.is_some());
    let mut rb = commit_request(&b, 1);
    rb.consume_session = Some(s.id.clone());
    let e = catalog.commit(&rb).await.expect_err("second commit with the same one-time session");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(
        (state.committed.len(), state.pending.len(), state.next_number),
        (1, 1, 2),
        "nothing of the refused commit applied"
    );
    catalog.abort(&b.id, AbortCondition::Always).await.expect("abort");
}

/// Sessions are registered once, listed newest first, revoked one by one or per user.
pub async fn sessions_register_list_revoke(catalog: &dyn Catalog) {
    let user = format!("u-{}", unique_collection("s"));
    let t = now();
    let s1 = session(&user, t - Duration::minutes(2));
    let mut s2 = session(&user, t - Duration::minutes(1));
    s2.access_key = Some("uploader".into());
    s2.scope = Some(r#"{"elements":[]}"#.into());
    s2.requester_addr = Some("127.0.0.1".into());
    catalog.insert_session(&s1).await.expect("insert");
    catalog.insert_session(&s2).await.expect("insert");
    let e = catalog.insert_session(&s1).await.expect_err("same token twice");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(catalog.get_session(&s2.id).await.expect("get"), s2);
    let listed = catalog.list_sessions(Some(&user), 10).await.expect("list");
    assert_eq!(listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), [s2.id.clone(), s1.id.clone()]);

    let r = catalog.revoke_session(&s1.id, t, &audit("session.revoke")).await.expect("revoke");
    assert_eq!(r.revoked_at, Some(t));
    let again =
        catalog.revoke_session(&s1.id, t + Duration::minutes(1), &audit("session.revoke")).await.expect("revoke again");
    assert_eq!(again.revoked_at, Some(t), "the first revocation time stays");
    assert!(!again.is_active(t));
    assert_eq!(catalog.revoke_user_sessions(&user, t, &audit("session.revoke_all")).await.expect("revoke all"), 1);
    assert!(catalog.get_session(&s2.id).await.expect("get").revoked_at.is_some());
    let missing = SessionId::of_token("never issued");
    assert_eq!(catalog.get_session(&missing).await.expect_err("missing").kind(), ErrorKind::NotFound);
    let e = catalog.revoke_session(&missing, t, &audit("session.revoke")).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// The audit log keeps events in order, with those written by mutating calls.
pub async fn audit_events_are_appended_in_order(catalog: &dyn Catalog) {
    let id = create(catalog, "audit", spec(1, 1, 1)).await;
    catalog.append_audit(&audit("custom.one").collection(&id).detail("x")).await.expect("append");
    catalog.append_audit(&audit("custom.two").collection(&id).version(7)).await.expect("append");
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = catalog.list_audit(after, 1000).await.expect("list audit");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.seq);
        all.extend(page);
    }
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "sequence numbers increase");
    let ours: Vec<&str> =
        all.iter().filter(|e| e.collection.as_ref() == Some(&id)).map(|e| e.action.as_str()).collect();
    assert_eq!(ours, ["collection.create", "custom.one", "custom.two"]);
    let two = all.iter().find(|e| e.collection.as_ref() == Some(&id) && e.action == "custom.two").expect("event");
    assert_eq!(two.version, Some(7));
}

/// An export holds every kind of row, in order, and is consistent: a header, collections,
/// versions, sessions, audit events. Importing into a non-empty catalog is refused.
pub async fn export_is_a_complete_consistent_snapshot(catalog: &dyn Catalog) {
    let id = create(catalog, "export", spec(2, 100, 300)).await;
    upload(catalog, &id, 1).await;
    upload(catalog, &id, 2).await;
    upload(catalog, &id, 3).await; // trashes 1
    let pending = reserve(catalog, &id, exact(4)).await;
    let s = session(&format!("u-{id}"), now());
    catalog.insert_session(&s).await.expect("session");
    catalog.append_audit(&audit("custom.export").collection(&id)).await.expect("audit");

    let records: Vec<CatalogRecord> = catalog.export().await.expect("export").try_collect().await.expect("stream");
    records[0].check_header().expect("header first");
    let kind = |r: &CatalogRecord| match r {
        CatalogRecord::Header { .. } => 0,
        CatalogRecord::Collection { .. } => 1,
        CatalogRecord::Version(_) | CatalogRecord::Pending(_) => 2,
        CatalogRecord::Session(_) => 3,
        CatalogRecord::Audit(_) => 4,
    };
    assert!(records.windows(2).all(|w| kind(&w[0]) <= kind(&w[1])), "records come in order of kind");
    let ours = |r: &&CatalogRecord| match r {
        CatalogRecord::Collection { collection, .. } => collection.id == id,
        CatalogRecord::Version(v) => v.collection == id,
        CatalogRecord::Pending(p) => p.collection == id,
        CatalogRecord::Session(x) => x.id == s.id,
        CatalogRecord::Audit(e) => e.collection.as_ref() == Some(&id),
        _ => false,
    };
    let mine: Vec<&CatalogRecord> = records.iter().filter(ours).collect();
    assert!(mine.iter().any(|r| matches!(r, CatalogRecord::Collection { next_number: 4, .. })));
    let states: Vec<(u64, VersionState)> = mine
        .iter()
        .filter_map(|r| if let CatalogRecord::Version(v) = r { Some((v.number, v.state)) } else { None })
        .collect();
    assert_eq!(states, [(1, VersionState::Trashed), (2, VersionState::Committed), (3, VersionState::Committed)]);
    assert!(mine.iter().any(|r| matches!(r, CatalogRecord::Pending(p) if p.id == pending.id)));
    assert!(mine.iter().any(|r| matches!(r, CatalogRecord::Session(_))));
    assert_eq!(mine.iter().filter(|r| matches!(r, CatalogRecord::Audit(_))).count(), 2);
    let e = catalog.import(futures::stream::iter(records.into_iter().map(Ok)).boxed()).await.expect_err("not empty");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    catalog.abort(&pending.id, AbortCondition::Always).await.expect("abort");
}

/// A trashed version comes back with its number when there is a place and room; a purged one
/// never; a restored one is not purged.
pub async fn restore_brings_back_a_trashed_version_if_it_fits(catalog: &dyn Catalog) {
    // 2 versions of 100, 250 in all: 50 of extra space.
    let id = create(catalog, "restore", spec(2, 100, 250)).await;
    let v1 = upload(catalog, &id, 140).await;
    let _v2 = upload(catalog, &id, 100).await;
    let v3 = upload(catalog, &id, 10).await; // evicts v1
    let e = catalog.restore_version(&id, 1, now(), &audit("version.restore")).await.expect_err("no place");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    catalog.trash_version(&id, 3, now(), "deleted", &audit("version.delete")).await.expect("trash");
    let restored = catalog.restore_version(&id, 3, now(), &audit("version.restore")).await.expect("restore");
    assert_eq!((restored.number, restored.state, restored.trash_reason.as_deref()), (3, VersionState::Committed, None));
    assert!(catalog.mark_purged(&[v3.id], now()).await.expect("purge").is_empty(), "a restored version is not purged");
    catalog.trash_version(&id, 3, now(), "deleted", &audit("version.delete")).await.expect("trash");
    // v1 (140, 40 over the soft limit) fits next to v2 only with the extra space left: 50.
    let back = catalog.restore_version(&id, 1, now(), &audit("version.restore")).await.expect("restore v1");
    assert_eq!(back.number, 1);
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.committed.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(state.next_number, 4, "restoring uses no new number");
    assert_eq!(catalog.mark_purged(&[v3.id], now()).await.expect("purge"), [v3.id]);
    let e = catalog.restore_version(&id, 3, now(), &audit("version.restore")).await.expect_err("purged");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = catalog.restore_version(&id, 2, now(), &audit("version.restore")).await.expect_err("committed");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let _ = v1;
}

/// Snapshots without a header, with a foreign header, or with a version of an unknown
/// collection are refused and leave the catalog empty.
pub async fn import_refuses_bad_snapshots(empty: &dyn Catalog) {
    let records = |r: Vec<CatalogRecord>| futures::stream::iter(r.into_iter().map(Ok)).boxed();
    let c = Collection::new(unique_collection("import"), spec(2, 100, 300), now());
    let e = empty.import(records(vec![])).await.expect_err("empty stream");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = empty
        .import(records(vec![CatalogRecord::Collection { collection: c.clone(), next_number: 1 }]))
        .await
        .expect_err("no header");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let foreign = CatalogRecord::Header { format: "something-else".into(), version: 1, exported_at: now() };
    let e = empty.import(records(vec![foreign])).await.expect_err("foreign header");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let future = CatalogRecord::Header {
        format: crate::catalog::snapshot::SNAPSHOT_FORMAT.into(),
        version: 99,
        exported_at: now(),
    };
    assert_eq!(empty.import(records(vec![future])).await.expect_err("newer format").kind(), ErrorKind::InvalidInput);
    // A version of a collection the snapshot does not have: all or nothing.
    let scratch = crate::MemoryCatalog::new();
    let id = create(&scratch, "orphan", spec(2, 100, 300)).await;
    let v = upload(&scratch, &id, 1).await;
    let bad = vec![
        CatalogRecord::header(now()),
        CatalogRecord::Collection { collection: c.clone(), next_number: 1 },
        CatalogRecord::Version(v),
    ];
    let e = empty.import(records(bad)).await.expect_err("unknown collection");
    assert!(matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Conflict), "{e}");
    assert!(empty.list_collections(None, 10).await.expect("list").is_empty(), "a failed import leaves nothing");
    let failing = futures::stream::iter(vec![
        Ok(CatalogRecord::header(now())),
        Ok(CatalogRecord::Collection { collection: c, next_number: 1 }),
        Err(crate::Error::internal("the snapshot's source broke")),
    ])
    .boxed();
    empty.import(failing).await.expect_err("a failing stream");
    assert!(empty.list_collections(None, 10).await.expect("list").is_empty(), "a failed import leaves nothing");
}

/// An export of a populated catalog, imported into an empty one, gives the same contents:
/// the same collections, versions in every state, pending uploads, sessions, audit events,
/// counters; and the copy works on (numbers continue).
pub async fn import_restores_an_export(source: &dyn Catalog, empty: &dyn Catalog) {
    let id = create(source, "restore", spec(2, 100, 300)).await;
    for size in [5, 6, 7] {
        upload(source, &id, size).await;
    }
    source.trash_version(&id, 2, now(), "deleted by conformance", &audit("version.delete")).await.expect("trash");
    let pending = reserve(source, &id, exact(4)).await;
    let mut s = session(&format!("u-{id}"), now());
    s.scope = Some(r#"{"elements":[{"type":"collection","name":"x","roles":["backupUploader"]}]}"#.into());
    source.insert_session(&s).await.expect("session");
    source.revoke_session(&s.id, now(), &audit("session.revoke")).await.expect("revoke");

    let snapshot = source.export().await.expect("export");
    let summary = empty.import(snapshot).await.expect("import");
    assert!(summary.collections >= 1 && summary.versions >= 4 && summary.sessions >= 1, "{summary:?}");
    assert_eq!(contents(source).await, contents(empty).await, "the copy holds exactly what the source held");
    let e = empty.commit(&commit_request(&pending, 4)).await.expect("the pending upload commits in the copy");
    assert_eq!(e.version.number, 4, "numbers continue");
    let next = upload(empty, &id, 1).await;
    assert_eq!(next.number, 5);
    source.abort(&pending.id, AbortCondition::Always).await.expect("abort");
}

/// Many concurrent reservations against one pool: exactly as many succeed as the extra
/// space allows, none more.
pub async fn concurrent_reservations_are_atomic(catalog: Arc<dyn Catalog>) {
    // 4 × 100 + 250 extra; each reservation of 150 holds 50 of the pool: 5 fit.
    let id = create(catalog.as_ref(), "race", spec(4, 100, 650)).await;
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (catalog, id) = (catalog.clone(), id.clone());
            tokio::spawn(async move { catalog.reserve(&reserve_request(&id, exact(150), now())).await })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => granted += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}"),
        }
    }
    assert_eq!(granted, 5, "exactly the pool's worth of reservations");
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.pending.iter().map(|p| p.pool_share).sum::<u64>(), 250);
    for p in state.pending {
        catalog.abort(&p.id, AbortCondition::Always).await.expect("abort");
    }
}

/// Many concurrent reserve-and-commit tasks: numbers are unique, consecutive, and FIFO keeps
/// the newest.
pub async fn concurrent_commits_get_unique_numbers(catalog: Arc<dyn Catalog>) {
    let id = create(catalog.as_ref(), "commits", spec(4, 100, 400)).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (catalog, id) = (catalog.clone(), id.clone());
            tokio::spawn(async move {
                let p = catalog.reserve(&reserve_request(&id, exact(10), now())).await?;
                catalog.commit(&commit_request(&p, 10)).await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.expect("task").expect("reserve and commit").version.number);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=16).collect::<Vec<u64>>());
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.committed.iter().map(|v| v.number).collect::<Vec<_>>(), [13, 14, 15, 16]);
    assert_eq!(state.next_number, 17);
}
