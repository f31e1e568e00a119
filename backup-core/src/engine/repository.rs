//! The repository identity: a marker object in the store and the same id in the catalog,
//! checked before the engine touches anything.

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogExt;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id::RepositoryId;
use crate::store::REPOSITORY_MARKER;
use crate::time::Timestamp;
use crate::version::VersionSelector;

const MARKER_FORMAT: &str = "backup-engine-repository";

/// What the marker object holds.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    repository_id: RepositoryId,
    created_at: Timestamp,
}

/// How many committed versions a catalog without an id is checked against the store before
/// the two are paired (a repository from before markers existed).
const SAMPLE: usize = 16;

impl Engine {
    /// The key of the repository marker.
    pub fn marker_key(&self) -> Path {
        self.inner.key_prefix.clone().join(REPOSITORY_MARKER)
    }

    /// Checks, once per engine, that the catalog and the store belong to the same repository,
    /// and returns its id. Every operation that writes or reads the repository calls it
    /// first; a program may call it at start to fail early.
    ///
    /// When a catalog and a store are first used together, a marker object with a fresh id is
    /// written under the key prefix and the same id into the catalog. Afterwards the engine
    /// refuses to work, deleting nothing, when:
    ///
    /// - the ids differ (a wrong catalog, or two repositories sharing a prefix);
    /// - the store has an id and the catalog none (a new, empty or wrong catalog in front of
    ///   an existing store);
    /// - the catalog has an id and the store no marker (a wrong store, or a deleted marker);
    /// - neither has an id but the store holds objects and the catalog no version, or the
    ///   catalog's versions are not in the store.
    ///
    /// [`crate::EngineBuilder::adopt_store`] pairs them anyway in the cases that a restore or
    /// a rebuild of the catalog needs (never when both ids exist and differ).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use backup_core::{Actor, CollectionSpec, Engine, ErrorKind, Limits, MemoryCatalog};
    /// use bytes::Bytes;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let engine = Engine::builder().store(store.clone()).build()?;
    /// let repository = engine.open_repository().await?;
    /// let (me, db) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &db, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
    /// engine.upload(&me, &db, futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("x"))])).await?;
    ///
    /// // Another, empty catalog in front of the same store (a typo in a catalog URL):
    /// let wrong = Engine::builder().catalog(Arc::new(MemoryCatalog::new())).store(store).build()?;
    /// let e = wrong.recover().await.unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Conflict);
    /// assert!(e.to_string().contains(&repository.to_string()));
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::RepositoryMismatch`] naming both locations; store and catalog errors (the
    /// check is tried again at the next call).
    pub async fn open_repository(&self) -> Result<RepositoryId> {
        self.inner.repository.get_or_try_init(|| self.check_repository()).await.copied()
    }

    /// Reads from the catalog now (one collection's row at most): for a readiness probe that
    /// must tell a catalog that stopped answering. Nothing is written.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = backup_core::Engine::in_memory();
    /// engine.check_catalog().await?;
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The catalog's, as it failed.
    pub async fn check_catalog(&self) -> Result<()> {
        self.inner.catalog.list_collections(None, 1).await.map(drop)
    }

    /// Checks again, now, that the store's marker and the catalog's id are the repository's
    /// this engine opened (for a readiness probe: a marker deleted while running shows here).
    ///
    /// # Errors
    /// [`Error::RepositoryMismatch`]; store and catalog errors.
    pub async fn check_repository_now(&self) -> Result<RepositoryId> {
        let opened = self.open_repository().await?;
        let marker = self.read_marker().await?;
        let catalog = self.inner.catalog.repository().await?.id;
        match (catalog, marker) {
            (Some(c), Some(s)) if c == opened && s == opened => Ok(opened),
            (c, s) => Err(self.mismatch(format!(
                "opened as repository {opened}; now the catalog says {}, the store's marker {}",
                c.map_or("none".to_owned(), |c| c.to_string()),
                s.map_or("none".to_owned(), |s| s.to_string())
            ))),
        }
    }

    fn mismatch(&self, reason: String) -> Error {
        Error::RepositoryMismatch {
            catalog: self.inner.catalog.location(),
            store: format!("{} under {}", self.inner.store, self.inner.key_prefix),
            reason,
        }
    }

    async fn check_repository(&self) -> Result<RepositoryId> {
        let adopt = self.inner.config.adopt_store;
        let marker = self.read_marker().await?;
        let info = self.inner.catalog.repository().await?;
        match (info.id, marker) {
            (Some(catalog), Some(store)) if catalog == store => Ok(catalog),
            (Some(catalog), Some(store)) => Err(self.mismatch(format!(
                "the catalog belongs to repository {catalog}, the store to repository {store}; \
                 check the catalog and storage settings"
            ))),
            (None, Some(store)) => {
                if adopt || (!info.holds_versions && !self.store_holds_objects().await?) {
                    // Adopting on purpose, or a first start that stopped between writing the
                    // marker and the catalog's id: nothing to lose either way.
                    self.claim(store).await
                } else {
                    Err(self.mismatch(format!(
                        "the store holds repository {store} but the catalog has no repository id: \
                         a new, empty or wrong catalog; point it at the repository's catalog, or \
                         adopt the store on purpose (after restoring or rebuilding the catalog)"
                    )))
                }
            }
            (Some(catalog), None) => {
                if adopt {
                    self.write_marker(catalog).await
                } else {
                    Err(self.mismatch(format!(
                        "the catalog belongs to repository {catalog} but the store has no marker \
                         ({}): a wrong store, or the marker was deleted; adopt the store on \
                         purpose to write it again",
                        self.marker_key()
                    )))
                }
            }
            (None, None) => {
                let objects = self.store_holds_objects().await?;
                if !adopt && objects && !info.holds_versions {
                    return Err(self.mismatch(
                        "the store holds version objects but the catalog holds no version: \
                         a new, empty or wrong catalog; adopt the store on purpose to pair them"
                            .to_owned(),
                    ));
                }
                if !adopt && info.holds_versions {
                    self.check_sample().await?;
                }
                let id = self.write_marker(RepositoryId::generate()).await?;
                self.claim(id).await
            }
        }
    }

    /// Records `id` in the catalog.
    async fn claim(&self, id: RepositoryId) -> Result<RepositoryId> {
        match self.inner.catalog.claim_repository(id).await {
            Ok(id) => Ok(id),
            Err(e) if e.kind() == crate::ErrorKind::Conflict => Err(self.mismatch(e.to_string())),
            Err(e) => Err(e),
        }
    }

    /// The marker's id, if there is a marker.
    pub(crate) async fn read_marker(&self) -> Result<Option<RepositoryId>> {
        let key = self.marker_key();
        let got = match self.inner.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::store("get", &key, e)),
        };
        if got.meta.size > 64 << 10 {
            return Err(self.mismatch(format!("the marker {key} is {} bytes: not a marker", got.meta.size)));
        }
        let bytes = got.bytes().await.map_err(|e| Error::store("get", &key, e))?;
        match serde_json::from_slice::<Marker>(&bytes) {
            Ok(m) if m.format == MARKER_FORMAT => Ok(Some(m.repository_id)),
            Ok(m) => Err(self.mismatch(format!("the marker {key} has the unknown format {:?}", m.format))),
            Err(e) => Err(self.mismatch(format!("the marker {key} is unreadable: {e}"))),
        }
    }

    /// Writes the marker unless one exists; returns the id the store ends up with.
    async fn write_marker(&self, id: RepositoryId) -> Result<RepositoryId> {
        let key = self.marker_key();
        let marker = Marker { format: MARKER_FORMAT.to_owned(), repository_id: id, created_at: self.now() };
        let body = serde_json::to_vec_pretty(&marker).map_err(|e| Error::internal(e.to_string()))?;
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.inner.store.put_opts(&key, PutPayload::from(body.clone()), create).await {
            Ok(_) => Ok(id),
            // Another engine wrote one first: the store's id wins.
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                self.read_marker().await?.ok_or_else(|| self.mismatch(format!("the marker {key} vanished")))
            }
            Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => {
                // A store without conditional writes: check, then write.
                match self.read_marker().await? {
                    Some(existing) => Ok(existing),
                    None => {
                        self.inner
                            .store
                            .put(&key, PutPayload::from(body))
                            .await
                            .map_err(|e| Error::store("put", &key, e))?;
                        Ok(id)
                    }
                }
            }
            Err(e) => Err(Error::store("put", &key, e)),
        }
    }

    /// Whether any object other than the marker is under the key prefix.
    async fn store_holds_objects(&self) -> Result<bool> {
        let marker = self.marker_key();
        let mut listing = self.inner.store.list(Some(&self.inner.key_prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| Error::store("list", &self.inner.key_prefix, e))?;
            if meta.location != marker {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Checks that the latest versions of a few collections are in the store: a catalog that
    /// has versions but no id (from before markers) is paired only with its own store.
    async fn check_sample(&self) -> Result<()> {
        let catalog = &self.inner.catalog;
        for c in catalog.list_collections(None, SAMPLE).await? {
            let v = match catalog.get_version(&c.id, VersionSelector::Latest).await {
                Ok(v) => v,
                Err(e) if e.kind() == crate::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let key = Path::from(v.object_key.as_str());
            match self.inner.store.head(&key).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(self.mismatch(format!(
                        "neither has a repository id, and version {} of {} is not in the store ({key}): \
                         a wrong store; adopt it on purpose to pair them",
                        v.number, c.id
                    )));
                }
                Err(e) => return Err(Error::store("head", &key, e)),
            }
        }
        Ok(())
    }
}

/// The repository id a marker's bytes name, if they are a marker.
pub(crate) fn parse_marker(bytes: &[u8]) -> Option<RepositoryId> {
    serde_json::from_slice::<Marker>(bytes).ok().filter(|m| m.format == MARKER_FORMAT).map(|m| m.repository_id)
}
