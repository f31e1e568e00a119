//! [`FaultyCatalog`]: a catalog wrapper that fails the N-th call.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::faults::{FaultMode, Faults};
use futures::stream::BoxStream;

use crate::catalog::{AbortCondition, AbortOutcome, Catalog, CatalogRecord, ImportSummary, VersionQuery};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{CollectionId, SessionId, VersionId};
use crate::protocol::{CollectionState, CommitRequest, Committed, ReserveRequest};
use crate::session::{AuditEvent, Session};
use crate::version::{Collection, PendingUpload, Version, VersionSelector};

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
impl Catalog for FaultyCatalog {
    async fn create_collection(&self, collection: &Collection, audit: &AuditEvent) -> Result<()> {
        self.around("create_collection", self.inner.create_collection(collection, audit)).await
    }
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.around("get_collection", self.inner.get_collection(id)).await
    }
    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        self.around("list_collections", self.inner.list_collections(after, limit)).await
    }
    async fn update_collection(
        &self,
        collection: &Collection,
        expected_revision: u64,
        audit: &AuditEvent,
    ) -> Result<()> {
        self.around("update_collection", self.inner.update_collection(collection, expected_revision, audit)).await
    }
    async fn delete_collection(&self, id: &CollectionId, audit: &AuditEvent) -> Result<()> {
        self.around("delete_collection", self.inner.delete_collection(id, audit)).await
    }
    async fn collection_state(&self, id: &CollectionId) -> Result<CollectionState> {
        self.around("collection_state", self.inner.collection_state(id)).await
    }
    async fn reserve(&self, request: &ReserveRequest) -> Result<PendingUpload> {
        self.around("reserve", self.inner.reserve(request)).await
    }
    async fn renew_lease(&self, id: &VersionId, lease_until: DateTime<Utc>) -> Result<()> {
        self.around("renew_lease", self.inner.renew_lease(id, lease_until)).await
    }
    async fn commit(&self, request: &CommitRequest) -> Result<Committed> {
        self.around("commit", self.inner.commit(request)).await
    }
    async fn abort(&self, id: &VersionId, condition: AbortCondition) -> Result<AbortOutcome> {
        self.around("abort", self.inner.abort(id, condition)).await
    }
    async fn list_expired_pending(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PendingUpload>> {
        self.around("list_expired_pending", self.inner.list_expired_pending(now, limit)).await
    }
    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        self.around("get_version", self.inner.get_version(collection, selector)).await
    }
    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        self.around("list_versions", self.inner.list_versions(collection, query)).await
    }
    async fn trash_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<Version> {
        self.around("trash_version", self.inner.trash_version(collection, number, now, reason, audit)).await
    }
    async fn list_trashed(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Version>> {
        self.around("list_trashed", self.inner.list_trashed(before, limit)).await
    }
    async fn mark_purged(&self, ids: &[VersionId], now: DateTime<Utc>) -> Result<Vec<VersionId>> {
        self.around("mark_purged", self.inner.mark_purged(ids, now)).await
    }
    async fn restore_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<Version> {
        self.around("restore_version", self.inner.restore_version(collection, number, now, audit)).await
    }
    async fn known_object_keys(&self, keys: &[String]) -> Result<Vec<String>> {
        self.around("known_object_keys", self.inner.known_object_keys(keys)).await
    }
    async fn insert_session(&self, session: &Session) -> Result<()> {
        self.around("insert_session", self.inner.insert_session(session)).await
    }
    async fn get_session(&self, id: &SessionId) -> Result<Session> {
        self.around("get_session", self.inner.get_session(id)).await
    }
    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        self.around("list_sessions", self.inner.list_sessions(user, limit)).await
    }
    async fn revoke_session(&self, id: &SessionId, now: DateTime<Utc>, audit: &AuditEvent) -> Result<Session> {
        self.around("revoke_session", self.inner.revoke_session(id, now, audit)).await
    }
    async fn revoke_user_sessions(&self, user: &str, now: DateTime<Utc>, audit: &AuditEvent) -> Result<u64> {
        self.around("revoke_user_sessions", self.inner.revoke_user_sessions(user, now, audit)).await
    }
    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        self.around("append_audit", self.inner.append_audit(event)).await
    }
    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        self.around("list_audit", self.inner.list_audit(after, limit)).await
    }
    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        self.around("export", self.inner.export()).await
    }
    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        self.around("import", self.inner.import(records)).await
    }
}
