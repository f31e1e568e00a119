//! Self-describing objects: next to each version's object, a small description of what the
//! catalog knows about it, so that a lost catalog can be rebuilt from the store alone.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id::{CollectionId, RepositoryId, VersionId};
use crate::spec::CollectionSpec;
use crate::store::description_key;
use crate::time::Timestamp;
use crate::version::{MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, Version, check_version_number};

/// The format name in a description.
pub(crate) const DESCRIPTION_FORMAT: &str = "backup-engine-version";
/// The format version this build writes and reads.
pub(crate) const DESCRIPTION_VERSION: u32 = 1;
/// The most a version's metadata takes in its description: [`MAX_METADATA_BYTES`] of names
/// and texts, every byte of them escaped in six (a control character becomes `\u0001`), and per
/// entry two pairs of quotes, a colon and a comma, in braces.
const MAX_METADATA_JSON: u64 = 6 * MAX_METADATA_BYTES as u64 + 6 * MAX_METADATA_ENTRIES as u64 + 2;

/// What the rest of a description may take: the spec (its description at most
/// [`crate::spec::MAX_DESCRIPTION_LEN`] bytes, 24 KiB escaped; a template of at most
/// [`crate::spec::MAX_TEMPLATE_LEN`] bytes; names of at most 64), the filename, object key,
/// digest, times, uploader and reasons: a few KiB, a KiB or so without a spec description.
/// The margin is for what an embedder chooses (uploader names, a key prefix, a strategy's
/// options); a description that would pass [`MAX_DESCRIPTION`] is refused when written.
const MAX_RECORD_JSON: u64 = 256 << 10;

/// The largest description written or read (about 640 KiB): a version with the most
/// metadata [`crate::check_metadata`] allows is always described, and comes back in a rebuild.
/// Typical descriptions are under a KiB; anything larger than this is not one.
pub(crate) const MAX_DESCRIPTION: u64 = MAX_METADATA_JSON + MAX_RECORD_JSON;

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

/// The format name of an upload's intent, written where the description goes.
pub(crate) const INTENT_FORMAT: &str = "backup-engine-commit-intent";

/// What stands at a version's description key from the start of its upload until its
/// description replaces it: an upload of `collection` may be committed, with a number not yet
/// known. A process killed between the commit and the description leaves it; a rebuild then
/// knows that a number may have been given out that no description holds, and resumes the
/// collection's numbering past it ([`Engine::rebuild_catalog`]). An upload that is released
/// loses it with its object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    pub(crate) format: String,
    pub(crate) format_version: u32,
    /// The repository it was written for.
    pub(crate) repository: RepositoryId,
    /// When it was written.
    pub(crate) written_at: Timestamp,
    /// The upload (the version's id, if it commits).
    pub(crate) id: VersionId,
    /// Its collection.
    pub(crate) collection: CollectionId,
    /// Its object.
    pub(crate) object_key: String,
}

/// What a description key holds.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    /// A version's description.
    Description(Box<Description>),
    /// An upload's intent: a version may have been committed without its description.
    Intent(Intent),
}

#[derive(Deserialize)]
struct FormatOnly {
    format: String,
}

/// Whether an object at `object_key` may hold version `id` of `collection`, and its
/// description sit at `key`.
fn check_placement(
    key: &Path,
    object_key: &str,
    id: &VersionId,
    collection: &CollectionId,
) -> std::result::Result<(), String> {
    if &description_key(object_key) != key {
        return Err(format!("it describes the object {object_key}, which it is not next to"));
    }
    let object = Path::from(object_key);
    let mut parts = object.parts().collect::<Vec<_>>().into_iter().rev();
    let (last, folder) = (parts.next(), parts.next());
    if last.as_ref().map(AsRef::as_ref) != Some(id.to_string().as_str())
        || folder.as_ref().map(AsRef::as_ref) != Some(collection.as_str())
    {
        return Err(format!("upload {id} of {collection} cannot be stored at {object}"));
    }
    Ok(())
}

impl Found {
    /// Reads and checks what a description key holds: a description, or an upload's intent.
    pub(crate) fn parse(key: &Path, bytes: &[u8]) -> std::result::Result<Found, String> {
        let format: FormatOnly = serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        if format.format != INTENT_FORMAT {
            return Description::parse(key, bytes).map(|d| Found::Description(Box::new(d)));
        }
        let i: Intent = serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        if i.format_version > DESCRIPTION_VERSION {
            return Err(format!("format {:?} version {} is unknown", i.format, i.format_version));
        }
        check_placement(key, &i.object_key, &i.id, &i.collection)?;
        Ok(Found::Intent(i))
    }
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
        let v = &d.version;
        check_placement(key, &v.object_key, &v.id, &v.collection)
            .map_err(|e| format!("version {} of {}: {e}", v.number, v.collection))?;
        Ok(d)
    }
}

