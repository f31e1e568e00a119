//! The catalog conformance suite: every check a [`Catalog`] must pass.
//!
//! Each check is a `pub async fn` over `&dyn Catalog` that works in fresh, randomly named
//! collections and sessions, so checks can run in parallel against one database. A backend
//! runs [`run_all`] and [`run_all_on_empty`], or each check of [`CHECKS`] as a test case of its
//! own ([`for_each_catalog_check!`](crate::for_each_catalog_check) names them all, as `backup-store` does with one case per
//! check and backend).

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};

use futures::future::BoxFuture;

use super::{NewCatalog, unique_collection};
use crate::audit::AuditEvent;
use crate::catalog::protocol::LockBypass;
use crate::catalog::{
    AbortCondition, AbortOutcome, Catalog, CatalogExt, CatalogRecord, KeyClass, PendingFilter, VersionQuery,
};
use crate::digest::{Digest, DigestAlgorithm};
use crate::error::ErrorKind;
use crate::id::{CollectionId, RepositoryId, SessionId, VersionId};
use crate::protocol::ProtectionChange;
use crate::protocol::{
    CollectionChange, CollectionQuery, CommitRequest, Decision, GrowRequest, Growth, Mutation, ReserveRequest,
    SizeHint, StateQuery, VersionRange, VersionRow, VersionsNeeded,
};
use crate::rotation::RotationStrategies;
use crate::session::Session;
use crate::spec::{CollectionSpec, Limits, RetentionSpec};
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, TombstoneKind, Uploader, Version, VersionSelector, VersionState};

/// Calls `$callback!` with every check of the catalog suite, each as `name: kind`: the one
/// list that [`CHECKS`], [`run_all`] and [`run_all_on_empty`] are made from. A backend's test
/// file expands it into one test per check (as `backup-store`'s `tests/catalogs.rs` does on the
/// memory, SQLite and PostgreSQL catalogs), so a check added here runs on every backend, with
/// its own test name, and a `pub async fn` check of [`crate::conformance::catalog`] missing
/// from this list fails `backup-core`'s tests.
///
/// `for_each_catalog_check!(callback)` expands to `callback! { name: kind, … }`, and
/// `for_each_catalog_check!(callback, tokens…)` to `callback! { tokens… ; name: kind, … }`.
/// The kind says how the check uses catalogs (see [`Check::run`]): `shared` takes a `&dyn
/// Catalog` that other checks may use too, `shared_arc` an `Arc<dyn Catalog>` (it spawns
/// tasks), `shared_with_store` an `Arc<dyn Catalog>` and an object store, `empty` a catalog of
/// its own, empty at the start, and `source_and_empty` a catalog to export from and an empty
/// one to import into.
///
/// ```
/// use std::sync::Arc;
/// use backup_core::MemoryCatalog;
/// use backup_core::catalog::Catalog;
/// use futures::future::BoxFuture;
///
/// fn memory() -> BoxFuture<'static, Arc<dyn Catalog>> {
///     Box::pin(async { Arc::new(MemoryCatalog::new()) as Arc<dyn Catalog> })
/// }
///
/// macro_rules! one_test_per_check {
///     ($($check:ident: $kind:ident),* $(,)?) => {
///         $(
///             #[tokio::test(flavor = "multi_thread")]
///             async fn $check() {
///                 backup_core::conformance::catalog::check(stringify!($check)).run(&memory).await;
///             }
///         )*
///     };
/// }
/// backup_core::for_each_catalog_check!(one_test_per_check);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! for_each_catalog_check {
    ($callback:ident) => {
        $crate::for_each_catalog_check! { @list $callback {} }
    };
    ($callback:ident, $($extra:tt)*) => {
        $crate::for_each_catalog_check! { @list $callback { $($extra)* ; } }
    };
    (@list $callback:ident { $($extra:tt)* }) => {
        $callback! {
            $($extra)*
            collections_crud: shared,
            list_collections_paginates: shared,
            reserve_commit_numbers_and_lists: shared,
            commit_applies_rotation_and_purge: shared,
            quota_is_enforced_at_reserve_and_commit: shared,
            live_uploads_are_capped: shared,
            multipart_ids_are_recorded_and_tombstoned: shared,
            unknown_sizes_grow_as_their_bytes_arrive: shared_arc,
            leases_expire_and_are_never_revived: shared,
            an_expired_lease_is_renewed_while_its_room_is_free: shared,
            abort_reports_what_it_found_and_leaves_a_tombstone: shared,
            tombstones_are_listed_classified_and_forgotten: shared,
            delete_collection_checks_first_and_tombstones_its_trash: shared,
            counters_follow_every_step: shared,
            quarantines_are_counted: shared,
            loads_choose_versions_by_range: shared,
            pending_uploads_are_listed_by_owner_and_expiry: shared,
            held_versions_stay: shared,
            locks_are_kept_and_enforced: shared,
            metadata_is_kept_with_the_version: shared,
            version_numbers_stay_in_range: shared,
            description_marks_are_set_listed_and_cleared: shared,
            gfs_rotation_runs_in_the_commit: shared,
            single_use_session_is_consumed_by_commit: shared,
            required_session_must_be_active_at_commit: shared,
            sessions_register_list_revoke_expire: shared,
            audit_events_are_appended_in_order: shared,
            audit_events_are_chained: shared,
            concurrent_appends_form_one_chain: shared_arc,
            log_cursors_are_leased_and_moved: shared,
            export_is_a_complete_consistent_snapshot: shared,
            restore_brings_back_a_trashed_version_if_it_fits: shared,
            a_failing_step_writes_nothing: shared,
            concurrent_reservations_are_atomic: shared_arc,
            concurrent_commits_get_unique_numbers: shared_arc,
            uploads_under_a_monitor_never_pass_the_hard_limit: shared_with_store,
            repository_id_is_claimed_once: empty,
            import_refuses_bad_snapshots: empty,
            audit_pruning_keeps_the_chain: empty,
            import_restores_an_export: source_and_empty,
        }
    };
}

/// One check of the suite: its name and how it uses catalogs.
#[derive(Clone, Copy)]
pub struct Check {
    /// The check's name, the name of its function in this module.
    pub name: &'static str,
    run: Run,
}

/// A check that also takes an object store.
type WithStore = fn(Arc<dyn Catalog>, Arc<dyn object_store::ObjectStore>) -> BoxFuture<'static, ()>;

/// A check's function, by how it uses catalogs (the kinds of [`for_each_catalog_check!`](crate::for_each_catalog_check)).
#[derive(Clone, Copy)]
enum Run {
    Shared(for<'a> fn(&'a dyn Catalog) -> BoxFuture<'a, ()>),
    SharedArc(fn(Arc<dyn Catalog>) -> BoxFuture<'static, ()>),
    SharedWithStore(WithStore),
    Empty(for<'a> fn(&'a dyn Catalog) -> BoxFuture<'a, ()>),
    SourceAndEmpty(for<'a> fn(&'a dyn Catalog, &'a dyn Catalog) -> BoxFuture<'a, ()>),
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).field("shares_a_catalog", &self.shares_a_catalog()).finish()
    }
}

impl Check {
    /// Whether the check can run in a catalog that other checks use too ([`run_all`] runs
    /// those); the others need empty catalogs of their own ([`run_all_on_empty`]).
    pub fn shares_a_catalog(&self) -> bool {
        matches!(self.run, Run::Shared(_) | Run::SharedArc(_) | Run::SharedWithStore(_))
    }

    /// Runs the check on fresh catalogs from `new_catalog`: one, or two for an import (a
    /// source and an empty target); one that needs an object store gets an in-memory one.
    pub async fn run(&self, new_catalog: NewCatalog<'_>) {
        match self.run {
            Run::Shared(check) | Run::Empty(check) => check(new_catalog().await.as_ref()).await,
            Run::SharedArc(_) | Run::SharedWithStore(_) => self.run_in(new_catalog().await).await,
            Run::SourceAndEmpty(check) => {
                let (source, empty) = (new_catalog().await, new_catalog().await);
                check(source.as_ref(), empty.as_ref()).await;
            }
        }
    }

    /// Runs a check that [`Check::shares_a_catalog`] in `catalog`.
    async fn run_in(&self, catalog: Arc<dyn Catalog>) {
        match self.run {
            Run::Shared(check) => check(catalog.as_ref()).await,
            Run::SharedArc(check) => check(catalog).await,
            Run::SharedWithStore(check) => check(catalog, Arc::new(object_store::memory::InMemory::new())).await,
            Run::Empty(_) | Run::SourceAndEmpty(_) => {
                unreachable!("{} needs catalogs of its own: run_all leaves it out", self.name)
            }
        }
    }
}

/// Every check of the suite, in the order of [`for_each_catalog_check!`](crate::for_each_catalog_check).
pub const CHECKS: &[Check] = boxed::CHECKS;

/// The check called `name`.
///
/// # Panics
/// If the suite has no such check: names come from [`for_each_catalog_check!`](crate::for_each_catalog_check).
pub fn check(name: &str) -> &'static Check {
    CHECKS.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("the catalog suite has no check called {name:?}"))
}

/// The checks as functions of one signature per kind, returning boxed futures.
mod boxed {
    use super::*;

    macro_rules! table {
        ($($check:ident: $kind:ident),* $(,)?) => {
            $( table!(@boxed $kind $check); )*
            pub(super) const CHECKS: &[Check] =
                &[$( Check { name: stringify!($check), run: table!(@run $kind $check) } ),*];
        };
        (@boxed shared $check:ident) => {
            fn $check(catalog: &dyn Catalog) -> BoxFuture<'_, ()> {
                Box::pin(super::$check(catalog))
            }
        };
        (@boxed empty $check:ident) => {
            table!(@boxed shared $check);
        };
        (@boxed shared_arc $check:ident) => {
            fn $check(catalog: Arc<dyn Catalog>) -> BoxFuture<'static, ()> {
                Box::pin(super::$check(catalog))
            }
        };
        (@boxed shared_with_store $check:ident) => {
            fn $check(catalog: Arc<dyn Catalog>, store: Arc<dyn object_store::ObjectStore>) -> BoxFuture<'static, ()> {
                Box::pin(super::$check(catalog, store))
            }
        };
        (@boxed source_and_empty $check:ident) => {
            fn $check<'a>(source: &'a dyn Catalog, empty: &'a dyn Catalog) -> BoxFuture<'a, ()> {
                Box::pin(super::$check(source, empty))
            }
        };
        (@run shared $check:ident) => { Run::Shared($check) };
        (@run empty $check:ident) => { Run::Empty($check) };
        (@run shared_arc $check:ident) => { Run::SharedArc($check) };
        (@run shared_with_store $check:ident) => { Run::SharedWithStore($check) };
        (@run source_and_empty $check:ident) => { Run::SourceAndEmpty($check) };
    }

    crate::for_each_catalog_check!(table);
}

/// Runs every check of the suite that can share a catalog with others, in `catalog`.
pub async fn run_all(catalog: Arc<dyn Catalog>) {
    for check in CHECKS.iter().filter(|c| c.shares_a_catalog()) {
        check.run_in(catalog.clone()).await;
    }
}

