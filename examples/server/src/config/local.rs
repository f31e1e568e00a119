//! What a start creates on local disk, and takes back when the start is refused: a refused
//! start leaves the data folder as it found it.

use std::path::{Path, PathBuf};

use crate::config::Args;

/// The local paths a start may create: the SQLite catalog's file and the folders above it,
/// the local storage's folder and the folders above it. Recorded before they are opened.
#[derive(Debug, Default)]
pub(crate) struct Created {
    /// The catalog's file, if it did not exist.
    catalog: Option<PathBuf>,
    /// Each folder that did not exist, with the highest of its missing ancestors (where the
    /// removal stops).
    folders: Vec<(PathBuf, PathBuf)>,
}

impl Created {
    /// What does not exist yet of the catalog and storage `args` name.
    pub(crate) fn before_opening(args: &Args) -> Self {
        let mut created = Created::default();
        let catalog = args.catalog().strip_prefix("sqlite://").filter(|p| !p.is_empty()).map(PathBuf::from);
        if let Some(file) = catalog.filter(|f| !f.exists()) {
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                created.folder(parent);
            }
            created.catalog = Some(file);
        }
        if let Some(root) = args.storage().ok().as_deref().and_then(|url| url.strip_prefix("file://")) {
            created.folder(Path::new(root));
        }
        created
    }

    /// Notes `dir` if it is missing, with its highest missing ancestor.
    fn folder(&mut self, dir: &Path) {
        let mut top = None;
        for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            if ancestor.exists() {
                break;
            }
            top = Some(ancestor.to_path_buf());
        }
        if let Some(top) = top {
            self.folders.push((dir.to_path_buf(), top));
        }
    }

    /// Removes what was created: the catalog's file (with SQLite's journal files), then each
    /// created folder that is empty, up to the highest one created. A folder that holds
    /// anything stays.
    pub(crate) fn undo(self) {
        if let Some(file) = &self.catalog {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut path = file.clone().into_os_string();
                path.push(suffix);
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::debug!(path = %Path::new(&path).display(), "refused start: removed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %Path::new(&path).display(), error = %e, "refused start: could not remove")
                    }
                }
            }
        }
        for (dir, top) in &self.folders {
            for folder in dir.ancestors() {
                if std::fs::remove_dir(folder).is_err() || folder == top {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_missing_goes_and_only_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = Args::defaults();
        args.data_dir = dir.path().join("data/server");
        args.catalog_url = Some(format!("sqlite://{}", dir.path().join("typo/deep/catalog.db").display()));
        let created = Created::before_opening(&args);
        std::fs::create_dir_all(dir.path().join("typo/deep")).unwrap();
        for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
            std::fs::write(dir.path().join("typo/deep").join(name), b"x").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("data/server/blobs")).unwrap();
        std::fs::write(dir.path().join("data/keep"), b"x").unwrap();
        created.undo();
        assert!(!dir.path().join("typo").exists(), "the catalog and the folders made for it go");
        assert!(!dir.path().join("data/server").exists(), "the empty storage folders go");
        assert!(dir.path().join("data/keep").exists(), "a folder that holds something stays");
    }

    #[test]
    fn an_existing_catalog_stays() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("catalog.db");
        std::fs::write(&file, b"x").unwrap();
        let mut args = Args::defaults();
        args.data_dir = dir.path().to_path_buf();
        let created = Created::before_opening(&args);
        created.undo();
        assert!(file.exists());
        assert!(!dir.path().join("blobs").exists());
        assert!(dir.path().exists());
    }
}
