//! [`FaultyCatalog`]: a catalog wrapper that fails the N-th call.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::faults::{FaultMode, Faults};
use crate::audit::AuditEvent;
use crate::catalog::{
    Catalog, CatalogRecord, Decide, ImportSummary, KeyClass, PendingFilter, RepositoryInfo, Undescribed, VersionQuery,
};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{CollectionId, VersionId};
use crate::protocol::{LoadedState, StateQuery};
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Tombstone, Version, VersionSelector};

/// Forwards every call to the wrapped catalog, counting it in [`Faults`] and failing the one
/// the plan names, before or after doing its work.
#[derive(Debug)]
pub struct FaultyCatalog {
    inner: Arc<dyn Catalog>,
    faults: Faults,
}

impl FaultyCatalog {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Catalog>, faults: Faults) -> Self {
        FaultyCatalog { inner, faults }
    }

    async fn around<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.faults.maybe_yield().await;
        let injected = || Error::backend(ErrorKind::Unavailable, "faulty catalog", op, "injected fault");
        match self.faults.next(op) {
            None => call.await,
            Some(FaultMode::Before) => Err(injected()),
            Some(FaultMode::After) => {
                call.await?;
                Err(injected())
            }
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Catalog for FaultyCatalog {
    fn location(&self) -> String {
        format!("faulty {}", self.inner.location())
    }
    async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()> {
        let label = if query.label.is_empty() { "transact" } else { query.label };
        self.around(label, self.inner.transact(query, decide)).await
    }
    async fn load(&self, query: StateQuery) -> Result<LoadedState> {
        let label = if query.label.is_empty() { "load" } else { query.label };
        self.around(label, self.inner.load(query)).await
    }
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.around("get_collection", self.inner.get_collection(id)).await
    }
    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        self.around("list_collections", self.inner.list_collections(after, limit)).await
    }
    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        self.around("get_version", self.inner.get_version(collection, selector)).await
    }
    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        self.around("list_versions", self.inner.list_versions(collection, query)).await
    }
    async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>> {
        self.around("list_pending", self.inner.list_pending(filter, limit)).await
    }
    async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>> {
        self.around("list_trashed", self.inner.list_trashed(before, limit)).await
    }
    async fn list_tombstones(
        &self,
        collection: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        self.around("list_tombstones", self.inner.list_tombstones(collection, after, limit)).await
    }
    async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>> {
        self.around("list_undescribed", self.inner.list_undescribed(after, limit)).await
    }
    async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>> {
        self.around("classify_object_keys", self.inner.classify_object_keys(keys)).await
    }
    async fn repository(&self) -> Result<RepositoryInfo> {
        self.around("repository", self.inner.repository()).await
    }
    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        self.around("list_sessions", self.inner.list_sessions(user, limit)).await
    }
    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        self.around("list_audit", self.inner.list_audit(after, limit)).await
    }
    async fn audit_checkpoint(&self) -> Result<Option<crate::audit::AuditHead>> {
        self.around("audit_checkpoint", self.inner.audit_checkpoint()).await
    }
    async fn audit_head(&self) -> Result<crate::audit::AuditHead> {
        self.around("audit_head", self.inner.audit_head()).await
    }
    async fn list_cursors(&self) -> Result<Vec<crate::audit::LogCursor>> {
        self.around("list_cursors", self.inner.list_cursors()).await
    }
    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        self.around("export", self.inner.export()).await
    }
    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        self.around("import", self.inner.import(records)).await
    }
}