/// Runs the checks that need catalogs of their own, empty at the start, each on fresh ones
/// from `new_catalog`.
pub async fn run_all_on_empty(new_catalog: NewCatalog<'_>) {
    for check in CHECKS.iter().filter(|c| !c.shares_a_catalog()) {
        check.run(new_catalog).await;
    }
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

fn now() -> Timestamp {
    Timestamp::from(Utc::now())
}

/// The built-in strategies' rules, as an engine without extra registrations has them.
fn rules() -> crate::protocol::SpecRules {
    crate::protocol::SpecRules::default()
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
    catalog
        .create_collection(&c, &rules(), &audit("collection.create").with_collection(&id))
        .await
        .expect("create collection");
    id
}

fn strategies() -> Arc<RotationStrategies> {
    Arc::new(RotationStrategies::default())
}

fn reserve_request(id: &CollectionId, hint: SizeHint, at: Timestamp) -> ReserveRequest {
    let vid = VersionId::generate();
    ReserveRequest::new(
        vid,
        id.clone(),
        format!("conformance/{id}/{vid}"),
        Uploader::user("tester").with_access_key(Some("key".into())),
        hint,
        at,
        at + Duration::minutes(10),
    )
}

async fn reserve(catalog: &dyn Catalog, id: &CollectionId, hint: SizeHint) -> PendingUpload {
    catalog.reserve(&reserve_request(id, hint, now()), &strategies()).await.expect("reserve")
}

fn commit_request(p: &PendingUpload, size: u64) -> CommitRequest {
    let digest = Digest::of(DigestAlgorithm::Blake3, &size.to_le_bytes());
    CommitRequest::new(p.id, p.collection.clone(), size, digest, now())
}

async fn commit(catalog: &dyn Catalog, request: &CommitRequest) -> crate::Result<crate::protocol::Committed> {
    catalog.commit(request, &strategies()).await
}

async fn upload(catalog: &dyn Catalog, id: &CollectionId, size: u64) -> Version {
    let p = reserve(catalog, id, SizeHint::exact(size)).await;
    commit(catalog, &commit_request(&p, size)).await.expect("commit").version
}

async fn numbers(catalog: &dyn Catalog, id: &CollectionId, query: VersionQuery) -> Vec<u64> {
    catalog.list_versions(id, &query).await.expect("list").iter().map(|v| v.number).collect()
}

/// Create, read, update with revisions, refuse duplicates and unknown ids.
pub async fn collections_crud(catalog: &dyn Catalog) {
    let id = create(catalog, "crud", spec(3, 10, 40).with_description("first")).await;
    let got = catalog.get_collection(&id).await.expect("get");
    assert_eq!((got.spec.description.as_str(), got.revision), ("first", 1));
    // The spec rules are part of the decision: no step of the catalog stores a spec an
    // upload would refuse, whichever path calls it.
    let unknown = spec(1, 1, 1).with_content_rule("no-such-rule");
    let refused = unique_collection("crud-refused");
    let e = catalog
        .create_collection(
            &Collection::new(refused.clone(), unknown.clone(), now()),
            &rules(),
            &audit("collection.create"),
        )
        .await
        .expect_err("a spec the rules refuse");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(catalog.get_collection(&refused).await.expect_err("nothing stored").kind(), ErrorKind::NotFound);
    let e = catalog
        .update_collection(&id, &unknown, None, true, &rules(), LockBypass::NONE, &audit("collection.put"))
        .await
        .expect_err("an update the rules refuse");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let dup = Collection::new(id.clone(), spec(1, 1, 1), now());
    let e = catalog.create_collection(&dup, &rules(), &audit("collection.create")).await.expect_err("duplicate create");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");

    let second = spec(4, 10, 40).with_description("second");
    let change = catalog
        .update_collection(&id, &second, Some(1), false, &rules(), LockBypass::NONE, &audit("collection.update"))
        .await
        .expect("update");
    assert!(matches!(&change, CollectionChange::Updated(c) if c.revision == 2), "{change:?}");
    assert_eq!(catalog.get_collection(&id).await.expect("get").spec.description, "second");
    let e = catalog
        .update_collection(
            &id,
            &spec(5, 10, 50),
            Some(1),
            false,
            &rules(),
            LockBypass::NONE,
            &audit("collection.update"),
        )
        .await
        .expect_err("stale revision");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let same = catalog
        .update_collection(&id, &second, None, true, &rules(), LockBypass::NONE, &audit("collection.update"))
        .await
        .expect("put");
    assert!(matches!(same, CollectionChange::Unchanged(_)), "{same:?}");

    let missing = unique_collection("missing");
    assert_eq!(catalog.get_collection(&missing).await.expect_err("missing").kind(), ErrorKind::NotFound);
    assert_eq!(catalog.collection_state(&missing).await.expect_err("missing state").kind(), ErrorKind::NotFound);
    let e = catalog
        .reserve(&reserve_request(&missing, SizeHint::exact(1), now()), &strategies())
        .await
        .expect_err("reserve in missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = catalog
        .update_collection(&missing, &second, None, false, &rules(), LockBypass::NONE, &audit("collection.update"))
        .await
        .expect_err("update missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let put = catalog
        .update_collection(&missing, &second, None, true, &rules(), LockBypass::NONE, &audit("collection.put"))
        .await
        .expect("put");
    assert!(matches!(put, CollectionChange::Created(_)), "{put:?}");
    catalog.delete_collection(&missing, &audit("collection.delete")).await.expect("delete");
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
            .create_collection(
                &Collection::new(id.clone(), spec(1, 1, 1), now()),
                &rules(),
                &audit("collection.create"),
            )
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

/// Reservations are pending and invisible; commits number versions 1, 2, 3 and lists show
/// them.
pub async fn reserve_commit_numbers_and_lists(catalog: &dyn Catalog) {
    let id = create(catalog, "numbers", spec(10, 100, 1000)).await;
    let p = reserve(catalog, &id, SizeHint::exact(5)).await;
    assert_eq!((p.reserved, p.pool_share, p.announced), (5, 0, Some(5)));
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!((state.pending.len(), state.counters.versions), (1, 0));
    assert_eq!(state.pending[0], p, "the pending row reads back as reserved");
    assert!(numbers(catalog, &id, VersionQuery::first(10)).await.is_empty(), "pending is invisible");
    let e = catalog.get_version(&id, VersionSelector::Latest).await.expect_err("nothing committed");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let v1 = commit(catalog, &commit_request(&p, 5)).await.expect("commit").version;
    assert_eq!((v1.number, v1.size, v1.state, v1.filename.as_str()), (1, 5, VersionState::Committed, "c-1.bin"));
    assert_eq!(v1.uploader.access_key.as_deref(), Some("key"));
    let v2 = upload(catalog, &id, 7).await;
    let v3 = upload(catalog, &id, 9).await;
    assert_eq!((v2.number, v3.number), (2, 3));
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!((state.counters.next_number, state.pending.len(), state.counters.versions), (4, 0, 3));

    assert_eq!(catalog.get_version(&id, VersionSelector::Latest).await.expect("latest"), v3);
    assert_eq!(catalog.get_version(&id, VersionSelector::Number(2)).await.expect("v2"), v2);
    let e = catalog.get_version(&id, VersionSelector::Number(4)).await.expect_err("no v4");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = catalog.get_version(&id, VersionSelector::Number(u64::MAX)).await.expect_err("no huge version");
    assert_eq!(e.kind(), ErrorKind::NotFound, "numbers beyond a catalog's integers are simply not found");
    assert_eq!(numbers(catalog, &id, VersionQuery::first(2)).await, [1, 2]);
    let page = catalog.list_versions(&id, &VersionQuery::first(2).after(2)).await.expect("list");
    assert_eq!(page, std::slice::from_ref(&v3));
    assert!(numbers(catalog, &id, VersionQuery::first(2).after(u64::MAX)).await.is_empty());
    let e = commit(catalog, &commit_request(&p, 5)).await.expect_err("commit twice");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let classes = catalog
        .classify_object_keys(&[v1.object_key.clone(), "conformance/none".into(), v3.object_key.clone()])
        .await
        .expect("classify");
    assert_eq!(classes, [KeyClass::Live, KeyClass::Unknown, KeyClass::Live]);
}

/// A commit trashes the versions FIFO evicts, atomically (or purges them, with tombstones);
/// trashed versions can be listed and purged. Manual trashing works likewise.
pub async fn commit_applies_rotation_and_purge(catalog: &dyn Catalog) {
    let id = create(catalog, "rotation", spec(2, 100, 200)).await;
    let v1 = upload(catalog, &id, 1).await;
    let _v2 = upload(catalog, &id, 2).await;
    let p = reserve(catalog, &id, SizeHint::exact(3)).await;
    let committed = commit(catalog, &commit_request(&p, 3)).await.expect("commit");
    assert_eq!(committed.evicted.len(), 1);
    let ev = &committed.evicted[0];
    assert_eq!((ev.number, ev.state), (1, VersionState::Trashed));
    assert!(ev.trash_reason.as_deref().is_some_and(|r| r.starts_with("fifo")), "{:?}", ev.trash_reason);
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10)).await, [2, 3]);
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10).with_trashed()).await, [1, 2, 3]);

    let trashed = catalog
        .trash_version(&id, 2, "deleted by conformance", false, LockBypass::NONE, &audit("version.delete"))
        .await
        .expect("trash");
    assert_eq!(trashed.state, VersionState::Trashed);
    let e = catalog
        .trash_version(&id, 2, "again", false, LockBypass::NONE, &audit("version.delete"))
        .await
        .expect_err("trash twice");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let due = catalog.list_trashed(now() + Duration::seconds(1), 10_000).await.expect("list trashed");
    let ours: Vec<&Version> = due.iter().filter(|v| v.collection == id).collect();
    assert_eq!(ours.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    let marked = catalog.mark_purged(&[v1.id], now()).await.expect("purge");
    assert_eq!(marked.iter().map(|v| (v.id, v.state)).collect::<Vec<_>>(), [(v1.id, VersionState::Purged)]);
    let again = catalog.mark_purged(&[v1.id, VersionId::generate()], now()).await.expect("purging again is fine");
    assert!(again.is_empty(), "only versions that were trashed are reported marked");
    let due = catalog.list_trashed(now() + Duration::seconds(1), 10_000).await.expect("list trashed");
    assert!(!due.iter().any(|v| v.id == v1.id));
    let classes = catalog.classify_object_keys(std::slice::from_ref(&v1.object_key)).await.expect("classify");
    assert_eq!(classes, [KeyClass::Garbage], "a purged version's object is garbage");

    // A commit that purges at once: the evicted version is purged with a tombstone.
    assert_eq!(upload(catalog, &id, 4).await.number, 4, "numbers are never reused");
    let p = reserve(catalog, &id, SizeHint::exact(5)).await;
    let committed = commit(catalog, &commit_request(&p, 5).with_purge_evicted(true)).await.expect("commit");
    assert_eq!(committed.evicted.iter().map(|v| (v.number, v.state)).collect::<Vec<_>>(), [(3, VersionState::Purged)]);
    let tombstones = catalog.list_tombstones(Some(&id), None, 100).await.expect("tombstones");
    assert!(
        tombstones.iter().any(|t| t.object_key == committed.evicted[0].object_key && t.kind == TombstoneKind::Purged)
    );
    assert_eq!(committed.version.number, 5);
}

/// The allowance, the announced size, the shares of uploads in flight and the final size are
/// all checked.
pub async fn quota_is_enforced_at_reserve_and_commit(catalog: &dyn Catalog) {
    // 2 versions of 100, 300 in all: 100 of extra space.
    let id = create(catalog, "quota", spec(2, 100, 300)).await;
    let e = catalog
        .reserve(&reserve_request(&id, SizeHint::exact(201), now()), &strategies())
        .await
        .expect_err("announced too big");
    assert!(matches!(e, crate::Error::QuotaExceeded { allowed: 200, received_at_least: 201 }), "{e:?}");
    let at_least = SizeHint { lower: 250, exact: None };
    let e = catalog.reserve(&reserve_request(&id, at_least, now()), &strategies()).await.expect_err("lower bound");
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);

    let big = reserve(catalog, &id, SizeHint::unknown()).await;
    assert_eq!((big.reserved, big.pool_share), (100, 0), "no extra space is held before bytes arrive");
    let small = reserve(catalog, &id, SizeHint::unknown()).await;
    assert_eq!((small.reserved, small.pool_share), (100, 0));
    let e = commit(catalog, &commit_request(&small, 101)).await.expect_err("over the reservation");
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
    // The big one's bytes pass the soft limit first: it grows (a step beyond its bytes, half
    // of what is free as two uploads are live).
    let big_grown = grown(grow(catalog, &big, 180).await);
    assert_eq!((big_grown.reserved, big_grown.pool_share), (190, 90));
    commit(catalog, &commit_request(&big, 180)).await.expect("commit within the reservation");
    commit(catalog, &commit_request(&small, 100)).await.expect("commit the small one");
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!((state.counters.bytes, state.counters.overage), (280, 80));
    // Next: evicts the 180, keeps the 100: allowed 200, reached step by step.
    let p = reserve(catalog, &id, SizeHint::unknown()).await;
    assert_eq!(p.reserved, 100);
    assert_eq!(grown(grow(catalog, &p, 200).await).reserved, 200);
    assert_eq!(grow(catalog, &p, 201).await, Growth::Refused { allowed: 200 });
    let state = catalog.collection_state(&id).await.expect("state");
    let dropped = state.pending.iter().find(|q| q.id == p.id).expect("still pending until aborted");
    assert_eq!((dropped.reserved, dropped.pool_share), (0, 0), "a refused upload holds nothing");
    catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
}

