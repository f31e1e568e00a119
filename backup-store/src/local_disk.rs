//! Local-disk stores: a durable one by folder, housekeeping of their staging files, and
//! locked versions' files made read-only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backup_core::store::UploadLeftovers;
use backup_core::{Error, ErrorKind, ObjectLocks, Result, VersionLock, async_trait};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

/// A local-disk store rooted at `root` (created if missing), with fsync on: a file and its
/// folder are synced before an upload completes, so an acknowledged version survives a power
/// loss. (`file:///root` in [`crate::object_store_from_url`] gives the same.)
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = backup_store::local_disk_store(dir.path().join("blobs"))?;
/// assert!(store.to_string().contains("LocalFileSystem"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] when the folder cannot be created or opened.
pub fn local_disk_store(root: impl AsRef<Path>) -> Result<Arc<dyn ObjectStore>> {
    let root = root.as_ref();
    std::fs::create_dir_all(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot create {}: {e}", root.display())))?;
    let store = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot open {}: {e}", root.display())))?
        .with_fsync(true);
    Ok(Arc::new(store))
}

/// The folder of a [`local_disk_store`] for the versions' descriptions
/// ([`backup_core::EngineBuilder::description_store`]), written in place without fsync: each
/// is a copy of what the catalog holds, which a scrub writes again if a power cut lost or cut
/// it (a rebuild reports a cut one), so it need not cost an upload a staging file, a rename
/// and two syncs (on a 2-core test machine that halved small uploads per second with
/// PostgreSQL). ([`crate::open_store`] gives it for `file://` URLs.)
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let blobs = dir.path().join("blobs");
/// let engine = backup_core::Engine::builder()
///     .store(backup_store::local_disk_store(&blobs)?)
///     .description_store(backup_store::local_disk::description_store(&blobs)?)
///     .build()?;
/// # let _ = engine;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] when the folder cannot be created or opened.
pub fn description_store(root: impl AsRef<Path>) -> Result<Arc<dyn ObjectStore>> {
    let root = root.as_ref();
    std::fs::create_dir_all(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot create {}: {e}", root.display())))?;
    let inner = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot open {}: {e}", root.display())))?;
    let root = std::fs::canonicalize(root)
        .map_err(|e| Error::invalid("local store folder", format!("cannot open {}: {e}", root.display())))?;
    Ok(Arc::new(InPlaceWrites { root, inner }))
}

/// Removes the staging files of multipart uploads that a killed process left in a local-disk
/// store, and returns how many it removed.
///
/// `object_store`'s local store writes an upload to `<key>#<n>` and renames it into place on
/// completion; a process killed mid-upload leaves that file behind. Such files are invisible
/// to listings (so `recover()` cannot see them as orphans) and are never addressable, but they
/// hold disk space. Only files older than `older_than` are touched, so uploads in progress in
/// another process are left alone. Run it at start-up, before serving.
///
/// # Errors
/// The first I/O error other than a file vanishing meanwhile.
pub fn remove_stale_staging_files(root: &Path, older_than: Duration) -> std::io::Result<u64> {
    let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            if !kind.is_file() || !is_staging_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let modified = entry.metadata()?.modified()?;
            if modified < cutoff {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// The staging files of a local-disk store's unfinished uploads, removed by key when the
/// catalog records an upload as released: give it to
/// [`backup_core::EngineBuilder::upload_leftovers`] and every maintenance run
/// ([`backup_core::Engine::recover`]) removes what killed processes left, as soon as their
/// uploads are released (at once for the restarted instance's own, after the lease for
/// others), instead of waiting for a restart and an age.
///
/// ```
/// use std::sync::Arc;
/// use backup_store::local_disk::{StagingFiles, local_disk_store};
///
/// let dir = tempfile::tempdir()?;
/// let engine = backup_core::Engine::builder()
///     .store(local_disk_store(dir.path())?)
///     .upload_leftovers(Arc::new(StagingFiles::new(dir.path())))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StagingFiles {
    root: PathBuf,
}

impl StagingFiles {
    /// The staging files of the local-disk store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StagingFiles { root: root.into() }
    }
}

#[async_trait]
impl UploadLeftovers for StagingFiles {
    async fn remove(&self, key: &object_store::path::Path) -> Result<u64> {
        let file = self.root.join(key.as_ref());
        tokio::task::spawn_blocking(move || remove_staging_of(&file))
            .await
            .map_err(|e| Error::internal(format!("staging clean-up task: {e}")))?
            .map_err(|e| Error::backend(ErrorKind::Unavailable, "local disk", "remove staging files", e))
    }
}

/// Removes the staging files `<file>#<digits>` of one object; returns how many.
fn remove_staging_of(file: &Path) -> std::io::Result<u64> {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else { return Ok(0) };
    let name = name.to_string_lossy();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let entry_name = entry.file_name();
        let staging = entry_name.to_string_lossy().strip_prefix(name.as_ref()).is_some_and(|rest| {
            rest.strip_prefix('#').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if staging && entry.file_type()?.is_file() {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Version locks on local disk, for [`backup_core::EngineBuilder::object_locks`]: a locked
/// version's object and description files are made read-only (mode `0444`).
///
/// That stops overwrites and casual edits in place; it cannot stop the files' owner or root
/// from deleting them (deleting a file depends on its folder's permissions, which the store
/// needs writable) or making them writable again. The engine itself keeps locked versions
/// whatever the files' modes; a description is still rewritten over a read-only one (by a
/// new file renamed over it, which is then made read-only again), and an object whose lock
/// ended is deleted as any other. [`crate::OpenedStore::local_disk`] sets it.
///
/// ```
/// use std::sync::Arc;
/// use backup_store::local_disk::{ReadOnlyFiles, local_disk_store};
///
/// let dir = tempfile::tempdir()?;
/// let engine = backup_core::Engine::builder()
///     .store(local_disk_store(dir.path())?)
///     .object_locks(Arc::new(ReadOnlyFiles::new(dir.path())?))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadOnlyFiles {
    root: PathBuf,
    /// Maps keys to files exactly as the store does.
    paths: LocalFileSystem,
}

impl ReadOnlyFiles {
    /// The files of the local-disk store rooted at `root`, which must exist.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the folder cannot be opened.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let paths = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| Error::invalid("local store folder", format!("cannot open {}: {e}", root.display())))?;
        Ok(ReadOnlyFiles { root: root.to_path_buf(), paths })
    }
}

#[async_trait]
impl ObjectLocks for ReadOnlyFiles {
    /// Makes the file at `key` read-only; the lock's mode and end make no difference, as a
    /// file mode has neither.
    ///
    /// # Errors
    /// [`Error::Store`]: no such file (not found), or the mode could not be changed.
    async fn retain(&self, key: &object_store::path::Path, _lock: &VersionLock) -> Result<()> {
        let failed =
            |source: object_store::Error| Error::Store { operation: "make read-only", key: key.to_string(), source };
        let file = self.paths.path_to_filesystem(key).map_err(failed)?;
        let shown = file.display().to_string();
        tokio::task::spawn_blocking(move || make_read_only(&file))
            .await
            .map_err(|e| Error::internal(format!("read-only task: {e}")))?
            .map_err(|e| {
                failed(if e.kind() == std::io::ErrorKind::NotFound {
                    object_store::Error::NotFound { path: shown, source: Box::new(e) }
                } else {
                    object_store::Error::Generic { store: "LocalFileSystem", source: format!("{shown}: {e}").into() }
                })
            })
    }

    /// Always fine: every local file system has read-only files.
    ///
    /// # Errors
    /// None.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "read-only files under {}: a locked version's object and description are made read-only (mode 0444), \
             which stops overwrites and casual edits; it cannot stop the files' owner or root from deleting them \
             (deleting a file depends on its folder's permissions) or making them writable again",
            self.root.display()
        )
    }
}

/// Sets `file` to mode `0444` (read-only elsewhere) unless it is already.
fn make_read_only(file: &Path) -> std::io::Result<()> {
    let mut permissions = std::fs::metadata(file)?.permissions();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if permissions.mode() & 0o7777 == 0o444 {
            return Ok(());
        }
        permissions.set_mode(0o444);
    }
    #[cfg(not(unix))]
    {
        if permissions.readonly() {
            return Ok(());
        }
        permissions.set_readonly(true);
    }
    std::fs::set_permissions(file, permissions)
}

