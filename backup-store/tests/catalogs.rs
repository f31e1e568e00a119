//! One conformance suite, every catalog: each check of `backup_core::conformance::catalog` is
//! a test case of its own on the memory, SQLite and PostgreSQL catalogs, each on a fresh
//! catalog (a new file, a new PostgreSQL schema). A PostgreSQL case without
//! `TEST_DATABASE_URL` says it is skipped by name (and fails under `CI=true`).

use std::sync::Arc;

use backup_core::{Catalog, MemoryCatalog, conformance};
use backup_store::SqliteCatalog;

/// A fresh catalog and what keeps it alive.
struct Fresh {
    catalog: Arc<dyn Catalog>,
    _dir: Option<tempfile::TempDir>,
}

async fn memory(_test: &str) -> Option<Fresh> {
    Some(Fresh { catalog: Arc::new(MemoryCatalog::new()), _dir: None })
}

async fn sqlite(_test: &str) -> Option<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db")).await.unwrap();
    Some(Fresh { catalog: Arc::new(catalog), _dir: Some(dir) })
}

#[cfg(feature = "postgres")]
async fn postgres(test: &str) -> Option<Fresh> {
    use backup_store::testing::{database_url, fresh_schema};
    let url = database_url(test)?;
    let catalog =
        backup_store::PostgresCatalog::builder(url).schema(fresh_schema("suite")).pool_size(24).build().await.unwrap();
    Some(Fresh { catalog: Arc::new(catalog), _dir: None })
}

#[cfg(not(feature = "postgres"))]
async fn postgres(test: &str) -> Option<Fresh> {
    backup_store::testing::skipped(test, "built without the `postgres` feature");
    None
}

/// One module per backend, one test per check.
macro_rules! matrix {
    ($backend:ident: shared [$($check:ident),* $(,)?] concurrent [$($arc_check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let name = concat!(stringify!($backend), "::", stringify!($check));
                    let Some(fresh) = super::$backend(name).await else { return };
                    backup_core::conformance::catalog::$check(fresh.catalog.as_ref()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $arc_check() {
                    let name = concat!(stringify!($backend), "::", stringify!($arc_check));
                    let Some(fresh) = super::$backend(name).await else { return };
                    backup_core::conformance::catalog::$arc_check(fresh.catalog.clone()).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn uploads_under_a_monitor_never_pass_the_hard_limit() {
                let name = concat!(stringify!($backend), "::uploads_under_a_monitor_never_pass_the_hard_limit");
                let Some(fresh) = super::$backend(name).await else { return };
                backup_core::conformance::catalog::uploads_under_a_monitor_never_pass_the_hard_limit(
                    fresh.catalog.clone(),
                    std::sync::Arc::new(object_store::memory::InMemory::new()),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn import_restores_an_export() {
                let name = concat!(stringify!($backend), "::import_restores_an_export");
                let (Some(source), Some(empty)) = (super::$backend(name).await, super::$backend(name).await) else {
                    return;
                };
                backup_core::conformance::catalog::import_restores_an_export(
                    source.catalog.as_ref(),
                    empty.catalog.as_ref(),
                )
                .await;
            }
        }
    };
}

macro_rules! every_backend {
    ($($backend:ident),*) => {
        $(
            matrix!($backend:
                shared [
                    collections_crud,
                    list_collections_paginates,
                    reserve_commit_numbers_and_lists,
                    commit_applies_rotation_and_purge,
                    quota_is_enforced_at_reserve_and_commit,
                    live_uploads_are_capped,
                    multipart_ids_are_recorded_and_tombstoned,
                    leases_expire_and_are_never_revived,
                    an_expired_lease_is_renewed_while_its_room_is_free,
                    abort_reports_what_it_found_and_leaves_a_tombstone,
                    tombstones_are_listed_classified_and_forgotten,
                    delete_collection_checks_first_and_tombstones_its_trash,
                    counters_follow_every_step,
                    loads_choose_versions_by_range,
                    pending_uploads_are_listed_by_owner_and_expiry,
                    held_versions_stay,
                    gfs_rotation_runs_in_the_commit,
                    single_use_session_is_consumed_by_commit,
                    required_session_must_be_active_at_commit,
                    sessions_register_list_revoke_expire,
                    audit_events_are_appended_in_order,
                    export_is_a_complete_consistent_snapshot,
                    restore_brings_back_a_trashed_version_if_it_fits,
                    a_failing_step_writes_nothing,
                    repository_id_is_claimed_once,
                    import_refuses_bad_snapshots,
                    version_numbers_stay_in_range,
                    description_marks_are_set_listed_and_cleared,
                ]
                concurrent [
                    concurrent_reservations_are_atomic,
                    unknown_sizes_grow_as_their_bytes_arrive,
                    concurrent_commits_get_unique_numbers,
                ]
            );
        )*
    };
}

every_backend!(memory, sqlite, postgres);

/// The whole suite in one go, as a third-party catalog would run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_in_one_go_on_sqlite() {
    let (a, b, c) = (sqlite("").await.unwrap(), sqlite("").await.unwrap(), sqlite("").await.unwrap());
    conformance::catalog::run_all(a.catalog.clone()).await;
    conformance::catalog::run_all_on_empty(b.catalog.clone(), c.catalog.clone()).await;
}
