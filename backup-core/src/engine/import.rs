//! Versions brought in from another system (a migration): bytes copied under the engine's
//! key, registered with the number, filename, uploader and time they had there.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::ObjectStoreExt;

use crate::audit::AuditEvent;
use crate::catalog::CatalogExt;
use crate::engine::Engine;
use crate::engine::part_writer::PartWriter;
use crate::error::{BoxError, Error, Result};
use crate::id::{CollectionId, VersionId};
use crate::protocol::StateQuery;
use crate::store::object_key;
use crate::time::Timestamp;
use crate::version::{Uploader, Version, check_version_number};

/// A version as another system recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportedVersion {
    /// Its id there, kept as the version's id: the same version imported twice is the same
    /// version (and the same object key).
    pub id: VersionId,
    /// The collection (it must exist).
    pub collection: CollectionId,
    /// Its number there, kept.
    pub number: u64,
    /// Its file name there, kept.
    pub filename: String,
    /// Its size there: the bytes must have exactly this many.
    pub size: u64,
    /// Who uploaded it.
    pub uploader: Uploader,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

impl ImportedVersion {
    /// A version of `collection` numbered `number`, called `filename`, of `size` bytes.
    pub fn new(
        id: VersionId,
        collection: CollectionId,
        number: u64,
        filename: impl Into<String>,
        size: u64,
        uploader: Uploader,
        created_at: impl Into<Timestamp>,
    ) -> Self {
        ImportedVersion {
            id,
            collection,
            number,
            filename: filename.into(),
            size,
            uploader,
            created_at: created_at.into(),
        }
    }
}

/// What [`Engine::import_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportOutcome {
    /// Copied and registered.
    Imported(Box<Version>),
    /// Already registered with this id (an earlier import): nothing was copied.
    AlreadyImported,
}

impl Engine {
    /// Whether a version with this id is in the catalog already (in any state).
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn knows_version(&self, id: VersionId) -> Result<bool> {
        Ok(!self.inner.catalog.load(StateQuery::versions([id]).with_label("knows_version")).await?.versions.is_empty())
    }

    /// Imports a version from another system (a migration): its bytes are copied under the
    /// engine's key for `version.id`, hashed as they flow, and the version is registered as
    /// committed with its number, filename, uploader and time, then described (see
    /// [`Engine::rebuild_catalog`]). Quotas and retention do not refuse it (it existed
    /// already); the next upload's retention counts it like any other.
    ///
    /// Idempotent: a version whose id is registered already is not copied again. Interrupted
    /// between the copy and the registration, it leaves an object the catalog does not know
    /// (reported by `recover()`, never deleted), which the next import of the same version
    /// overwrites and registers.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a number out of range ([`crate::check_version_number`]),
    /// before anything is copied; [`Error::CollectionNotFound`]; [`Error::Conflict`] if another
    /// version has the number;
    /// [`Error::Corrupted`] if the bytes are not `version.size` long (nothing is registered);
    /// [`Error::Body`] for a failing body; store and catalog errors.
    pub async fn import_version<S, E>(&self, version: &ImportedVersion, body: S) -> Result<ImportOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: Into<BoxError>,
    {
        // Refused before a byte is copied: a number no catalog can hold would be refused at
        // the registration, after the copy.
        check_version_number(version.number)?;
        self.open_repository().await?;
        let collection = self.inner.catalog.get_collection(&version.collection).await?;
        if self.knows_version(version.id).await? {
            return Ok(ImportOutcome::AlreadyImported);
        }
        let key = object_key(&self.inner.key_prefix, &version.collection, &version.id);
        let mut hasher = collection.spec.digest.hasher();
        let upload = self.inner.store.put_multipart(&key).await.map_err(|e| Error::store("put_multipart", &key, e))?;
        let mut writer =
            PartWriter::new(upload, key.clone(), self.inner.config.part_size, self.inner.config.parts_in_flight);
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        let copied: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::Body { source: e.into() })?;
                size += chunk.len() as u64;
                if size > version.size {
                    break;
                }
                hasher.update(&chunk);
                writer.put(chunk).await?;
            }
            Ok(())
        }
        .await;
        let corrupted = |reason: String| Error::Corrupted {
            collection: version.collection.clone(),
            version: version.number,
            reason,
        };
        match copied {
            Ok(()) if size == version.size => {
                writer.finish(&crate::engine::last_write::LastWrite::default()).await?;
            }
            Ok(()) => {
                writer.abort().await;
                return Err(corrupted(if size > version.size {
                    format!("its bytes are longer than the {} recorded", version.size)
                } else {
                    format!("{size} bytes arrived, {} were recorded", version.size)
                }));
            }
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        }
        let imported = Version::new(
            version.id,
            version.collection.clone(),
            version.number,
            key.to_string(),
            size,
            hasher.finalize(),
        )
        .with_filename(version.filename.clone())
        .with_times(version.created_at, version.created_at)
        .with_uploader(version.uploader.clone());
        // As for a commit: a catalog lost before the description is written is rebuilt without
        // giving the number out again.
        self.write_intent(version.id, &version.collection, key.as_ref()).await?;
        let audit = AuditEvent::new(self.now(), "import", "version.import").with_version(version.number);
        let adopted = self.inner.catalog.adopt_versions(&version.collection, vec![imported.clone()], &audit).await?;
        if let Some((_, reason)) = adopted.refused.first() {
            // Not ours to keep: the object was written for a registration that cannot be.
            let _ = self.delete_object(key.as_ref()).await;
            return Err(Error::conflict(format!(
                "version {} of {} cannot be imported: {reason}",
                version.number, version.collection
            )));
        }
        if !adopted.present.is_empty() {
            return Ok(ImportOutcome::AlreadyImported);
        }
        self.describe(&imported, &collection.spec).await;
        Ok(ImportOutcome::Imported(Box::new(imported)))
    }
}
