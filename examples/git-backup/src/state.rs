//! What the tool remembers between runs, per repository, in `state.json` in the cache folder:
//! the last success, the last failure and its reason, and when it last tried.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The last version this tool itself stored for a repository: what a later run may skip
/// against. A version someone else uploaded into the collection, whatever its metadata
/// claims, is never a reason to skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    /// The version's unique id (numbers are unique too, but an id also tells a version from
    /// one of a collection that was deleted and created again).
    pub(crate) id: String,
    pub(crate) number: u64,
    /// Who uploaded it, as the destination reported.
    pub(crate) user: String,
    /// The SHA-256 of the refs it holds.
    pub(crate) refs_sha256: String,
}

/// One repository's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RepoState {
    /// When a run last ended well (stored, or skipped as unchanged).
    pub(crate) last_success: Option<DateTime<Utc>>,
    /// The version the last successful run stored or found unchanged.
    pub(crate) last_version: Option<u64>,
    /// When a run last failed, and why.
    pub(crate) last_failure: Option<DateTime<Utc>>,
    pub(crate) last_error: Option<String>,
    /// Failures since the last success (the daemon's backoff).
    pub(crate) failures: u32,
    /// When a run last started.
    pub(crate) last_attempt: Option<DateTime<Utc>>,
    /// The last version this tool stored.
    #[serde(default)]
    pub(crate) stored: Option<StoredVersion>,
}

/// The file.
#[derive(Debug)]
pub(crate) struct State {
    path: PathBuf,
    pub(crate) repos: BTreeMap<String, RepoState>,
}

impl State {
    /// Reads the state (empty when there is none yet).
    pub(crate) fn load(cache: &Path) -> Result<State, String> {
        let path = cache.join("state.json");
        let repos = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(State { path, repos })
    }

    pub(crate) fn get(&self, name: &str) -> RepoState {
        self.repos.get(name).cloned().unwrap_or_default()
    }

    /// Records a change and writes the file (a temporary file renamed over it).
    pub(crate) fn update(&mut self, name: &str, change: impl FnOnce(&mut RepoState)) -> Result<(), String> {
        change(self.repos.entry(name.to_owned()).or_default());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        let text = serde_json::to_vec_pretty(&self.repos).map_err(|e| e.to_string())?;
        tmp.write_all(&text).and_then(|()| tmp.as_file().sync_all()).map_err(|e| e.to_string())?;
        tmp.persist(&self.path).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        Ok(())
    }
}
