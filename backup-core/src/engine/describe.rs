//! Self-describing objects: next to each version's object, a small description of what the
//! catalog knows about it, so that a lost catalog can be rebuilt from the store alone.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id::RepositoryId;
use crate::spec::CollectionSpec;
use crate::store::description_key;
use crate::time::Timestamp;
use crate::version::{Version, check_version_number};

/// The format name in a description.
pub(crate) const DESCRIPTION_FORMAT: &str = "backup-engine-version";
/// The format version this build writes and reads.
pub(crate) const DESCRIPTION_VERSION: u32 = 1;
/// Descriptions are a few hundred bytes; anything this large is not one.
pub(crate) const MAX_DESCRIPTION: u64 = 64 << 10;

/// What a version's description object holds: the version's record as the catalog had it when
/// it last changed (number, filename, size, digest, uploader, times, state, protection,
/// quarantine), and its collection's spec at that time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Description {
    pub(crate) format: String,
    pub(crate) format_version: u32,
    /// The repository it was written for.
    pub(crate) repository: RepositoryId,
    /// When it was written.
    pub(crate) described_at: Timestamp,
    pub(crate) version: Version,
    pub(crate) spec: CollectionSpec,
}

impl Description {
    /// Reads and checks a description's bytes found at `key`.
    pub(crate) fn parse(key: &Path, bytes: &[u8]) -> std::result::Result<Description, String> {
        let d: Description = serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        if d.format != DESCRIPTION_FORMAT || d.format_version > DESCRIPTION_VERSION {
            return Err(format!("format {:?} version {} is unknown", d.format, d.format_version));
        }
        // A number no catalog can hold was never given out by an engine.
        check_version_number(d.version.number).map_err(|e| e.to_string())?;
        let expected = description_key(&d.version.object_key);
        if &expected != key {
            return Err(format!("it describes the object {}, which it is not next to", d.version.object_key));
        }
        let object = Path::from(d.version.object_key.as_str());
        let mut parts = object.parts().collect::<Vec<_>>().into_iter().rev();
        let (id, collection) = (parts.next(), parts.next());
        if id.as_ref().map(AsRef::as_ref) != Some(d.version.id.to_string().as_str())
            || collection.as_ref().map(AsRef::as_ref) != Some(d.version.collection.as_str())
        {
            return Err(format!(
                "version {} of {} ({}) cannot be stored at {object}",
                d.version.number, d.version.collection, d.version.id
            ));
        }
        Ok(d)
    }
}

impl Engine {
    /// Writes (or rewrites) the description of `version` next to its object. Best effort: the
    /// catalog stays the authority, and a scrub rewrites a description that is missing or
    /// stale; a failure is logged, never returned.
    pub(crate) async fn describe(&self, version: &Version, spec: &CollectionSpec) {
        if let Err(e) = self.try_describe(version, spec).await {
            tracing::warn!(collection = %version.collection, version = version.number, error = %e,
                "the version's description was not written; the next scrub writes it");
        }
    }

    pub(crate) async fn try_describe(&self, version: &Version, spec: &CollectionSpec) -> Result<()> {
        let repository = self.open_repository().await?;
        let description = Description {
            format: DESCRIPTION_FORMAT.to_owned(),
            format_version: DESCRIPTION_VERSION,
            repository,
            described_at: self.now(),
            version: version.clone(),
            spec: spec.clone(),
        };
        let body = serde_json::to_vec(&description).map_err(|e| Error::internal(e.to_string()))?;
        let key = description_key(&version.object_key);
        self.inner.descriptions.put(&key, PutPayload::from(body)).await.map_err(|e| Error::store("put", &key, e))?;
        Ok(())
    }

    /// The description next to `version`'s object, if it is there and says the same as the
    /// catalog (times of verification aside).
    pub(crate) async fn description_matches(&self, version: &Version) -> Result<bool> {
        let key = description_key(&version.object_key);
        let got = match self.inner.store.get(&key).await {
            Ok(got) if got.meta.size <= MAX_DESCRIPTION => got,
            Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(Error::store("get", &key, e)),
        };
        let bytes = got.bytes().await.map_err(|e| Error::store("get", &key, e))?;
        let Ok(found) = Description::parse(&key, &bytes) else { return Ok(false) };
        let comparable = |v: &Version| v.clone().with_verification(None, v.quarantined.clone());
        Ok(found.repository == self.open_repository().await? && comparable(&found.version) == comparable(version))
    }
}