async fn grow(catalog: &dyn Catalog, p: &PendingUpload, received: u64) -> Growth {
    let request = GrowRequest::new(p.id, p.collection.clone(), received, now());
    catalog.grow_reservation(&request, &strategies()).await.expect("grow")
}

fn grown(growth: Growth) -> PendingUpload {
    match growth {
        Growth::Grown(p) => *p,
        other => panic!("refused: {other:?}"),
    }
}

/// Uploads of unknown size share the extra space first come first served: one that has not
/// sent its bytes holds none of it, a refusal frees what the refused upload held in the same
/// step, and an announced size reserves exactly. The growth steps are serialised with the
/// collection's other steps, across instances.
pub async fn unknown_sizes_grow_as_their_bytes_arrive(catalog: Arc<dyn Catalog>) {
    // 10 versions of 100, 1650 in all: 650 of extra space, room for three uploads of 300 and
    // some slack (what the growing uploads hold beyond their bytes).
    let id = create(catalog.as_ref(), "growing", spec(10, 100, 1650)).await;
    let idle = reserve(catalog.as_ref(), &id, SizeHint::unknown()).await;
    let exact = reserve(catalog.as_ref(), &id, SizeHint::exact(300)).await;
    assert_eq!(exact.pool_share, 200, "an announced size reserves exactly");
    // Eight uploads of 300 in steps of 10, interleaved through concurrent steps: at most two
    // more fit beside the announced one.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let catalog = catalog.clone();
        let p = reserve(catalog.as_ref(), &id, SizeHint::unknown()).await;
        tasks.push(tokio::spawn(async move {
            let mut received = 0;
            while received < 300 {
                received += 10;
                if let Growth::Refused { allowed } = grow(catalog.as_ref(), &p, received).await {
                    assert!(allowed < received);
                    catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
                    return None;
                }
            }
            // The body ended: what it held beyond its bytes goes back.
            let request = GrowRequest::new(p.id, p.collection.clone(), received, now()).ended();
            let settled = grown(catalog.grow_reservation(&request, &strategies()).await.expect("settle"));
            assert_eq!((settled.reserved, settled.pool_share), (300, 200));
            Some(p)
        }));
    }
    let mut finished = Vec::new();
    for t in tasks {
        if let Some(p) = t.await.expect("task") {
            finished.push(p);
        }
    }
    // A refused upload freed its room at once: the survivors are as many as fit.
    assert_eq!(finished.len(), 2, "two of the eight fit beside the announced upload");
    let state = catalog.collection_state(&id).await.expect("state");
    let shares: u64 = state.pending.iter().map(|p| p.pool_share).sum();
    assert_eq!(shares, 600, "the two and the announced one hold exactly their bytes' share");
    for p in finished.iter().chain([&exact]) {
        commit(catalog.as_ref(), &commit_request(p, 300)).await.expect("commit");
    }
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.counters.bytes, 900);
    // The idle upload was never in anyone's way, and now nothing of the extra space is left.
    assert_eq!(grow(catalog.as_ref(), &idle, 151).await, Growth::Refused { allowed: 150 });
    catalog.abort(&idle.id, AbortCondition::Always, now()).await.expect("abort");
}

/// A multipart upload's id is recorded on a live upload only, survives a reload and a
/// growth, and goes into the tombstone when the upload is released by anyone but an uploader
/// that finished it.
pub async fn multipart_ids_are_recorded_and_tombstoned(catalog: &dyn Catalog) {
    let id = create(catalog, "staging", spec(3, 100, 600)).await;
    let t = now();
    let crashed = reserve(catalog, &id, SizeHint::unknown()).await;
    let recorded = catalog.record_staging(&crashed.id, "upload-1", t).await.expect("record");
    assert_eq!(recorded.staging.as_deref(), Some("upload-1"));
    let grown = grown(grow(catalog, &crashed, 150).await);
    assert_eq!(grown.staging.as_deref(), Some("upload-1"), "a growth keeps the id");
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.pending[0].staging.as_deref(), Some("upload-1"), "the id is stored");
    let finished = reserve(catalog, &id, SizeHint::unknown()).await;
    catalog.record_staging(&finished.id, "upload-2", t).await.expect("record");
    catalog.abort(&crashed.id, AbortCondition::ExpiredAt(t + Duration::minutes(11)), t).await.expect("abort");
    catalog.abort(&finished.id, AbortCondition::Finished, t).await.expect("abort");
    let tombstones = catalog.list_tombstones(Some(&id), None, 10).await.expect("tombstones");
    let staging_of = |key: &str| tombstones.iter().find(|t| t.object_key == key).map(|t| t.staging.clone());
    assert_eq!(staging_of(&crashed.object_key), Some(Some("upload-1".into())), "{tombstones:?}");
    assert_eq!(staging_of(&finished.object_key), Some(None), "{tombstones:?}");
    let e = catalog.record_staging(&crashed.id, "late", t).await.expect_err("not pending any more");
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

/// A lease that ran out by the clock (its owner's clock stepped forward) and that nobody
/// aborted is renewed, and may grow and commit, while its room is still free.
pub async fn an_expired_lease_is_renewed_while_its_room_is_free(catalog: &dyn Catalog) {
    let id = create(catalog, "step", spec(2, 100, 300)).await;
    let t0 = now();
    let mine = catalog.reserve(&reserve_request(&id, SizeHint::unknown(), t0), &strategies()).await.expect("reserve");
    let request = GrowRequest::new(mine.id, id.clone(), 150, t0);
    let reserved = grown(catalog.grow_reservation(&request, &strategies()).await.expect("grow")).reserved;
    assert!(reserved >= 150);
    let stepped = t0 + Duration::hours(3);
    let renewed = catalog.renew_lease(&mine.id, stepped + Duration::minutes(1), stepped).await.expect("renewed");
    assert_eq!(renewed.lease_until, stepped + Duration::minutes(1));
    assert_eq!(renewed.reserved, reserved, "the reservation is kept");
    // Expired again by a second step: growth and commit go on while the room is free.
    let again = stepped + Duration::hours(1);
    let request = GrowRequest::new(mine.id, id.clone(), 160, again);
    assert!(grown(catalog.grow_reservation(&request, &strategies()).await.expect("grow")).reserved >= 160);
    let mut req = commit_request(&mine, 160);
    req.now = again;
    assert_eq!(commit(catalog, &req).await.expect("commit").version.size, 160);
}

/// Expired leases stop counting, cannot commit, cannot be renewed once their share was
/// promised to another upload, and are what recovery may abort.
pub async fn leases_expire_and_are_never_revived(catalog: &dyn Catalog) {
    let id = create(catalog, "lease", spec(2, 100, 300)).await;
    let t0 = now();
    let stale = catalog.reserve(&reserve_request(&id, SizeHint::unknown(), t0), &strategies()).await.expect("reserve");
    let request = GrowRequest::new(stale.id, id.clone(), 200, t0);
    assert_eq!(grown(catalog.grow_reservation(&request, &strategies()).await.expect("grow")).reserved, 200);
    let later = t0 + Duration::minutes(11);
    // The expired reservation no longer holds its share, and cannot grow.
    let fresh =
        catalog.reserve(&reserve_request(&id, SizeHint::unknown(), later), &strategies()).await.expect("reserve");
    let request = GrowRequest::new(fresh.id, id.clone(), 200, later);
    assert_eq!(grown(catalog.grow_reservation(&request, &strategies()).await.expect("grow")).reserved, 200);
    let request = GrowRequest::new(stale.id, id.clone(), 201, later);
    let e = catalog.grow_reservation(&request, &strategies()).await.expect_err("growth after the lease");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let expired = catalog.list_pending(&PendingFilter::expired_at(later), 10_000).await.expect("expired");
    assert!(expired.iter().any(|p| p.id == stale.id));
    assert!(!expired.iter().any(|p| p.id == fresh.id));
    let mut req = commit_request(&stale, 10);
    req.now = later;
    let e = commit(catalog, &req).await.expect_err("commit after the lease");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    let e = catalog
        .renew_lease(&stale.id, later + Duration::minutes(10), later)
        .await
        .expect_err("an expired lease is never revived");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    let renewed = catalog.renew_lease(&fresh.id, later + Duration::minutes(20), later).await.expect("renew");
    assert_eq!(renewed.lease_until, later + Duration::minutes(20));
    assert_eq!(
        catalog.abort(&fresh.id, AbortCondition::ExpiredAt(later + Duration::minutes(15)), later).await.expect("abort"),
        AbortOutcome::StillLive,
        "a renewed lease is live"
    );
    match catalog.abort(&stale.id, AbortCondition::ExpiredAt(later), later).await.expect("abort") {
        AbortOutcome::Released(p) => assert_eq!(p.id, stale.id),
        other => panic!("expected Released, got {other:?}"),
    }
    let e = catalog.renew_lease(&stale.id, later, later).await.expect_err("renew an aborted upload");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    catalog.abort(&fresh.id, AbortCondition::Always, later).await.expect("abort");
}

/// Abort tells a released row from a committed one and from nothing, and records a tombstone
/// for the object of a released one.
pub async fn abort_reports_what_it_found_and_leaves_a_tombstone(catalog: &dyn Catalog) {
    let id = create(catalog, "abort", spec(3, 100, 300)).await;
    let p = reserve(catalog, &id, SizeHint::exact(1)).await;
    let t = now();
    assert!(matches!(catalog.abort(&p.id, AbortCondition::Always, t).await.expect("abort"), AbortOutcome::Released(_)));
    assert_eq!(catalog.abort(&p.id, AbortCondition::Always, t).await.expect("abort"), AbortOutcome::NotFound);
    let tombstones = catalog.list_tombstones(Some(&id), None, 10).await.expect("tombstones");
    assert_eq!(tombstones.len(), 1);
    let ts = &tombstones[0];
    assert_eq!(
        (ts.object_key.as_str(), ts.version, ts.kind, ts.recorded_at),
        (p.object_key.as_str(), p.id, TombstoneKind::Released, t)
    );
    let v = upload(catalog, &id, 2).await;
    match catalog.abort(&v.id, AbortCondition::Always, now()).await.expect("abort") {
        AbortOutcome::Committed(found) => assert_eq!(found.number, v.number),
        other => panic!("expected Committed, got {other:?}"),
    }
    assert_eq!(
        catalog.collection_state(&id).await.expect("state").counters.versions,
        1,
        "abort never touches a committed version"
    );
}

/// Tombstones are paged by key, classify their objects as garbage, and go when forgotten.
pub async fn tombstones_are_listed_classified_and_forgotten(catalog: &dyn Catalog) {
    let id = create(catalog, "tombs", spec(5, 100, 500)).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let p = reserve(catalog, &id, SizeHint::exact(1)).await;
        catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
        keys.push(p.object_key);
    }
    keys.sort();
    let first = catalog.list_tombstones(Some(&id), None, 2).await.expect("page");
    assert_eq!(first.iter().map(|t| t.object_key.clone()).collect::<Vec<_>>(), keys[..2]);
    let rest = catalog.list_tombstones(Some(&id), Some(&first[1].object_key), 2).await.expect("page");
    assert_eq!(rest.iter().map(|t| t.object_key.clone()).collect::<Vec<_>>(), keys[2..]);
    assert_eq!(catalog.classify_object_keys(&keys).await.expect("classify"), [KeyClass::Garbage; 3]);
    catalog.forget_tombstones(&keys[..2]).await.expect("forget");
    catalog.forget_tombstones(&keys[..2]).await.expect("forgetting twice is fine");
    let left = catalog.list_tombstones(Some(&id), None, 10).await.expect("list");
    assert_eq!(left.iter().map(|t| t.object_key.clone()).collect::<Vec<_>>(), keys[2..]);
    assert_eq!(catalog.classify_object_keys(&keys[..1]).await.expect("classify"), [KeyClass::Unknown]);
    let all = catalog.list_tombstones(None, None, 100_000).await.expect("all");
    assert!(all.iter().any(|t| t.object_key == keys[2]), "listing without a collection lists every tombstone");
    catalog.forget_tombstones(&keys[2..]).await.expect("forget");
}

