//! Object stores: the key layout the engine owns, and a durable local-disk store.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::id::{CollectionId, VersionId};

/// The object key of an upload: `<prefix>/<collection>/<version id>`.
///
/// Every upload gets a fresh key (the version id is a new UUIDv7), so no upload can overwrite
/// another's bytes, and a key never names two versions.
pub fn object_key(prefix: &Path, collection: &CollectionId, id: &VersionId) -> Path {
    prefix.clone().join(collection.as_str()).join(id.to_string())
}

/// A local-disk store rooted at `root` (created if missing), with fsync on: a file and its
/// directory are synced before an upload completes, so an acknowledged version survives a
/// power loss.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = backup_core::local_disk_store(dir.path().join("blobs"))?;
/// assert!(store.to_string().contains("LocalFileSystem"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] when the folder cannot be created or opened.
pub fn local_disk_store(root: impl AsRef<FsPath>) -> Result<Arc<dyn ObjectStore>> {
    let root = root.as_ref();
    std::fs::create_dir_all(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot create {}: {e}", root.display())))?;
    let store = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot open {}: {e}", root.display())))?
        .with_fsync(true);
    Ok(Arc::new(store))
}
