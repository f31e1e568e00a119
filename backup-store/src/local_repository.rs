//! A whole repository in one folder on local disk: the embedded default, opened in one call.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{Engine, EngineBuilder, Error, Result};

use crate::local_disk::remove_stale_staging_files;
use crate::object_store_url::OpenedStore;
use crate::sqlite::SqliteCatalog;

/// The catalog's file in a [`local_repository`] folder.
pub const CATALOG_FILE: &str = "catalog.db";

/// The blobs' folder in a [`local_repository`] folder.
pub const BLOBS_FOLDER: &str = "blobs";

/// How old a staging file must be before [`local_repository`] removes it as a killed
/// process's: older than any upload's lease, so that an upload still running in another
/// process that shares the folder is not cut.
pub const STALE_STAGING_AGE: Duration = Duration::from_secs(15 * 60);

/// Opens (creating it if missing) a repository in `folder` on local disk and hands back an
/// [`EngineBuilder`] with every part of it wired, for the host to finish (authorizer, clock,
/// strategies, instance name) and build:
///
/// - the SQLite catalog in `folder/catalog.db`;
/// - the blobs in `folder/blobs/`, written with fsync ([`crate::local_disk_store`]), the versions'
///   descriptions beside them without it ([`crate::local_disk::description_store`]);
/// - the staging files of uploads a killed process left: those older than
///   [`STALE_STAGING_AGE`] are removed now, and the engine's `recover()` removes its own
///   ([`crate::local_disk::StagingFiles`]).
///
/// This is the one way to put a repository on local disk; [`crate::open_store`] with a
/// `file://` URL wires the same store for hosts that keep their catalog elsewhere.
///
/// ```
/// use backup_core::{Actor, CollectionSpec, Limits, UploadOptions, VersionSelector};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let engine = backup_store::local_repository(dir.path()).await?.build()?;
/// engine.recover().await?; // finish what an interrupted run left
///
/// let (me, id) = (Actor::user("me"), "db".parse()?);
/// engine.create_collection(&me, &id, CollectionSpec::new("db-${version}", Limits::new(3, 1 << 20, 3 << 20)?)).await?;
/// let file = dir.path().join("dump.sql");
/// std::fs::write(&file, "SELECT 1;").unwrap();
/// engine.upload_file(&me, &id, &file, UploadOptions::default()).await?;
///
/// // Another run, another process: the same folder, the same repository.
/// drop(engine);
/// let engine = backup_store::local_repository(dir.path()).await?.build()?;
/// assert_eq!(engine.version(&me, &id, VersionSelector::Latest).await?.size, 9);
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidInput`](backup_core::ErrorKind::InvalidInput) when the folder cannot be
/// created or opened; the catalog's errors opening or migrating `catalog.db` (a newer schema
/// is refused); I/O errors removing stale staging files.
pub async fn local_repository(folder: impl AsRef<Path>) -> Result<EngineBuilder> {
    let folder = folder.as_ref();
    let blobs = folder.join(BLOBS_FOLDER);
    let store = OpenedStore::local_disk(&blobs)?;
    let catalog = SqliteCatalog::open(folder.join(CATALOG_FILE)).await?;
    remove_stale_staging_files(&blobs, STALE_STAGING_AGE).map_err(|e| {
        Error::invalid("local repository", format!("cannot clean the staging files in {}: {e}", blobs.display()))
    })?;
    Ok(store.configure(Engine::builder().catalog(Arc::new(catalog))))
}