/// A collection with versions or uploads in flight cannot be deleted, and a refused deletion
/// changes nothing; a deletion turns the objects of its trashed versions into tombstones.
pub async fn delete_collection_checks_first_and_tombstones_its_trash(catalog: &dyn Catalog) {
    let id = create(catalog, "nonempty", spec(3, 100, 300)).await;
    let p = reserve(catalog, &id, SizeHint::exact(1)).await;
    let e = catalog.delete_collection(&id, &audit("collection.delete")).await.expect_err("pending upload");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    commit(catalog, &commit_request(&p, 1)).await.expect("commit");
    upload(catalog, &id, 2).await;
    catalog.trash_version(&id, 2, "test", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    let e = catalog.delete_collection(&id, &audit("collection.delete")).await.expect_err("committed version");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        numbers(catalog, &id, VersionQuery::first(10).with_trashed()).await,
        [1, 2],
        "a refused deletion changes nothing"
    );
    let v1 =
        catalog.trash_version(&id, 1, "test", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    catalog.delete_collection(&id, &audit("collection.delete")).await.expect("delete with trashed versions");
    let tombstones = catalog.list_tombstones(Some(&id), None, 10).await.expect("tombstones");
    assert_eq!(tombstones.len(), 2, "both trashed versions' objects are garbage now");
    assert!(tombstones.iter().any(|t| t.object_key == v1.object_key));
    let keys: Vec<String> = tombstones.iter().map(|t| t.object_key.clone()).collect();
    catalog.forget_tombstones(&keys).await.expect("forget");
}

/// The counters kept in the collection row equal a recount of the versions after every kind
/// of step, and the overage is recounted when the soft limit changes.
pub async fn counters_follow_every_step(catalog: &dyn Catalog) {
    let id = create(catalog, "counters", spec(3, 100, 600)).await;
    let recount = || async {
        let state = catalog.collection_state_with(&id, VersionsNeeded::Range(VersionRange::All)).await.expect("state");
        let soft = state.collection.spec.limits;
        let c = state.counters;
        assert_eq!(c.versions, state.committed.len() as u64, "count");
        assert_eq!(c.bytes, state.committed.iter().map(|v| v.size).sum::<u64>(), "bytes");
        assert_eq!(c.overage, state.committed.iter().map(|v| soft.overage(v.size)).sum::<u64>(), "overage");
        assert_eq!(c.last_committed_at, state.committed.iter().map(|v| v.committed_at).max().or(c.last_committed_at));
        c
    };
    for size in [150, 50, 120] {
        upload(catalog, &id, size).await;
        recount().await;
    }
    upload(catalog, &id, 10).await; // evicts 150
    assert_eq!(recount().await.overage, 20);
    catalog.trash_version(&id, 3, "x", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    assert_eq!(recount().await.versions, 2);
    catalog.restore_version(&id, 3, &audit("version.restore")).await.expect("restore");
    assert_eq!(recount().await.bytes, 180);
    catalog
        .update_collection(&id, &spec(3, 40, 600), None, false, &rules(), LockBypass::NONE, &audit("collection.update"))
        .await
        .expect("update");
    let c = recount().await;
    assert_eq!((c.overage, c.next_number), (10 + 80, 5), "overage recounted against the new soft limit");
}

/// The count of quarantined versions in the collection row follows every step that changes
/// it: a scrub's finding (quarantine, release, the same finding again), a deletion and a
/// restore (the version keeps its quarantine), a commit whose rotation evicts one.
pub async fn quarantines_are_counted(catalog: &dyn Catalog) {
    use crate::protocol::Verification;
    let id = create(catalog, "quarantine", spec(3, 100, 600)).await;
    let recount = || async {
        let state = catalog.collection_state_with(&id, VersionsNeeded::Range(VersionRange::All)).await.expect("state");
        let quarantined = state.committed.iter().filter(|v| v.quarantined.is_some()).count() as u64;
        assert_eq!(state.counters.quarantined, quarantined, "the counter equals a recount: {:?}", state.counters);
        quarantined
    };
    let v1 = upload(catalog, &id, 10).await;
    let v2 = upload(catalog, &id, 20).await;
    upload(catalog, &id, 30).await;
    assert_eq!(recount().await, 0);
    let damaged = Verification::Damaged("digest differs".into());
    let found = |v: Version, finding: Verification| async move {
        catalog.record_verification(&v, &finding, &audit("version.verify")).await.expect("record")
    };
    assert!(found(v1.clone(), damaged.clone()).await.is_some_and(|v| v.quarantined.is_some()));
    assert_eq!(recount().await, 1, "quarantined");
    found(v1.clone(), damaged.clone()).await;
    assert_eq!(recount().await, 1, "found damaged again: counted once");
    found(v2.clone(), damaged.clone()).await;
    assert_eq!(recount().await, 2);
    found(v2.clone(), Verification::Intact).await;
    assert_eq!(recount().await, 1, "released");
    catalog.trash_version(&id, 1, "x", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    assert_eq!(recount().await, 0, "a trashed version is not counted");
    assert!(found(v1.clone(), damaged.clone()).await.is_none(), "a trashed version is left alone");
    let restored = catalog.restore_version(&id, 1, &audit("version.restore")).await.expect("restore");
    assert!(restored.quarantined.is_some(), "restored with its quarantine");
    assert_eq!(recount().await, 1);
    upload(catalog, &id, 40).await; // FIFO evicts the oldest: the quarantined one
    assert_eq!(recount().await, 0, "evicted by a commit");
}

/// A state query loads the oldest, newest or all committed versions, or none, chosen from the
/// collection row; and versions by number and by id, in any state.
pub async fn loads_choose_versions_by_range(catalog: &dyn Catalog) {
    let id = create(catalog, "ranges", spec(10, 100, 1000)).await;
    let mut ids = Vec::new();
    for size in 1..=6 {
        ids.push(upload(catalog, &id, size).await.id);
    }
    catalog.trash_version(&id, 2, "x", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    let by_number = vec![(2, VersionState::Trashed), (5, VersionState::Committed)];
    assert_eq!(load_range(catalog, &id, VersionRange::Oldest(2)).await, (vec![1, 3], by_number.clone()));
    assert_eq!(load_range(catalog, &id, VersionRange::Newest(2)).await, (vec![5, 6], by_number.clone()));
    assert_eq!(load_range(catalog, &id, VersionRange::All).await, (vec![1, 3, 4, 5, 6], by_number.clone()));
    assert_eq!(load_range(catalog, &id, VersionRange::None).await, (vec![], by_number.clone()));
    assert_eq!(load_range(catalog, &id, VersionRange::Oldest(100)).await.0, vec![1, 3, 4, 5, 6]);
    let chosen = VersionsNeeded::FromRow(Arc::new(|_, counters| VersionRange::Oldest(counters.versions - 4)));
    let state = catalog.collection_state_with(&id, chosen).await.expect("state");
    assert_eq!(state.committed.iter().map(|v| v.number).collect::<Vec<_>>(), [1], "chosen from the counters");
    let missing = unique_collection("none");
    let state = catalog.load(StateQuery::collection(CollectionQuery::new(missing))).await.expect("load");
    assert!(state.collection.is_none());
    let p = reserve(catalog, &id, SizeHint::exact(1)).await;
    let rows = catalog.load(StateQuery::versions([p.id, ids[1], VersionId::generate()])).await.expect("load").versions;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| matches!(r, VersionRow::Pending(x) if x.id == p.id)));
    assert!(
        rows.iter().any(|r| matches!(r, VersionRow::Version(v) if v.id == ids[1] && v.state == VersionState::Trashed))
    );
    catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
}

async fn load_range(
    catalog: &dyn Catalog,
    id: &CollectionId,
    range: VersionRange,
) -> (Vec<u64>, Vec<(u64, VersionState)>) {
    let q = CollectionQuery::new(id.clone()).with_committed(VersionsNeeded::Range(range)).with_numbers([2, 5, 99]);
    let state = catalog.load(StateQuery::collection(q)).await.expect("load").collection.expect("collection");
    let committed: Vec<u64> = state.committed.iter().map(|v| v.number).collect();
    let by_number: Vec<(u64, VersionState)> = state.by_number.iter().map(|v| (v.number, v.state)).collect();
    (committed, by_number)
}

/// Pending uploads can be listed by engine instance and by expiry.
pub async fn pending_uploads_are_listed_by_owner_and_expiry(catalog: &dyn Catalog) {
    let id = create(catalog, "owners", spec(5, 100, 500)).await;
    let owner = format!("instance-{id}");
    let t = now();
    let mine = catalog
        .reserve(&reserve_request(&id, SizeHint::exact(1), t).with_owner(Some(owner.clone())), &strategies())
        .await
        .expect("reserve");
    let other = reserve(catalog, &id, SizeHint::exact(1)).await;
    let listed = catalog.list_pending(&PendingFilter::owned_by(owner.clone()), 10).await.expect("list");
    assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), [mine.id]);
    assert_eq!(listed[0].owner.as_deref(), Some(owner.as_str()));
    let expired =
        catalog.list_pending(&PendingFilter::expired_at(t + Duration::minutes(10)), 10_000).await.expect("list");
    assert!(expired.iter().any(|p| p.id == mine.id), "a lease ending exactly now is expired");
    for p in [mine, other] {
        catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
    }
}

/// The marked versions of `id` ([`Catalog::list_undescribed`], paged through with its cursor
/// from the start): number, mark, state.
async fn marks_of(catalog: &dyn Catalog, id: &CollectionId) -> Vec<(u64, u64, VersionState)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = catalog.list_undescribed(after, 3).await.expect("list undescribed");
        let mut ids: Vec<VersionId> = page.iter().map(|u| u.version.id).collect();
        ids.dedup();
        assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids.len() == page.len(), "ordered by id, each once");
        if let (Some(a), Some(first)) = (after, ids.first()) {
            assert!(*first > a, "after the cursor");
        }
        out.extend(page.iter().filter(|u| &u.version.collection == id).map(|u| {
            assert!(u.mark <= i64::MAX as u64, "a mark fits 63 bits");
            (u.version.number, u.mark, u.version.state)
        }));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(last.version.id),
            _ => break,
        }
    }
    out.sort_unstable_by_key(|m| (m.0, m.1));
    out
}

