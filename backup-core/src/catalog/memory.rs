//! [`MemoryCatalog`]: the catalog in a mutex, always compiled in, for docs, tests and examples.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use crate::catalog::{AbortCondition, AbortOutcome, Catalog, CatalogRecord, ImportSummary, VersionQuery};
use crate::error::{Error, Result};
use crate::id::{CollectionId, SessionId, VersionId};
use crate::protocol::{self, CollectionState, CommitRequest, Committed, ReserveRequest};
use crate::rotation::VersionSummary;
use crate::session::{AuditEvent, Session};
use crate::version::{Collection, PendingUpload, Version, VersionSelector, VersionState};

/// A catalog held in memory: complete and atomic (one mutex), gone when dropped.
///
/// ```
/// use backup_core::{Catalog, MemoryCatalog};
/// # tokio_test_block_on(async {
/// let catalog = MemoryCatalog::new();
/// assert!(catalog.list_collections(None, 10).await?.is_empty());
/// # Ok::<(), backup_core::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    collections: BTreeMap<CollectionId, CollectionRow>,
    /// Committed, trashed and purged versions: where to find them.
    version_index: HashMap<VersionId, (CollectionId, u64)>,
    pending: BTreeMap<VersionId, PendingUpload>,
    sessions: BTreeMap<SessionId, Session>,
    audit: Vec<AuditEvent>,
}