/// `<name>#<digits>`: the form of a staging file.
fn is_staging_name(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((base, n)) => !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_staging_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data/c");
        std::fs::create_dir_all(&sub).unwrap();
        for name in ["v1#1", "v2#17", "v3", "v4#x", "#3", "v5#"] {
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_staging_files(dir.path(), Duration::from_secs(3600)).unwrap(), 0, "young files stay");
        assert_eq!(remove_stale_staging_files(dir.path(), Duration::ZERO).unwrap(), 2);
        let mut left: Vec<String> =
            std::fs::read_dir(&sub).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["#3", "v3", "v4#x", "v5#"]);
        assert_eq!(remove_stale_staging_files(&dir.path().join("missing"), Duration::ZERO).unwrap(), 0);
    }

    #[tokio::test]
    async fn staging_files_of_one_key_go() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data/c");
        std::fs::create_dir_all(&sub).unwrap();
        for name in ["v1#1", "v1#23", "v1", "v12#1", "v1#x", "v2#1"] {
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        let staging = StagingFiles::new(dir.path());
        assert_eq!(staging.remove(&"data/c/v1".into()).await.unwrap(), 2);
        let mut left: Vec<String> =
            std::fs::read_dir(&sub).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["v1", "v1#x", "v12#1", "v2#1"], "only v1's staging files");
        assert_eq!(staging.remove(&"data/missing/v1".into()).await.unwrap(), 0);
    }
}

/// Descriptions written in place, one system call each (create, write, close): no staging
/// file, no rename, no sync. A description cut by a crash is unreadable; a rebuild reports it
/// and a scrub writes it again. Everything but `put` goes to the wrapped store, and so does a
/// `put` over a read-only description (a locked version's, see [`ReadOnlyFiles`]): it cannot
/// be opened for writing (but by root), and the wrapped store renames a new file over it.
#[derive(Debug)]
struct InPlaceWrites {
    root: std::path::PathBuf,
    inner: LocalFileSystem,
}

impl std::fmt::Display for InPlaceWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InPlaceWrites({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InPlaceWrites {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if !matches!(opts.mode, object_store::PutMode::Overwrite) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let path = self.root.join(location.as_ref());
        let bytes: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
        let written = tokio::task::spawn_blocking(move || {
            // Decided by the mode, not by a refused open, so that root (whom no mode stops)
            // leaves read-only files alone too.
            if std::fs::metadata(&path).is_ok_and(|m| m.permissions().readonly()) {
                return Ok(false);
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes).map(|()| true)
        })
        .await
        .map_err(|e| object_store::Error::Generic { store: "InPlaceWrites", source: Box::new(e) })?
        .map_err(|e| object_store::Error::Generic { store: "InPlaceWrites", source: Box::new(e) })?;
        if !written {
            return self.inner.put_opts(location, payload, opts).await;
        }
        Ok(object_store::PutResult { e_tag: None, version: None, extensions: Default::default() })
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