/// Every step that changes what a version's description says marks the version in its own
/// transaction (a commit and the versions it rotates into the trash, a deletion into the
/// trash, a restore, a change of protection, an adoption); the marked versions are listed by
/// id with their marks, whatever else the catalog holds; a mark is cleared only by its own
/// value (a version marked again since keeps its new mark), and only in its collection.
pub async fn description_marks_are_set_listed_and_cleared(catalog: &dyn Catalog) {
    let id = create(catalog, "marks", spec(2, 100, 300)).await;
    let other = create(catalog, "marks-other", spec(2, 100, 300)).await;
    let (v1, v2) = (upload(catalog, &id, 5).await, upload(catalog, &id, 6).await);
    let o1 = upload(catalog, &other, 5).await;
    let marked = marks_of(catalog, &id).await;
    let committed = VersionState::Committed;
    assert_eq!(marked.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(), [(1, committed), (2, committed)]);
    let mark = |n: u64, marked: &[(u64, u64, VersionState)]| marked.iter().find(|m| m.0 == n).expect("marked").1;
    let (m1, m2) = (mark(1, &marked), mark(2, &marked));

    // Cleared by its own value only, in its own collection only.
    catalog.mark_described(&id, &[(v1.id, m1 ^ 1)]).await.expect("a wrong mark is no error");
    catalog.mark_described(&other, &[(v2.id, m2)]).await.expect("another collection's is no error");
    assert_eq!(marks_of(catalog, &id).await, marked, "nothing cleared");
    catalog.mark_described(&id, &[(v1.id, m1), (v2.id, m2)]).await.expect("described");
    assert!(marks_of(catalog, &id).await.is_empty());
    assert_eq!(marks_of(catalog, &other).await.len(), 1, "the other collection's mark stays");
    let e = catalog.mark_described(&unique_collection("gone"), &[(o1.id, 1)]).await.expect_err("no collection");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // A commit marks the new version and the one it rotates into the trash.
    upload(catalog, &id, 7).await;
    let marked = marks_of(catalog, &id).await;
    assert_eq!(
        marked.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(),
        [(1, VersionState::Trashed), (3, committed)],
        "{marked:?}"
    );
    // Marked again by a later change: clearing the earlier mark leaves the later one.
    let m3 = mark(3, &marked);
    catalog.protect_version(&id, 3, ProtectionChange::hold(), &audit("version.protect")).await.expect("hold");
    let again = mark(3, &marks_of(catalog, &id).await);
    assert_ne!(again, m3, "a new mark");
    let v3 = catalog.get_version(&id, VersionSelector::Number(3)).await.expect("v3");
    catalog.mark_described(&id, &[(v3.id, m3), (v1.id, mark(1, &marked))]).await.expect("described");
    assert_eq!(marks_of(catalog, &id).await.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(), [(3, again)]);
    catalog.mark_described(&id, &[(v3.id, again)]).await.expect("described");

    // A deletion into the trash, a restore, an adoption.
    catalog
        .trash_version(&id, 2, "deleted by conformance", false, LockBypass::NONE, &audit("version.delete"))
        .await
        .expect("trash");
    catalog.restore_version(&id, 1, &audit("version.restore")).await.expect("restore");
    let digest = Digest::of(DigestAlgorithm::Blake3, b"x");
    let vid = VersionId::generate();
    let adopted = Version::new(vid, id.clone(), 9, format!("conformance/{id}/{vid}"), 1, digest)
        .with_filename("f")
        .with_state(VersionState::Trashed, Some((now(), "imported".into())), None);
    catalog.adopt_versions(&id, vec![adopted], &audit("version.import")).await.expect("adopt");
    let marked = marks_of(catalog, &id).await;
    assert_eq!(
        marked.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(),
        [(1, committed), (2, VersionState::Trashed), (9, VersionState::Trashed)],
        "{marked:?}"
    );
    let listed = catalog.list_undescribed(None, 100_000).await.expect("list");
    let v2 = listed.iter().find(|u| u.version.id == v2.id).expect("listed").version.clone();
    assert_eq!(v2.trash_reason.as_deref(), Some("deleted by conformance"), "listed as the catalog holds it");
}

/// A held version stays whatever FIFO wants, and cannot be deleted; an upload that cannot
/// fit because held versions take the places is refused with a message that says so.
pub async fn held_versions_stay(catalog: &dyn Catalog) {
    let id = create(catalog, "held", spec(2, 100, 200)).await;
    let v1 = upload(catalog, &id, 1).await;
    let t = now();
    let held = v1.clone().with_protection(true, None);
    let mut counters = catalog.collection_state(&id).await.expect("state").counters;
    counters.protected += 1;
    counters.held += 1;
    let writes = vec![Mutation::UpdateVersion(held), Mutation::SetCounters { collection: id.clone(), counters }];
    catalog.step(StateQuery::none(), move |_| Ok(Decision::new(writes, ()))).await.expect("hold");
    upload(catalog, &id, 2).await;
    let v3 = upload(catalog, &id, 3).await; // evicts 2, not the held 1
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10)).await, [1, 3]);
    let e =
        catalog.trash_version(&id, 1, "x", false, LockBypass::NONE, &audit("version.delete")).await.expect_err("held");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("held"), "{e}");
    // Hold version 3 too: nothing can go, so nothing can come.
    let mut counters = catalog.collection_state(&id).await.expect("state").counters;
    counters.protected += 1;
    let writes = vec![
        Mutation::UpdateVersion(v3.with_protection(false, Some(t + Duration::days(1)))),
        Mutation::SetCounters { collection: id.clone(), counters },
    ];
    catalog.step(StateQuery::none(), move |_| Ok(Decision::new(writes, ()))).await.expect("protect");
    let e = catalog
        .reserve(&reserve_request(&id, SizeHint::exact(1), now()), &strategies())
        .await
        .expect_err("the held versions fill the collection");
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
    assert!(e.to_string().contains("held or protected"), "{e}");
}

/// A version committed under a lock policy carries its lock (mode and end) in every read and
/// in an export; a lock lengthens and stays lengthened; no deletion, eviction or weakened
/// policy gets past a compliance lock; a governance lock gives way to a bypass, audited;
/// maintenance after the end clears the lock and the counters follow.
pub async fn locks_are_kept_and_enforced(catalog: &dyn Catalog) {
    use crate::lock::{LockMode, LockPolicy, VersionLock};
    let policy = LockPolicy::new(LockMode::Compliance, Duration::days(1));
    let id = create(catalog, "locked", spec(2, 100, 200).with_lock(policy)).await;
    let p = reserve(catalog, &id, SizeHint::exact(1)).await;
    let v1 = commit(catalog, &commit_request(&p, 1)).await.expect("commit").version;
    let expected = VersionLock::new(LockMode::Compliance, p.created_at + Duration::days(1));
    assert_eq!(v1.lock, Some(expected), "the commit locks it from its creation");
    let read = catalog.get_version(&id, VersionSelector::Number(1)).await.expect("read");
    assert_eq!(read.lock, Some(expected), "the catalog keeps the lock");
    let longer = VersionLock::new(LockMode::Compliance, expected.until + Duration::days(3));
    // Without a mode, the lock keeps its own.
    let lengthened = catalog.lock_version(&id, 1, longer.until, None, &audit("version.lock")).await.expect("lengthen");
    assert_eq!(lengthened.lock, Some(longer));
    let shorter = VersionLock::new(LockMode::Compliance, expected.until);
    let e = catalog
        .lock_version(&id, 1, shorter.until, Some(shorter.mode), &audit("version.lock"))
        .await
        .expect_err("shorten");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let listed = catalog.list_versions(&id, &VersionQuery::first(10)).await.expect("list");
    assert_eq!(listed[0].lock, Some(longer), "the lengthened lock is kept");
    for bypass in [LockBypass::NONE, LockBypass::GOVERNANCE] {
        let e = catalog.trash_version(&id, 1, "x", false, bypass, &audit("version.delete")).await.expect_err("locked");
        assert!(matches!(e, crate::Error::Locked { .. }), "{e}");
    }
    upload(catalog, &id, 2).await;
    let e = catalog
        .reserve(&reserve_request(&id, SizeHint::exact(1), now()), &strategies())
        .await
        .expect_err("rotation may not evict a locked version");
    assert!(e.to_string().contains("full of versions locked until"), "{e}");
    let mut weaker = catalog.get_collection(&id).await.expect("collection").spec;
    weaker.lock = Some(LockPolicy::new(LockMode::Compliance, Duration::hours(1)));
    let e = catalog
        .update_collection(&id, &weaker, None, false, &rules(), LockBypass::GOVERNANCE, &audit("collection.update"))
        .await
        .expect_err("a compliance policy does not shorten");
    assert!(matches!(e, crate::Error::Locked { .. }), "{e}");
    assert_eq!(catalog.get_collection(&id).await.expect("collection").spec.lock, Some(policy));
    let snapshot = contents(catalog).await;
    let exported = snapshot
        .iter()
        .any(|r| matches!(r, crate::catalog::CatalogRecord::Version(v) if v.id == v1.id && v.lock == Some(longer)));
    assert!(exported, "the export carries the lock");
    // Once every lock ended, maintenance clears them and the counters follow.
    let later = AuditEvent::new(longer.until + Duration::seconds(1), "engine", "retention.apply");
    catalog.apply_retention(&id, &strategies(), false, &later).await.expect("maintenance");
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(state.counters.protected, 0, "ended locks no longer count");
    assert!(catalog.list_versions(&id, &VersionQuery::first(10)).await.expect("list").iter().all(|v| v.lock.is_none()));

    // Governance gives way to a bypass: the lock goes with the deletion, and the bypass is audited.
    let id = create(
        catalog,
        "governed",
        spec(2, 100, 200).with_lock(LockPolicy::new(LockMode::Governance, Duration::days(1))),
    )
    .await;
    upload(catalog, &id, 1).await;
    let e = catalog
        .trash_version(&id, 1, "x", false, LockBypass::NONE, &audit("version.delete"))
        .await
        .expect_err("locked");
    assert!(matches!(e, crate::Error::Locked { .. }), "{e}");
    let before = catalog.list_audit(None, 10_000).await.expect("audit").len();
    let gone = catalog
        .trash_version(&id, 1, "x", false, LockBypass::GOVERNANCE, &audit("version.delete").with_collection(&id))
        .await
        .expect("bypassed");
    assert_eq!((gone.state, gone.lock), (VersionState::Trashed, None));
    let events = catalog.list_audit(None, 10_000).await.expect("audit");
    let actions: Vec<&str> = events[before..].iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["lock.bypass", "version.delete"]);
    assert_eq!(catalog.collection_state(&id).await.expect("state").counters.protected, 0);

    // A trashed version whose lock still holds (a rebuild or an import can bring one) is not
    // purged: it waits in the trash until the lock ends.
    let t = now();
    let digest = Digest::of(DigestAlgorithm::Blake3, b"locked");
    let trashed = Version::new(VersionId::generate(), id.clone(), 7, format!("conformance/{id}/locked"), 6, digest)
        .with_times(t, t)
        .with_state(VersionState::Trashed, Some((t, "x".to_owned())), None)
        .with_lock(Some(VersionLock::new(LockMode::Governance, t + Duration::days(1))));
    let insert = vec![Mutation::InsertVersion(trashed.clone())];
    catalog.step(StateQuery::none(), move |_| Ok(Decision::new(insert, ()))).await.expect("insert");
    assert!(catalog.mark_purged(&[trashed.id], t).await.expect("purge").is_empty(), "a locked version is not purged");
    let purged = catalog.mark_purged(&[trashed.id], t + Duration::days(2)).await.expect("purge");
    assert_eq!(purged.iter().map(|v| v.id).collect::<Vec<_>>(), [trashed.id], "purged once its lock ended");
}

/// A version's metadata is written with its commit and read back whole (names, any
/// characters, 64 KiB), by every read, after trash and restore, in an export; a version
/// without any reads back with none.
pub async fn metadata_is_kept_with_the_version(catalog: &dyn Catalog) {
    let id = create(catalog, "metadata", spec(3, 100, 300)).await;
    let mut metadata = crate::Metadata::new();
    metadata.insert("git.refs".into(), "0123abcd refs/heads/main\n4567ef01 refs/tags/v1.0 — «ü» \u{1F600}\n".into());
    metadata.insert("empty".into(), String::new());
    metadata.insert("large".into(), "x".repeat(crate::MAX_METADATA_BYTES - 100));
    let p = reserve(catalog, &id, SizeHint::exact(3)).await;
    let committed = commit(catalog, &commit_request(&p, 3).with_metadata(metadata.clone())).await.expect("commit");
    assert_eq!(committed.version.metadata, metadata, "the commit's answer carries it");
    let plain = upload(catalog, &id, 4).await;
    assert!(plain.metadata.is_empty());
    let listed = catalog.list_versions(&id, &VersionQuery::first(10)).await.expect("list");
    let read = |n: u64| listed.iter().find(|v| v.number == n).expect("listed");
    assert_eq!(read(committed.version.number).metadata, metadata, "listed with it");
    assert!(read(plain.number).metadata.is_empty(), "none reads back as none");
    catalog
        .trash_version(&id, committed.version.number, "x", false, LockBypass::NONE, &audit("version.delete"))
        .await
        .expect("trash");
    let restored =
        catalog.restore_version(&id, committed.version.number, &audit("version.restore")).await.expect("restore");
    assert_eq!(restored.metadata, metadata, "a trash and restore keep it");
    let snapshot = contents(catalog).await;
    let exported =
        snapshot.iter().any(|r| matches!(r, crate::catalog::CatalogRecord::Version(v) if v.metadata == metadata));
    assert!(exported, "the export carries it");
}