#[derive(Debug)]
struct CollectionRow {
    collection: Collection,
    next_number: u64,
    versions: BTreeMap<u64, Version>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below validates before it writes, so a panic cannot leave a half
        // applied change behind: a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn row(&self, id: &CollectionId) -> Result<&CollectionRow> {
        self.collections.get(id).ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
    }

    fn row_mut(&mut self, id: &CollectionId) -> Result<&mut CollectionRow> {
        self.collections.get_mut(id).ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
    }

    fn state(&self, id: &CollectionId) -> Result<CollectionState> {
        let row = self.row(id)?;
        let committed = row
            .versions
            .values()
            .filter(|v| v.state == VersionState::Committed)
            .map(|v| VersionSummary {
                id: v.id,
                number: v.number,
                size: v.size,
                created_at: v.created_at,
                committed_at: v.committed_at,
            })
            .collect();
        let pending = self.pending.values().filter(|p| &p.collection == id).cloned().collect();
        Ok(CollectionState::new(row.collection.clone(), row.next_number, committed, pending))
    }

    fn is_empty(&self) -> bool {
        self.collections.is_empty() && self.pending.is_empty() && self.sessions.is_empty() && self.audit.is_empty()
    }

    /// Applies one snapshot record to an inner state being rebuilt.
    fn load(&mut self, record: CatalogRecord) -> Result<()> {
        let bad = |reason: String| Error::invalid("catalog snapshot", reason);
        match record {
            CatalogRecord::Header { .. } => return Err(bad("a second header".into())),
            CatalogRecord::Collection { collection, next_number } => {
                if self.collections.contains_key(&collection.id) {
                    return Err(bad(format!("collection {} twice", collection.id)));
                }
                self.collections.insert(
                    collection.id.clone(),
                    CollectionRow { collection, next_number, versions: BTreeMap::new() },
                );
            }
            CatalogRecord::Version(v) => {
                let row = self
                    .collections
                    .get_mut(&v.collection)
                    .ok_or_else(|| bad(format!("version {} of unknown collection {}", v.number, v.collection)))?;
                if v.number >= row.next_number
                    || row.versions.contains_key(&v.number)
                    || self.version_index.contains_key(&v.id)
                {
                    return Err(bad(format!(
                        "version {} of {} is out of sequence or repeated",
                        v.number, v.collection
                    )));
                }
                self.version_index.insert(v.id, (v.collection.clone(), v.number));
                row.versions.insert(v.number, v);
            }
            CatalogRecord::Pending(p) => {
                if !self.collections.contains_key(&p.collection) || self.pending.contains_key(&p.id) {
                    return Err(bad(format!(
                        "pending upload {} of unknown collection {} or repeated",
                        p.id, p.collection
                    )));
                }
                self.pending.insert(p.id, p);
            }
            CatalogRecord::Session(s) => {
                if self.sessions.insert(s.id.clone(), s).is_some() {
                    return Err(bad("a session twice".into()));
                }
            }
            CatalogRecord::Audit(e) => {
                if self.audit.last().is_some_and(|last| last.seq >= e.seq) {
                    return Err(bad(format!("audit event {} out of order", e.seq)));
                }
                self.audit.push(e);
            }
        }
        Ok(())
    }

    fn push_audit(&mut self, event: &AuditEvent) {
        let mut e = event.clone();
        e.seq = self.audit.last().map_or(1, |last| last.seq + 1);
        self.audit.push(e);
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn create_collection(&self, collection: &Collection, audit: &AuditEvent) -> Result<()> {
        let mut inner = self.lock();
        if inner.collections.contains_key(&collection.id) {
            return Err(Error::CollectionExists { collection: collection.id.clone() });
        }
        inner.collections.insert(
            collection.id.clone(),
            CollectionRow { collection: collection.clone(), next_number: 1, versions: BTreeMap::new() },
        );
        inner.push_audit(audit);
        Ok(())
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        Ok(self.lock().row(id)?.collection.clone())
    }

    async fn list_collections(&self, after: Option<&CollectionId>, limit: usize) -> Result<Vec<Collection>> {
        let inner = self.lock();
        let iter: Box<dyn Iterator<Item = &CollectionRow>> = match after {
            Some(a) => Box::new(
                inner
                    .collections
                    .range::<CollectionId, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                    .map(|(_, r)| r),
            ),
            None => Box::new(inner.collections.values()),
        };
        Ok(iter.take(limit).map(|r| r.collection.clone()).collect())
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected_revision: u64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut inner = self.lock();
        let row = inner.row_mut(&collection.id)?;
        if row.collection.revision != expected_revision {
            return Err(Error::conflict(format!(
                "collection {} is at revision {}, not {expected_revision}",
                collection.id, row.collection.revision
            )));
        }
        row.collection = collection.clone();
        inner.push_audit(audit);
        Ok(())
    }

    async fn delete_collection(&self, id: &CollectionId, audit: &AuditEvent) -> Result<()> {
        let mut inner = self.lock();
        let row = inner.row(id)?;
        let live = row.versions.values().filter(|v| v.state != VersionState::Purged).count();
        let pending = inner.pending.values().filter(|p| &p.collection == id).count();
        if live > 0 || pending > 0 {
            return Err(Error::conflict(format!(
                "collection {id} is not empty: {live} committed or trashed versions, {pending} uploads in flight"
            )));
        }
        let row = inner.collections.remove(id).expect("checked above");
        for v in row.versions.values() {
            inner.version_index.remove(&v.id);
        }
        inner.push_audit(audit);
        Ok(())
    }

    async fn collection_state(&self, id: &CollectionId) -> Result<CollectionState> {
        self.lock().state(id)
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<PendingUpload> {
        let mut inner = self.lock();
        let state = inner.state(&request.collection)?;
        if inner.pending.contains_key(&request.id) || inner.version_index.contains_key(&request.id) {
            return Err(Error::AlreadyExists { what: format!("upload {}", request.id) });
        }
        let pending = protocol::decide_reservation(&state, request)?;
        inner.pending.insert(pending.id, pending.clone());
        Ok(pending)
    }

    async fn renew_lease(&self, id: &VersionId, lease_until: DateTime<Utc>) -> Result<()> {
        let mut inner = self.lock();
        match inner.pending.get_mut(id) {
            Some(p) => {
                p.lease_until = lease_until;
                Ok(())
            }
            None => Err(Error::conflict(format!("upload {id} is not pending any more"))),
        }
    }

    async fn commit(&self, request: &CommitRequest) -> Result<Committed> {
        let mut inner = self.lock();
        let state = inner.state(&request.collection)?;
        let plan = protocol::decide_commit(&state, request)?;
        if let Some(sid) = &request.consume_session {
            match inner.sessions.get(sid) {
                Some(s) if s.is_active(request.now) => {}
                _ => {
                    return Err(Error::conflict(format!(
                        "single-use session {sid} is already used, revoked or unknown"
                    )));
                }
            }
        }
        // Everything is validated; apply.
        if let Some(sid) = &request.consume_session
            && let Some(s) = inner.sessions.get_mut(sid)
        {
            s.revoked_at = Some(request.now);
        }
        inner.pending.remove(&request.id);
        let row = inner.row_mut(&request.collection)?;
        let mut evicted = Vec::with_capacity(plan.evict.len());
        for (id, reason) in &plan.evict {
            if let Some(v) = row.versions.values_mut().find(|v| v.id == *id) {
                v.state = VersionState::Trashed;
                v.trashed_at = Some(request.now);
                v.trash_reason = Some(reason.clone());
                evicted.push(v.clone());
            }
        }
        let version = plan.version;
        row.next_number = version.number + 1;
        row.versions.insert(version.number, version.clone());
        inner.version_index.insert(version.id, (version.collection.clone(), version.number));
        Ok(Committed::new(version, evicted))
    }

    async fn abort(&self, id: &VersionId, condition: AbortCondition) -> Result<AbortOutcome> {
        let mut inner = self.lock();
        if let Some(p) = inner.pending.get(id) {
            if let AbortCondition::ExpiredAt(now) = condition
                && p.is_live(now)
            {
                return Ok(AbortOutcome::StillLive);
            }
            let p = inner.pending.remove(id).expect("present");
            return Ok(AbortOutcome::Released(p));
        }
        if let Some((c, n)) = inner.version_index.get(id)
            && let Some(v) = inner.collections.get(c).and_then(|r| r.versions.get(n))
        {
            return Ok(AbortOutcome::Committed(v.clone()));
        }
        Ok(AbortOutcome::NotFound)
    }

    async fn list_expired_pending(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PendingUpload>> {
        let inner = self.lock();
        let mut expired: Vec<_> = inner.pending.values().filter(|p| !p.is_live(now)).cloned().collect();
        expired.sort_by_key(|p| (p.lease_until, p.id));
        expired.truncate(limit);
        Ok(expired)
    }

    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let inner = self.lock();
        let row = inner.row(collection)?;
        let found = match selector {
            VersionSelector::Latest => row.versions.values().rev().find(|v| v.state == VersionState::Committed),
            VersionSelector::Number(n) => row.versions.get(&n).filter(|v| v.state == VersionState::Committed),
        };
        found
            .cloned()
            .ok_or_else(|| Error::VersionNotFound { collection: collection.clone(), selector: selector.to_string() })
    }

    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        let inner = self.lock();
        let row = inner.row(collection)?;
        let start = query.after.map_or(0, |a| a.saturating_add(1));
        Ok(row
            .versions
            .range(start..)
            .map(|(_, v)| v)
            .filter(|v| {
                v.state == VersionState::Committed || (query.include_trashed && v.state == VersionState::Trashed)
            })
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn trash_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<Version> {
        let mut inner = self.lock();
        let row = inner.row_mut(collection)?;
        let v =
            row.versions.get_mut(&number).filter(|v| v.state == VersionState::Committed).ok_or_else(|| {
                Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() }
            })?;
        v.state = VersionState::Trashed;
        v.trashed_at = Some(now);
        v.trash_reason = Some(reason.to_owned());
        let v = v.clone();
        inner.push_audit(audit);
        Ok(v)
    }

    async fn list_trashed(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Version>> {
        let inner = self.lock();
        let mut out: Vec<Version> = inner
            .collections
            .values()
            .flat_map(|r| r.versions.values())
            .filter(|v| v.state == VersionState::Trashed && v.trashed_at.is_some_and(|t| t < before))
            .cloned()
            .collect();
        out.sort_by_key(|v| (v.trashed_at, v.id));
        out.truncate(limit);
        Ok(out)
    }

    async fn mark_purged(&self, ids: &[VersionId], now: DateTime<Utc>) -> Result<Vec<VersionId>> {
        let mut inner = self.lock();
        let mut marked = Vec::new();
        for id in ids {
            let Some((c, n)) = inner.version_index.get(id).cloned() else { continue };
            if let Some(v) = inner.collections.get_mut(&c).and_then(|r| r.versions.get_mut(&n))
                && v.state == VersionState::Trashed
            {
                v.state = VersionState::Purged;
                v.purged_at = Some(now);
                marked.push(*id);
            }
        }
        Ok(marked)
    }

    async fn restore_version(
        &self,
        collection: &CollectionId,
        number: u64,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<Version> {
        let mut inner = self.lock();
        let state = inner.state(collection)?;
        let row = inner.row_mut(collection)?;
        let not_found = || Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() };
        let v = row.versions.get(&number).filter(|v| v.state == VersionState::Trashed).ok_or_else(not_found)?;
        protocol::decide_restore(&state, v, now)?;
        let v = row.versions.get_mut(&number).ok_or_else(not_found)?;
        v.state = VersionState::Committed;
        v.trashed_at = None;
        v.trash_reason = None;
        let v = v.clone();
        inner.push_audit(audit);
        Ok(v)
    }

    async fn known_object_keys(&self, keys: &[String]) -> Result<Vec<String>> {
        let inner = self.lock();
        let mut known: HashSet<&str> = inner.pending.values().map(|p| p.object_key.as_str()).collect();
        for r in inner.collections.values() {
            known
                .extend(r.versions.values().filter(|v| v.state != VersionState::Purged).map(|v| v.object_key.as_str()));
        }
        Ok(keys.iter().filter(|k| known.contains(k.as_str())).cloned().collect())
    }

    async fn insert_session(&self, session: &Session) -> Result<()> {
        let mut inner = self.lock();
        if inner.sessions.contains_key(&session.id) {
            return Err(Error::AlreadyExists { what: format!("session {}", session.id) });
        }
        inner.sessions.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Session> {
        self.lock().sessions.get(id).cloned().ok_or_else(|| Error::SessionNotFound { session: id.to_string() })
    }

    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let inner = self.lock();
        let mut out: Vec<Session> =
            inner.sessions.values().filter(|s| user.is_none_or(|u| s.user == u)).cloned().collect();
        out.sort_by(|a, b| b.issued_at.cmp(&a.issued_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn revoke_session(&self, id: &SessionId, now: DateTime<Utc>, audit: &AuditEvent) -> Result<Session> {
        let mut inner = self.lock();
        let s = inner.sessions.get_mut(id).ok_or_else(|| Error::SessionNotFound { session: id.to_string() })?;
        s.revoked_at.get_or_insert(now);
        let s = s.clone();
        inner.push_audit(audit);
        Ok(s)
    }

    async fn revoke_user_sessions(&self, user: &str, now: DateTime<Utc>, audit: &AuditEvent) -> Result<u64> {
        let mut inner = self.lock();
        let mut n = 0;
        for s in inner.sessions.values_mut().filter(|s| s.user == user && s.revoked_at.is_none()) {
            s.revoked_at = Some(now);
            n += 1;
        }
        inner.push_audit(audit);
        Ok(n)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        self.lock().push_audit(event);
        Ok(())
    }

    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        let inner = self.lock();
        let after = after.unwrap_or(0);
        let start = inner.audit.partition_point(|e| e.seq <= after);
        Ok(inner.audit[start..].iter().take(limit).cloned().collect())
    }

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        let inner = self.lock();
        let mut records = vec![CatalogRecord::header(crate::clock::to_micros(Utc::now()))];
        for row in inner.collections.values() {
            records
                .push(CatalogRecord::Collection { collection: row.collection.clone(), next_number: row.next_number });
        }
        for row in inner.collections.values() {
            records.extend(row.versions.values().cloned().map(CatalogRecord::Version));
        }
        records.extend(inner.pending.values().cloned().map(CatalogRecord::Pending));
        records.extend(inner.sessions.values().cloned().map(CatalogRecord::Session));
        records.extend(inner.audit.iter().cloned().map(CatalogRecord::Audit));
        Ok(futures::stream::iter(records.into_iter().map(Ok)).boxed())
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        if !self.lock().is_empty() {
            return Err(Error::conflict("import needs an empty catalog"));
        }
        let mut records = records;
        let header = records.try_next().await?.ok_or_else(|| Error::invalid("catalog snapshot", "it is empty"))?;
        header.check_header()?;
        let mut fresh = Inner::default();
        let mut summary = ImportSummary::default();
        while let Some(record) = records.try_next().await? {
            summary.count(&record);
            fresh.load(record)?;
        }
        let mut inner = self.lock();
        if !inner.is_empty() {
            return Err(Error::conflict("import needs an empty catalog"));
        }
        *inner = fresh;
        Ok(summary)
    }
}
