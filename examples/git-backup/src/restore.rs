//! `restore`: a version's bundle becomes a working repository in a new or empty folder,
//! checked with `git fsck` and against the refs the version recorded.

use std::path::Path;

use crate::config::{Config, Repository};
use crate::git;
use crate::run::{META_HEAD, META_REFS, META_REFS_SHA256};
use crate::target::Target;

/// Restores version `which` (`latest`, `N`) of `repo` into `dest`.
pub(crate) async fn restore(
    target: &Target,
    config: &Config,
    repo: &Repository,
    which: &str,
    dest: &Path,
) -> Result<u64, String> {
    let existed = match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!("{} is not empty: restore into a new or empty folder", dest.display()));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(format!("cannot use {}: {e}", dest.display())),
    };
    std::fs::create_dir_all(&config.cache_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.cache_dir.display()))?;
    let bundle = tempfile::Builder::new()
        .prefix(&format!(".restore-{}.", repo.name))
        .suffix(".bundle")
        .tempfile_in(&config.cache_dir)
        .map_err(|e| e.to_string())?;
    let result = async {
        let version = target.download(&repo.collection, which, bundle.path()).await?;
        git::restore(bundle.path(), dest, version.metadata.get(META_HEAD).map(String::as_str)).await?;
        let restored = git::refs(dest).await?;
        let matches = match (version.metadata.get(META_REFS), version.metadata.get(META_REFS_SHA256)) {
            (Some(lines), _) => &restored.lines == lines,
            (None, Some(digest)) => &restored.digest() == digest,
            (None, None) => true,
        };
        if !matches {
            return Err(format!("the refs restored differ from those version {} recorded", version.number));
        }
        Ok(version.number)
    }
    .await;
    if result.is_err() {
        // Leave the folder as it was found.
        let _ = std::fs::remove_dir_all(dest);
        if existed {
            let _ = std::fs::create_dir_all(dest);
        }
    }
    result
}