/// The `gfs` plan runs inside the commit, by receipt time, with its reasons in the trash; a
/// hold set through the catalog keeps a version the plan evicts; the maintenance step clears
/// a passed deadline and applies the plan without an upload.
pub async fn gfs_rotation_runs_in_the_commit(catalog: &dyn Catalog) {
    let retention = RetentionSpec::named("gfs").with_option("keepDaily", "2").with_option("keepWithin", "1d");
    let id = create(catalog, "gfs", spec(10, 100, 1000).with_retention(retention)).await;
    let day = |d: i64, h: i64| {
        Timestamp::from(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("a time"))
            + Duration::days(d)
            + Duration::hours(h)
    };
    let upload_at = |t: Timestamp| {
        let id = id.clone();
        async move {
            let p =
                catalog.reserve(&reserve_request(&id, SizeHint::exact(5), t), &strategies()).await.expect("reserve");
            let digest = Digest::of(DigestAlgorithm::Blake3, b"gfs");
            catalog.commit(&CommitRequest::new(p.id, id, 5, digest, t), &strategies()).await.expect("commit")
        }
    };
    // Day 1 08:00 and 20:00, day 2 08:00 and 20:00, day 3 08:00.
    for t in [day(1, 8), day(1, 20), day(2, 8), day(2, 20)] {
        upload_at(t).await;
    }
    let committed = upload_at(day(3, 8)).await;
    // keepDaily 2 keeps 5 (day 3) and 4 (day 2); within 1d of day 3 08:00 keeps 4 only (3 is
    // exactly a day older); 1 went at the third commit.
    let evicted: Vec<(u64, Option<String>)> =
        committed.evicted.iter().map(|v| (v.number, v.trash_reason.clone())).collect();
    assert_eq!(evicted.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 3], "{evicted:?}");
    assert!(evicted.iter().all(|e| e.1.as_deref().is_some_and(|r| r.contains("no rule keeps it"))), "{evicted:?}");
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10)).await, [4, 5]);
    let trashed = catalog.list_versions(&id, &VersionQuery::first(10).with_trashed()).await.expect("list");
    assert!(trashed.iter().filter(|v| v.number < 4).all(|v| v.state == VersionState::Trashed), "{trashed:?}");

    // Hold 4 until day 5: the next commit's plan evicts it, the hold keeps it.
    let protect = AuditEvent::new(day(3, 9), "conformance", "version.protect").with_collection(&id);
    let until = day(5, 0);
    let v4 = catalog
        .protect_version(&id, 4, ProtectionChange::until(until), &protect.clone().with_version(4))
        .await
        .expect("protect");
    assert_eq!(v4.protected_until, Some(until));
    let e = catalog
        .protect_version(&id, 5, ProtectionChange::until(day(3, 0)), &protect.with_version(5))
        .await
        .expect_err("a deadline in the past");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    upload_at(day(4, 8)).await;
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10)).await, [4, 5, 6]);
    let counters = catalog.collection_state(&id).await.expect("state").counters;
    assert_eq!((counters.versions, counters.protected, counters.held), (3, 1, 0));

    // Day 6: the deadline passed; the maintenance clears it and evicts 4 (not the newest
    // two days', not within a day of the newest).
    let maintenance = AuditEvent::new(day(6, 0), "conformance", "retention.apply").with_collection(&id);
    let gone = catalog.apply_retention(&id, &strategies(), false, &maintenance).await.expect("apply");
    assert_eq!(gone.iter().map(|v| v.number).collect::<Vec<_>>(), [4]);
    assert!(gone[0].trash_reason.as_deref().is_some_and(|r| r.contains("(maintenance)")), "{:?}", gone[0]);
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10)).await, [5, 6]);
    let counters = catalog.collection_state(&id).await.expect("state").counters;
    assert_eq!((counters.versions, counters.protected, counters.bytes), (2, 0, 10));
    let again = catalog.apply_retention(&id, &strategies(), false, &maintenance).await.expect("apply again");
    assert!(again.is_empty(), "nothing more to do: {again:?}");
}

fn session(user: &str, at: Timestamp) -> Session {
    let token = uuid::Uuid::new_v4().to_string();
    Session::new(SessionId::of_token(&token), user, at, at + Duration::hours(6), "Login")
}

