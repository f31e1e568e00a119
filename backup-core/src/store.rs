//! The key layout the engine owns.

use object_store::path::Path;

use crate::id::{CollectionId, VersionId};

/// The object key of an upload: `<prefix>/<collection>/<version id>`.
///
/// Every upload gets a fresh key (the version id is a new UUIDv7), so no upload can overwrite
/// another's bytes, and a key never names two versions.
pub fn object_key(prefix: &Path, collection: &CollectionId, id: &VersionId) -> Path {
    prefix.clone().join(collection.as_str()).join(id.to_string())
}