impl Engine {
    /// Writes (or rewrites) the description of `version` next to its object; whether it did.
    /// Best effort: the catalog stays the authority, and marked the version in the step that
    /// changed it, so the next `recover()` writes a description that is missing (a scrub, one
    /// that is stale); a failure is logged, never returned.
    pub(crate) async fn describe(&self, version: &Version, spec: &CollectionSpec) -> bool {
        match self.try_describe(version, spec).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(collection = %version.collection, version = version.number, error = %e,
                    "the version's description was not written; the next recover() writes it");
                false
            }
        }
    }

    pub(crate) async fn try_describe(&self, version: &Version, spec: &CollectionSpec) -> Result<()> {
        let body = self.description_body(version, spec).await?;
        let key = description_key(&version.object_key);
        self.inner.descriptions.put(&key, PutPayload::from(body)).await.map_err(|e| Error::store("put", &key, e))?;
        // The store keeps what the lock keeps (the description is written again, so each of its
        // writes is retained anew); until both are set, the version stays undescribed and
        // recover() sets them again.
        if let (Some(locks), Some(lock)) = (&self.inner.object_locks, version.lock_at(self.now())) {
            locks.retain(&Path::from(version.object_key.as_str()), lock).await?;
            locks.retain(&key, lock).await?;
        }
        Ok(())
    }

    /// The description of `version` as written next to its object (and on replicas).
    pub(crate) async fn description_body(&self, version: &Version, spec: &CollectionSpec) -> Result<Vec<u8>> {
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
        if body.len() as u64 > MAX_DESCRIPTION {
            // Written, it would be skipped by a rebuild and rewritten by every scrub.
            return Err(Error::invalid(
                "description",
                format!(
                    "the description of version {} of {} would take {} bytes, more than the {MAX_DESCRIPTION} \
                     a rebuild reads (its uploader, key or reasons are too long)",
                    version.number,
                    version.collection,
                    body.len()
                ),
            ));
        }
        Ok(body)
    }

    /// Writes an upload's intent where its description goes, before anything of it is
    /// committed (see [`Intent`]).
    ///
    /// # Errors
    /// Store errors: the upload must not go on without it.
    pub(crate) async fn write_intent(&self, id: VersionId, collection: &CollectionId, object_key: &str) -> Result<()> {
        let intent = Intent {
            format: INTENT_FORMAT.to_owned(),
            format_version: DESCRIPTION_VERSION,
            repository: self.open_repository().await?,
            written_at: self.now(),
            id,
            collection: collection.clone(),
            object_key: object_key.to_owned(),
        };
        let body = serde_json::to_vec(&intent).map_err(|e| Error::internal(e.to_string()))?;
        let key = description_key(object_key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Digest, DigestAlgorithm};
    use crate::spec::{Limits, MAX_DESCRIPTION_LEN, MAX_TEMPLATE_LEN};
    use crate::version::{Metadata, Uploader, VersionState};

    /// The worst case the limits allow, every text in characters JSON escapes six times over,
    /// fits a description with the margin to spare.
    #[test]
    fn the_largest_version_the_limits_allow_fits_a_description() {
        let name_len = 64;
        let text_len = (MAX_METADATA_BYTES - MAX_METADATA_ENTRIES * name_len) / MAX_METADATA_ENTRIES;
        let metadata: Metadata =
            (0..MAX_METADATA_ENTRIES).map(|i| (format!("m{i:0>63}"), "\u{1}".repeat(text_len))).collect();
        crate::check_metadata(&metadata).unwrap();
        let template = format!("{}${{version}}", "é".repeat((MAX_TEMPLATE_LEN - 10) / 2));
        let spec = CollectionSpec::new(template, Limits::new(u32::MAX, 1, u64::from(u32::MAX)).unwrap())
            .with_description("\u{1}".repeat(MAX_DESCRIPTION_LEN))
            .with_content_rule("r".repeat(64))
            .with_max_held_versions(u32::MAX - 1);
        spec.validate().unwrap();
        let id = crate::id::VersionId::generate();
        let collection: crate::id::CollectionId = "c".repeat(crate::id::MAX_COLLECTION_ID_LEN).parse().unwrap();
        let version = Version::new(
            id,
            collection.clone(),
            crate::MAX_VERSION_NUMBER,
            format!("a-prefix/{collection}/{id}"),
            u64::MAX,
            Digest::of(DigestAlgorithm::Sha256, b""),
        )
        .with_filename(spec.filename_template.render(crate::MAX_VERSION_NUMBER))
        .with_uploader(Uploader::user("u".repeat(1024)).with_access_key(Some("k".repeat(1024))))
        .with_state(
            VersionState::Trashed,
            Some((Timestamp::UNIX_EPOCH, "deleted by ".to_owned() + &"u".repeat(1024))),
            None,
        )
        .with_verification(Some(Timestamp::UNIX_EPOCH), Some("\u{1}".repeat(4096)))
        .with_metadata(metadata);
        let description = Description {
            format: DESCRIPTION_FORMAT.to_owned(),
            format_version: DESCRIPTION_VERSION,
            repository: RepositoryId::generate(),
            described_at: Timestamp::UNIX_EPOCH,
            version,
            spec,
        };
        let len = serde_json::to_vec(&description).unwrap().len() as u64;
        assert!(len <= MAX_DESCRIPTION, "{len} bytes > {MAX_DESCRIPTION}");
        assert!(MAX_DESCRIPTION - len > 128 << 10, "a margin for what embedders choose: {len} of {MAX_DESCRIPTION}");
    }
}