/// At most `max_live` uploads are in progress in a collection: one more is refused before it
/// stores anything, and its place comes back when one ends.
pub async fn live_uploads_are_capped(catalog: &dyn Catalog) {
    let id = create(catalog, "capped", spec(10, 100, 1000)).await;
    let request = || reserve_request(&id, SizeHint::exact(1), now()).with_max_live(2);
    let first = catalog.reserve(&request(), &strategies()).await.expect("first");
    catalog.reserve(&request(), &strategies()).await.expect("second");
    let e = catalog.reserve(&request(), &strategies()).await.expect_err("third");
    assert!(matches!(e, crate::Error::TooManyUploads { limit: 2, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    catalog.abort(&first.id, AbortCondition::Always, now()).await.expect("abort");
    catalog.reserve(&request(), &strategies()).await.expect("a place came back");
}

/// A single-use session is revoked by the commit it authorizes; a second commit fails and
/// leaves its upload pending, untouched.
pub async fn single_use_session_is_consumed_by_commit(catalog: &dyn Catalog) {
    let id = create(catalog, "oneshot", spec(3, 100, 300)).await;
    let s = session(&format!("user-{id}"), now()).with_single_use(true);
    catalog.insert_session(&s).await.expect("insert session");
    let a = reserve(catalog, &id, SizeHint::exact(1)).await;
    let b = reserve(catalog, &id, SizeHint::exact(1)).await;
    commit(catalog, &commit_request(&a, 1).with_consume_session(Some(s.id.clone()))).await.expect("first commit");
    assert!(catalog.get_session(&s.id).await.expect("session").revoked_at.is_some());
    let e = commit(catalog, &commit_request(&b, 1).with_consume_session(Some(s.id.clone())))
        .await
        .expect_err("second commit with the same one-time session");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let state = catalog.collection_state(&id).await.expect("state");
    assert_eq!(
        (state.counters.versions, state.pending.len(), state.counters.next_number),
        (1, 1, 2),
        "nothing of the refused commit applied"
    );
    catalog.abort(&b.id, AbortCondition::Always, now()).await.expect("abort");
}

/// A commit that requires its upload's session fails once the session is revoked.
pub async fn required_session_must_be_active_at_commit(catalog: &dyn Catalog) {
    let id = create(catalog, "logout", spec(3, 100, 300)).await;
    let s = session(&format!("user-{id}"), now());
    catalog.insert_session(&s).await.expect("insert session");
    let a = reserve(catalog, &id, SizeHint::exact(1)).await;
    let b = reserve(catalog, &id, SizeHint::exact(1)).await;
    commit(catalog, &commit_request(&a, 1).with_require_session(Some(s.id.clone()))).await.expect("active session");
    assert!(catalog.get_session(&s.id).await.expect("session").revoked_at.is_none(), "required is not consumed");
    catalog.revoke_session(&s.id, &audit("session.revoke")).await.expect("logout");
    let e = commit(catalog, &commit_request(&b, 1).with_require_session(Some(s.id.clone())))
        .await
        .expect_err("revoked during the upload");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    catalog.abort(&b.id, AbortCondition::Always, now()).await.expect("abort");
}

/// Sessions are registered once, listed newest first, revoked one by one or per user, and
/// expired ones can be deleted.
pub async fn sessions_register_list_revoke_expire(catalog: &dyn Catalog) {
    let user = format!("u-{}", unique_collection("s"));
    let t = now();
    let s1 = session(&user, t - Duration::minutes(2));
    let s2 = session(&user, t - Duration::minutes(1))
        .with_access_key("uploader")
        .with_scope(r#"{"elements":[]}"#)
        .with_requester_addr("127.0.0.1")
        .with_credential("gen-1")
        .with_chain_started_at(t - Duration::hours(1));
    catalog.insert_session(&s1).await.expect("insert");
    catalog.insert_session(&s2).await.expect("insert");
    let e = catalog.insert_session(&s1).await.expect_err("same token twice");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(catalog.get_session(&s2.id).await.expect("get"), s2);
    let listed = catalog.list_sessions(Some(&user), 10).await.expect("list");
    assert_eq!(listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), [s2.id.clone(), s1.id.clone()]);

    let revoke_at = |at: Timestamp| AuditEvent::new(at, "conformance", "session.revoke");
    let r = catalog.revoke_session(&s1.id, &revoke_at(t)).await.expect("revoke");
    assert_eq!(r.revoked_at, Some(t));
    let again = catalog.revoke_session(&s1.id, &revoke_at(t + Duration::minutes(1))).await.expect("revoke again");
    assert_eq!(again.revoked_at, Some(t), "the first revocation time stays");
    assert_eq!(catalog.get_session(&s1.id).await.expect("get").revoked_at, Some(t));
    assert!(!again.is_active(t));
    assert_eq!(catalog.revoke_user_sessions(&user, &audit("session.revoke_all")).await.expect("revoke all"), 1);
    assert!(catalog.get_session(&s2.id).await.expect("get").revoked_at.is_some());
    let missing = SessionId::of_token("never issued");
    assert_eq!(catalog.get_session(&missing).await.expect_err("missing").kind(), ErrorKind::NotFound);
    let e = catalog.revoke_session(&missing, &audit("session.revoke")).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);

    let old = session(&user, t - Duration::days(2));
    catalog.insert_session(&old).await.expect("insert");
    catalog.delete_expired_sessions(t - Duration::days(1)).await.expect("delete expired");
    assert_eq!(catalog.get_session(&old.id).await.expect_err("deleted").kind(), ErrorKind::NotFound);
    assert!(catalog.get_session(&s1.id).await.is_ok(), "sessions that expire later stay");
}

/// The audit log keeps events in order, with those written by mutating calls.
pub async fn audit_events_are_appended_in_order(catalog: &dyn Catalog) {
    let id = create(catalog, "audit", spec(1, 1, 1)).await;
    catalog.append_audit(&audit("custom.one").with_collection(&id).with_detail("x")).await.expect("append");
    catalog.append_audit(&audit("custom.two").with_collection(&id).with_version(7)).await.expect("append");
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

/// The whole log, from the checkpoint: every event linked to the one before.
async fn whole_chain(catalog: &dyn Catalog) -> Vec<AuditEvent> {
    let checkpoint = catalog.audit_checkpoint().await.expect("checkpoint");
    let mut head = checkpoint.unwrap_or(crate::audit::AuditHead::GENESIS);
    let mut all = Vec::new();
    loop {
        let page = catalog.list_audit(Some(head.seq), 1000).await.expect("list audit");
        if page.is_empty() {
            break;
        }
        for e in page {
            assert_eq!(e.seq, head.seq + 1, "numbers follow each other");
            assert_eq!(e.hash, Some(e.link(&head.hash)), "event {} is linked to the one before", e.seq);
            head = e.head().expect("hash");
            all.push(e);
        }
    }
    assert_eq!(catalog.audit_head().await.expect("head"), head, "the catalog's head is the last event's");
    all
}

/// Every appended event gets the next number and the hash of itself and the one before it,
/// in the step of its change; an event of a failing step is not appended.
pub async fn audit_events_are_chained(catalog: &dyn Catalog) {
    let id = create(catalog, "chain", spec(1, 1, 1)).await;
    catalog.append_audit(&audit("custom.one").with_collection(&id)).await.expect("append");
    let failing = catalog.delete_collection(&"chain-nobody".parse().expect("id"), &audit("collection.delete")).await;
    assert!(failing.is_err(), "deleting an unknown collection fails");
    let all = whole_chain(catalog).await;
    let ours: Vec<&str> =
        all.iter().filter(|e| e.collection.as_ref() == Some(&id)).map(|e| e.action.as_str()).collect();
    assert_eq!(ours, ["collection.create", "custom.one"], "the failed step appended nothing");
}

/// Appends from many tasks at once form one chain: no two events follow the same one.
pub async fn concurrent_appends_form_one_chain(catalog: Arc<dyn Catalog>) {
    let before = catalog.audit_head().await.expect("head").seq;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    catalog.append_audit(&audit(&format!("custom.concurrent-{t}-{i}"))).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let all = whole_chain(catalog.as_ref()).await;
    assert!(all.last().expect("events").seq >= before + 80, "every append is in the chain");
}

/// A log cursor is leased to one instance at a time and moves only from where it is, by its
/// holder, with the events of the same step.
pub async fn log_cursors_are_leased_and_moved(catalog: &dyn Catalog) {
    let name = format!("conformance-{}", unique_collection("cursor"));
    let t0 = now();
    let until = t0 + Duration::seconds(30);
    let a = catalog.claim_cursor(&name, "a", 5, t0, until).await.expect("a claims");
    assert_eq!((a.seq, a.owner.as_deref(), a.lease_until, a.state.as_str()), (5, Some("a"), Some(until), ""));
    let held = catalog.claim_cursor(&name, "b", 0, t0, until).await.expect_err("b cannot while a holds it");
    assert_eq!(held.kind(), ErrorKind::Conflict, "{held}");
    assert!(held.to_string().contains("held by a"), "{held}");
    let moved = catalog.advance_cursor(&name, "b", 5, 9, "{}", vec![]).await.expect_err("b does not hold it");
    assert_eq!(moved.kind(), ErrorKind::Conflict);
    let wrong = catalog.advance_cursor(&name, "a", 4, 9, "{}", vec![]).await.expect_err("not at 4");
    assert_eq!(wrong.kind(), ErrorKind::Conflict);
    let head = catalog.audit_head().await.expect("head");
    catalog
        .advance_cursor(&name, "a", 5, 9, r#"{"k":1}"#, vec![audit("custom.alert").with_detail(name.clone())])
        .await
        .expect("a moves it");
    let after = catalog.list_audit(Some(head.seq), 1000).await.expect("list");
    assert!(after.iter().any(|e| e.action == "custom.alert" && e.detail == name), "the step's event is appended");
    let renewed = catalog.claim_cursor(&name, "a", 0, t0, until + Duration::seconds(30)).await.expect("a renews");
    assert_eq!((renewed.seq, renewed.state.as_str()), (9, r#"{"k":1}"#), "a claim keeps the place and the state");
    let late = until + Duration::seconds(31);
    let b = catalog.claim_cursor(&name, "b", 0, late, late + Duration::seconds(30)).await.expect("b after the lease");
    assert_eq!((b.seq, b.owner.as_deref()), (9, Some("b")));
    let lost =
        catalog.advance_cursor(&name, "a", 9, 10, "{}", vec![audit("custom.lost")]).await.expect_err("a lost it");
    assert_eq!(lost.kind(), ErrorKind::Conflict);
    let listed = catalog.list_cursors().await.expect("list cursors");
    assert!(listed.iter().any(|c| c.name == name && c.seq == 9), "{listed:?}");
}

/// Pruning keeps the head of the last pruned event as the checkpoint, from which what is left
/// still verifies; the log continues after it, and an export carries it.
pub async fn audit_pruning_keeps_the_chain(empty: &dyn Catalog) {
    for i in 0..5 {
        empty.append_audit(&audit(&format!("custom.{i}"))).await.expect("append");
    }
    let before = whole_chain(empty).await;
    empty.prune_audit(3).await.expect("prune");
    let checkpoint = empty.audit_checkpoint().await.expect("checkpoint").expect("set");
    assert_eq!(checkpoint, before[2].head().expect("hash"), "the checkpoint is the head of event 3");
    let left = whole_chain(empty).await;
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    empty.prune_audit(2).await.expect("pruning what is gone changes nothing");
    assert_eq!(empty.audit_checkpoint().await.expect("checkpoint"), Some(checkpoint));
    empty.prune_audit(5).await.expect("prune everything");
    assert!(empty.list_audit(None, 10).await.expect("list").is_empty());
    empty.append_audit(&audit("custom.after")).await.expect("append");
    let after = whole_chain(empty).await;
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [6], "numbers go on after a pruned log");
    let records: Vec<CatalogRecord> = empty.export().await.expect("export").try_collect().await.expect("stream");
    assert!(records.iter().any(|r| matches!(r, CatalogRecord::AuditCheckpoint(h) if h.seq == 5)), "{records:?}");
}

/// An export holds every kind of row, in order, and is consistent: a header, the repository,
/// collections, versions, tombstones, sessions, audit events. Importing into a non-empty
/// catalog is refused.
pub async fn export_is_a_complete_consistent_snapshot(catalog: &dyn Catalog) {
    let id = create(catalog, "export", spec(2, 100, 300)).await;
    upload(catalog, &id, 1).await;
    upload(catalog, &id, 2).await;
    upload(catalog, &id, 3).await; // trashes 1
    let pending = reserve(catalog, &id, SizeHint::exact(4)).await;
    let released = reserve(catalog, &id, SizeHint::exact(1)).await;
    catalog.abort(&released.id, AbortCondition::Always, now()).await.expect("abort");
    let s = session(&format!("u-{id}"), now());
    catalog.insert_session(&s).await.expect("session");
    catalog.append_audit(&audit("custom.export").with_collection(&id)).await.expect("audit");

    let records: Vec<CatalogRecord> = catalog.export().await.expect("export").try_collect().await.expect("stream");
    records[0].check_header().expect("header first");
    let kind = |r: &CatalogRecord| match r {
        CatalogRecord::Header { .. } => 0,
        CatalogRecord::Repository { .. } => 1,
        CatalogRecord::Collection { .. } => 2,
        CatalogRecord::Version(_) | CatalogRecord::Pending(_) => 3,
        CatalogRecord::Tombstone(_) => 4,
        CatalogRecord::Session(_) => 5,
        CatalogRecord::Cursor(_) => 6,
        CatalogRecord::AuditCheckpoint(_) => 7,
        CatalogRecord::Audit(_) => 8,
    };
    assert!(records.windows(2).all(|w| kind(&w[0]) <= kind(&w[1])), "records come in order of kind");
    let ours = |r: &&CatalogRecord| match r {
        CatalogRecord::Collection { collection, .. } => collection.id == id,
        CatalogRecord::Version(v) => v.collection == id,
        CatalogRecord::Pending(p) => p.collection == id,
        CatalogRecord::Tombstone(t) => t.collection == id,
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
    assert!(mine.iter().any(|r| matches!(r, CatalogRecord::Tombstone(t) if t.version == released.id)));
    assert!(mine.iter().any(|r| matches!(r, CatalogRecord::Session(_))));
    assert_eq!(mine.iter().filter(|r| matches!(r, CatalogRecord::Audit(_))).count(), 2);
    let e = catalog.import(futures::stream::iter(records.into_iter().map(Ok)).boxed()).await.expect_err("not empty");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    catalog.abort(&pending.id, AbortCondition::Always, now()).await.expect("abort");
}

/// A trashed version comes back with its number when there is a place and room; a purged one
/// never; a restored one is not purged.
pub async fn restore_brings_back_a_trashed_version_if_it_fits(catalog: &dyn Catalog) {
    // 2 versions of 100, 250 in all: 50 of extra space.
    let id = create(catalog, "restore", spec(2, 100, 250)).await;
    let v1 = upload(catalog, &id, 140).await;
    let _v2 = upload(catalog, &id, 100).await;
    let v3 = upload(catalog, &id, 10).await; // evicts v1
    let e = catalog.restore_version(&id, 1, &audit("version.restore")).await.expect_err("no place");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    catalog.trash_version(&id, 3, "deleted", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    let restored = catalog.restore_version(&id, 3, &audit("version.restore")).await.expect("restore");
    assert_eq!((restored.number, restored.state, restored.trash_reason.as_deref()), (3, VersionState::Committed, None));
    assert!(catalog.mark_purged(&[v3.id], now()).await.expect("purge").is_empty(), "a restored version is not purged");
    catalog.trash_version(&id, 3, "deleted", false, LockBypass::NONE, &audit("version.delete")).await.expect("trash");
    // v1 (140, 40 over the soft limit) fits next to v2 only with the extra space left: 50.
    let back = catalog.restore_version(&id, 1, &audit("version.restore")).await.expect("restore v1");
    assert_eq!(back.number, v1.number);
    assert_eq!(numbers(catalog, &id, VersionQuery::first(10)).await, [1, 2]);
    assert_eq!(
        catalog.collection_state(&id).await.expect("state").counters.next_number,
        4,
        "restoring uses no new number"
    );
    assert_eq!(catalog.mark_purged(&[v3.id], now()).await.expect("purge").len(), 1);
    let e = catalog.restore_version(&id, 3, &audit("version.restore")).await.expect_err("purged");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = catalog.restore_version(&id, 2, &audit("version.restore")).await.expect_err("committed");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// A step whose decision fails, or whose write hits a taken key, writes nothing at all.
pub async fn a_failing_step_writes_nothing(catalog: &dyn Catalog) {
    let id = create(catalog, "atomic", spec(3, 100, 300)).await;
    let v = upload(catalog, &id, 1).await;
    let before = catalog.collection_state(&id).await.expect("state");
    // A write followed by one on a taken key: the first must be rolled back.
    let dup = Collection::new(id.clone(), spec(1, 1, 1), now());
    let writes = vec![
        Mutation::AppendAudit(audit("atomic.first").with_collection(&id)),
        Mutation::SetCounters { collection: id.clone(), counters: Default::default() },
        Mutation::CreateCollection(dup),
    ];
    let e = catalog.step(StateQuery::none(), move |_| Ok(Decision::new(writes, ()))).await.expect_err("taken id");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let e = catalog
        .step(StateQuery::none(), |_| -> crate::Result<Decision<()>> { Err(crate::Error::conflict("no")) })
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(catalog.collection_state(&id).await.expect("state"), before, "counters untouched");
    let events = catalog.list_audit(None, 100_000).await.expect("audit");
    assert!(!events.iter().any(|e| e.action == "atomic.first"), "the audit event was rolled back");
    assert_eq!(catalog.get_version(&id, VersionSelector::Latest).await.expect("latest"), v);
}

/// A catalog takes a repository id once; the same id again is fine, another is refused.
pub async fn repository_id_is_claimed_once(catalog: &dyn Catalog) {
    let info = catalog.repository().await.expect("repository");
    assert_eq!(info.id, None, "a new catalog has no repository id");
    let id = RepositoryId::generate();
    assert_eq!(catalog.claim_repository(id).await.expect("claim"), id);
    assert_eq!(catalog.claim_repository(id).await.expect("claim again"), id);
    let e = catalog.claim_repository(RepositoryId::generate()).await.expect_err("another id");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.to_string().contains(&id.to_string()), "{e}");
    assert_eq!(catalog.repository().await.expect("repository").id, Some(id));
    let c = create(catalog, "holds", spec(2, 10, 20)).await;
    assert!(!catalog.repository().await.expect("repository").holds_versions, "collections alone hold no version");
    let p = reserve(catalog, &c, SizeHint::exact(1)).await;
    assert!(catalog.repository().await.expect("repository").holds_versions);
    catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
}

/// Version numbers stay in `1..=MAX_VERSION_NUMBER` whatever a catalog is given: adopting
/// versions numbered 0 or beyond the highest is refused for each of them (the others are
/// adopted), the highest number is adopted with its next number stored, and a commit in a
/// collection that has given out every number is refused with a clear error, writing nothing.
pub async fn version_numbers_stay_in_range(catalog: &dyn Catalog) {
    let id = create(catalog, "range", spec(3, 100, 300)).await;
    let top = crate::MAX_VERSION_NUMBER;
    let version_of = |number: u64| {
        let vid = VersionId::generate();
        let digest = Digest::of(DigestAlgorithm::Blake3, b"x");
        Version::new(vid, id.clone(), number, format!("conformance/{id}/{vid}"), 1, digest).with_filename("f")
    };
    let offered: Vec<Version> = [0, top + 1, u64::MAX, 7].into_iter().map(version_of).collect();
    let adopted = catalog.adopt_versions(&id, offered, &audit("version.import")).await.expect("adopt");
    assert_eq!(adopted.inserted, [7], "{adopted:?}");
    assert_eq!(adopted.refused.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, top + 1, u64::MAX], "{adopted:?}");
    assert!(adopted.refused.iter().all(|(_, why)| why.contains("out of range")), "{adopted:?}");
    assert_eq!(catalog.collection_state(&id).await.expect("state").counters.next_number, 8);

    let adopted = catalog.adopt_versions(&id, vec![version_of(top)], &audit("version.import")).await.expect("adopt");
    assert_eq!(adopted.inserted, [top], "{adopted:?}");
    let before = catalog.collection_state(&id).await.expect("state").counters;
    assert_eq!((before.next_number, before.versions), (top + 1, 2), "{before:?}");
    let latest = catalog.get_version(&id, VersionSelector::Latest).await.expect("latest");
    assert_eq!(latest.number, top);

    let p = reserve(catalog, &id, SizeHint::exact(1)).await;
    let e = commit(catalog, &commit_request(&p, 1)).await.expect_err("no number is left");
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
    assert!(e.to_string().contains("every version number"), "{e}");
    assert_eq!(catalog.collection_state(&id).await.expect("state").counters, before, "nothing written");
    catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
}

/// Snapshots without a header, with a foreign header, with a version of an unknown
/// collection, or with numbers out of range are refused and leave the catalog empty.
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
        CatalogRecord::Repository { id: RepositoryId::generate() },
        CatalogRecord::Collection { collection: c.clone(), next_number: 1 },
        CatalogRecord::Version(v),
    ];
    let e = empty.import(records(bad)).await.expect_err("unknown collection");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(empty.list_collections(None, 10).await.expect("list").is_empty(), "a failed import leaves nothing");
    assert_eq!(empty.repository().await.expect("repository").id, None, "not even the repository id");
    // Numbers no catalog can hold: a next number past the last one, a version numbered 0 or
    // beyond the highest. Refused as such, never a backend's conversion error.
    let version_of = |number: u64| {
        let vid = VersionId::generate();
        let digest = Digest::of(DigestAlgorithm::Blake3, b"x");
        Version::new(vid, c.id.clone(), number, format!("conformance/{}/{vid}", c.id), 1, digest)
    };
    let top = crate::MAX_VERSION_NUMBER;
    for (next_number, number) in [(top + 2, None), (u64::MAX, None), (top + 1, Some(0)), (top + 1, Some(u64::MAX))] {
        let mut bad =
            vec![CatalogRecord::header(now()), CatalogRecord::Collection { collection: c.clone(), next_number }];
        bad.extend(number.map(|n| CatalogRecord::Version(version_of(n))));
        let e = empty.import(records(bad)).await.expect_err("a number out of range");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "next {next_number}, version {number:?}: {e}");
        assert!(empty.list_collections(None, 10).await.expect("list").is_empty(), "a failed import leaves nothing");
    }
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
/// the repository id, collections, versions in every state, pending uploads, tombstones,
/// sessions, audit events, counters; and the copy works on (numbers continue).
pub async fn import_restores_an_export(source: &dyn Catalog, empty: &dyn Catalog) {
    let id = create(source, "restore", spec(2, 100, 300)).await;
    for size in [5, 6, 7] {
        upload(source, &id, size).await;
    }
    source
        .trash_version(&id, 2, "deleted by conformance", false, LockBypass::NONE, &audit("version.delete"))
        .await
        .expect("trash");
    let v3 = source.get_version(&id, VersionSelector::Number(3)).await.expect("version 3");
    let damaged = crate::protocol::Verification::Damaged("its object is missing".into());
    source.record_verification(&v3, &damaged, &audit("version.verify")).await.expect("quarantine");
    let pending = reserve(source, &id, SizeHint::exact(4)).await;
    let released = reserve(source, &id, SizeHint::exact(1)).await;
    source.abort(&released.id, AbortCondition::Always, now()).await.expect("abort");
    let s = session(&format!("u-{id}"), now())
        .with_scope(r#"{"elements":[{"type":"collection","name":"x","roles":["backupUploader"]}]}"#);
    source.insert_session(&s).await.expect("session");
    source.revoke_session(&s.id, &audit("session.revoke")).await.expect("revoke");
    let cursor = format!("conformance-{id}");
    source.claim_cursor(&cursor, "a", 0, now(), now() + Duration::seconds(30)).await.expect("claim");
    source.advance_cursor(&cursor, "a", 0, 2, r#"{"x":1}"#, vec![]).await.expect("advance");

    let snapshot = source.export().await.expect("export");
    let summary = empty.import(snapshot).await.expect("import");
    assert!(
        summary.collections >= 1 && summary.versions >= 4 && summary.sessions >= 1 && summary.tombstones >= 1,
        "{summary:?}"
    );
    assert_eq!(contents(source).await, contents(empty).await, "the copy holds exactly what the source held");
    let copied = empty.list_cursors().await.expect("cursors");
    assert!(copied.iter().any(|c| c.name == cursor && c.seq == 2 && c.state == r#"{"x":1}"#), "{copied:?}");
    whole_chain(empty).await;
    assert_eq!(
        source.collection_state(&id).await.expect("state").counters,
        empty.collection_state(&id).await.expect("state").counters,
        "the counters are recomputed to the same values"
    );
    assert_eq!(empty.collection_state(&id).await.expect("state").counters.quarantined, 1, "quarantines included");
    let e = commit(empty, &commit_request(&pending, 4)).await.expect("the pending upload commits in the copy");
    assert_eq!(e.version.number, 4, "numbers continue");
    let next = upload(empty, &id, 1).await;
    assert_eq!(next.number, 5);
    source.abort(&pending.id, AbortCondition::Always, now()).await.expect("abort");
}

/// Many concurrent reservations against one pool: exactly as many succeed as the extra
/// space allows, none more.
pub async fn concurrent_reservations_are_atomic(catalog: Arc<dyn Catalog>) {
    // 4 × 100 + 250 extra; each reservation of 150 holds 50 of the pool: 5 fit.
    let id = create(catalog.as_ref(), "race", spec(4, 100, 650)).await;
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (catalog, id) = (catalog.clone(), id.clone());
            tokio::spawn(async move {
                catalog.reserve(&reserve_request(&id, SizeHint::exact(150), now()), &strategies()).await
            })
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
        catalog.abort(&p.id, AbortCondition::Always, now()).await.expect("abort");
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
                let p = catalog.reserve(&reserve_request(&id, SizeHint::exact(10), now()), &strategies()).await?;
                catalog.commit(&commit_request(&p, 10), &strategies()).await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.expect("task").expect("reserve and commit").version.number);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=16).collect::<Vec<u64>>());
    assert_eq!(self::numbers(catalog.as_ref(), &id, VersionQuery::first(10)).await, [13, 14, 15, 16]);
    assert_eq!(catalog.collection_state(&id).await.expect("state").counters.next_number, 17);
}

/// Many engine tasks upload into one nearly full collection (half announcing their size,
/// half chunked) while a monitor reads the catalog continuously: the committed total never
/// passes the hard limit, the live reservations never over-promise the extra space, numbers
/// are unique, consecutive and in commit order, and FIFO keeps exactly the newest.
pub async fn uploads_under_a_monitor_never_pass_the_hard_limit(
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn object_store::ObjectStore>,
) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use futures::StreamExt as _;

    use crate::testing::{body_of, check_invariants, check_recovered, pattern};
    use crate::{Actor, Engine, UploadOptions};

    const MAX_VERSIONS: u32 = 4;
    const SOFT: u64 = 1000;
    const HARD: u64 = 6000; // 2000 of extra space
    // The suite shares the catalog between checks: a fresh store under a fresh prefix is
    // adopted into its repository.
    let engine = Engine::builder()
        .catalog(catalog.clone())
        .store(store)
        .key_prefix(format!("monitor-{}", uuid::Uuid::new_v4().simple()))
        .adopt_store(true)
        .part_size(700)
        .grace(std::time::Duration::ZERO)
        // All 24 uploaders at once: the quota, not the cap on uploads, is under test.
        .max_uploads_per_collection(64)
        .build()
        .expect("engine");
    let actor = Actor::user("load");
    let id = unique_collection("nearly-full");
    let limits = Limits::new(MAX_VERSIONS, SOFT, HARD).expect("limits");
    engine.create_collection(&actor, &id, CollectionSpec::new("n-${version}", limits)).await.expect("create");
    // Nearly full: four versions of 1400 use 1600 of the 2000 bytes of extra space.
    let mut acknowledged: Vec<Version> = Vec::new();
    for seed in 0..4 {
        acknowledged.push(engine.upload(&actor, &id, body_of(pattern(seed, 1400), 256)).await.expect("upload"));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (catalog, id, stop, samples) = (catalog.clone(), id.clone(), stop.clone(), samples.clone());
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::SeqCst) {
                let state =
                    catalog.collection_state_with(&id, VersionsNeeded::Range(VersionRange::All)).await.expect("state");
                let total: u64 = state.committed.iter().map(|v| v.size).sum();
                assert!(total <= HARD, "hard limit passed: {total} > {HARD}");
                assert_eq!(total, state.counters.bytes, "the counters follow the versions");
                // The pool: the versions kept if one more commits, plus the live shares.
                let keep_from = (state.committed.len() + 1).saturating_sub(MAX_VERSIONS as usize);
                let kept: u64 = state.committed[keep_from..].iter().map(|v| v.size.saturating_sub(SOFT)).sum();
                let shares: u64 = state.live_pending(now()).map(|p| p.pool_share).sum();
                assert!(
                    kept + shares <= HARD - u64::from(MAX_VERSIONS) * SOFT,
                    "extra space over-promised: {kept} + {shares}"
                );
                peak = peak.max(total);
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            peak
        })
    };

    let tasks: Vec<_> = (0..24u64)
        .map(|t| {
            let (engine, actor, id) = (engine.clone(), actor.clone(), id.clone());
            tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut refused = 0;
                for i in 0..6u64 {
                    // Sizes from 200 to 2999: many fit, some only while the pool is free.
                    let size = 200 + ((t * 7919 + i * 104_729) % 2800) as usize;
                    // Yield between chunks, as a network body would, so uploads overlap.
                    let body = body_of(pattern(t * 100 + i, size), 333).then(|chunk| async {
                        tokio::task::yield_now().await;
                        chunk
                    });
                    let options = if (t + i) % 2 == 0 {
                        UploadOptions::new().expected_size(size as u64)
                    } else {
                        UploadOptions::new()
                    };
                    match engine.upload_with(&actor, &id, body, options).await {
                        Ok(v) => ok.push(v),
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}");
                            refused += 1;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let mut refused = 0;
    for t in tasks {
        let (ok, r) = t.await.expect("task");
        acknowledged.extend(ok);
        refused += r;
    }
    stop.store(true, Ordering::SeqCst);
    let peak = monitor.await.expect("monitor");
    assert!(samples.load(Ordering::SeqCst) > 10, "the monitor sampled while uploads ran");
    assert!(
        refused > 0 && acknowledged.len() > 40,
        "the load mixes fits and refusals: {} ok, {refused} refused",
        acknowledged.len()
    );
    assert!(peak <= HARD);

    acknowledged.sort_by_key(|v| v.number);
    let numbers: Vec<u64> = acknowledged.iter().map(|v| v.number).collect();
    assert_eq!(numbers, (1..=acknowledged.len() as u64).collect::<Vec<_>>());
    assert!(acknowledged.windows(2).all(|w| w[0].committed_at <= w[1].committed_at), "numbers follow commit order");
    let expected = acknowledged[acknowledged.len() - MAX_VERSIONS as usize..].to_vec();
    check_invariants(&engine, &id, &expected, acknowledged.len() as u64).await.expect("I1-I4");
    let report = engine.recover().await.expect("recover");
    assert!(report.is_clean(), "{report:?}");
    check_recovered(&engine, Utc::now() + Duration::hours(1)).await.expect("I5");
}
