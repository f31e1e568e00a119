//! What the engine asks of a store beyond [`object_store::ObjectStore`]: removing what an
//! unfinished upload left ([`UploadLeftovers`]), and the names of its own records in a
//! repository's store. The key layout itself is the engine's, and private.

use std::fmt::Debug;

use async_trait::async_trait;
use object_store::path::Path;

use crate::error::Result;
use crate::id::{CollectionId, VersionId};

/// The repository marker's name under the key prefix. A collection id never starts with a
/// dot, so no version object can be called this.
pub const REPOSITORY_MARKER: &str = ".repository.json";

/// The name of a scrub's progress record under the key prefix, kept while a scrub runs so
/// that one interrupted by a restart resumes where it stopped.
pub const SCRUB_PROGRESS: &str = ".scrub-progress.json";

/// The object key of an upload: `<prefix>/<collection>/<version id>`.
///
/// Every upload gets a fresh key (the version id is a new UUIDv7), so no upload can overwrite
/// another's bytes, and a key never names two versions.
pub(crate) fn object_key(prefix: &Path, collection: &CollectionId, id: &VersionId) -> Path {
    prefix.clone().join(collection.as_str()).join(id.to_string())
}

/// What the key of a version's description ends with: `<object key>.version.json` (see
/// [`crate::Engine::rebuild_catalog`]); from the start of an upload until its description is
/// written, the upload's intent stands there. Version ids never contain a dot, so no object
/// key ends like this.
pub const DESCRIPTION_SUFFIX: &str = ".version.json";

/// The key of the description of the version stored at `object_key`.
pub(crate) fn description_key(object_key: &str) -> Path {
    Path::from(format!("{object_key}{DESCRIPTION_SUFFIX}"))
}

/// The object key a description describes, if `key` is a description's key.
pub(crate) fn described_object(key: &str) -> Option<&str> {
    key.strip_suffix(DESCRIPTION_SUFFIX)
}

/// Whether `key` is one of the engine's own records under `prefix` rather than a version's
/// object or description: the repository marker, catalog snapshots, a scrub's progress, the
/// number marks of collections. They
/// live under names starting with a dot, which no collection id can have.
pub(crate) fn is_internal_key(prefix: &Path, key: &Path) -> bool {
    key.prefix_match(prefix).and_then(|mut rest| rest.next()).is_some_and(|first| first.as_ref().starts_with('.'))
}

/// Removes what a store keeps of an upload that never completed, beyond its object, found by
/// the object's key: the staging file of a local-disk store (`<key>#<n>`, renamed into place
/// only on completion), the open multipart uploads of an S3 bucket under that key (its
/// `ListMultipartUploads`; those whose id the catalog recorded are also aborted by that id:
/// [`crate::EngineBuilder::multipart_store`]).
///
/// `object_store` removes these itself when an upload fails in-process; a killed process
/// leaves them, invisible to listings. [`crate::Engine::recover`] calls this for every object
/// the catalog recorded as released (a tombstone of an upload that never committed), so
/// leftovers go at the next maintenance run after the upload is released, by the catalog's
/// own records; nothing else is touched. With a multipart store, the engine also calls it for
/// the key of every version whose multipart upload completed, so that an upload opened twice
/// for it (a create request retried by the store's client) is not left open: an
/// implementation must leave a completed object alone. Set it with
/// [`crate::EngineBuilder::upload_leftovers`].
#[async_trait]
pub trait UploadLeftovers: Debug + Send + Sync + 'static {
    /// Removes what an unfinished upload to `key` left; returns how many leftovers it removed
    /// (none is not an error).
    ///
    /// # Errors
    /// A failure to list or remove them; the next run tries again.
    async fn remove(&self, key: &Path) -> Result<u64>;
}
