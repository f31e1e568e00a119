//! [`MemoryCatalog`]: the catalog in a mutex, always compiled in, for docs, tests and examples.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use crate::audit::{AuditEvent, AuditHead, LogCursor, cursor_held, cursor_moved};
use crate::catalog::{
    Catalog, CatalogRecord, Decide, ImportSummary, KeyClass, PendingFilter, RepositoryInfo, Undescribed, VersionQuery,
};
use crate::error::{Error, Result};
use crate::id::{CollectionId, RepositoryId, SessionId, VersionId};
use crate::protocol::{
    CollectionState, Counters, ImportCheck, LoadedState, Mutation, StateQuery, VersionRange, VersionRow,
};
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Tombstone, TombstoneKind, Version, VersionSelector, VersionState};

/// A catalog held in memory: complete and atomic (one mutex), gone when dropped.
///
/// ```
/// use backup_core::MemoryCatalog;
/// use backup_core::catalog::Catalog;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let catalog = MemoryCatalog::new();
/// assert!(catalog.list_collections(None, 10).await?.is_empty());
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    repository: Option<RepositoryId>,
    collections: BTreeMap<CollectionId, CollectionRow>,
    /// Committed, trashed and purged versions: where to find them.
    version_index: HashMap<VersionId, (CollectionId, u64)>,
    pending: BTreeMap<VersionId, PendingUpload>,
    tombstones: BTreeMap<String, Tombstone>,
    sessions: BTreeMap<SessionId, Session>,
    audit: Vec<AuditEvent>,
    audit_checkpoint: Option<AuditHead>,
    cursors: BTreeMap<String, LogCursor>,
    /// Versions whose descriptions are not written yet, with their marks.
    undescribed: BTreeMap<VersionId, u64>,
}

#[derive(Debug)]
struct CollectionRow {
    collection: Collection,
    counters: Counters,
    versions: BTreeMap<u64, Version>,
    /// The numbers of the committed versions: ranges of them cost what they hold, not the
    /// history.
    committed: BTreeSet<u64>,
}

impl CollectionRow {
    fn new(collection: Collection) -> Self {
        CollectionRow { collection, counters: Counters::empty(), versions: BTreeMap::new(), committed: BTreeSet::new() }
    }
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every step checks all of its writes before it applies any, so a panic cannot leave
        // a half applied change behind: a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn mismatch(m: &Mutation) -> Error {
    Error::internal(format!("memory catalog: {m:?} matches no row"))
}

impl Inner {
    fn row(&self, id: &CollectionId) -> Result<&CollectionRow> {
        self.collections.get(id).ok_or_else(|| Error::CollectionNotFound { collection: id.clone() })
    }

    fn version(&self, id: &VersionId) -> Option<&Version> {
        let (c, n) = self.version_index.get(id)?;
        self.collections.get(c)?.versions.get(n)
    }

    fn load(&self, query: &StateQuery) -> LoadedState {
        let collection = query.collection.as_ref().and_then(|q| {
            let row = self.collections.get(&q.id)?;
            let range = q.committed.resolve(&row.collection, &row.counters);
            let numbers: Vec<u64> = match range {
                VersionRange::Oldest(n) => row.committed.iter().take(n as usize).copied().collect(),
                VersionRange::Newest(n) => {
                    let mut v: Vec<u64> = row.committed.iter().rev().take(n as usize).copied().collect();
                    v.reverse();
                    v
                }
                VersionRange::All => row.committed.iter().copied().collect(),
                _ => Vec::new(),
            };
            let committed = numbers.iter().filter_map(|n| row.versions.get(n).cloned()).collect();
            let mut wanted: Vec<u64> = q.numbers.clone();
            wanted.sort_unstable();
            wanted.dedup();
            let by_number = wanted.iter().filter_map(|n| row.versions.get(n).cloned()).collect();
            let pending = self.pending.values().filter(|p| p.collection == q.id).cloned().collect();
            Some(CollectionState::new(row.collection.clone(), row.counters, pending, committed, by_number))
        });
        let versions = query
            .versions
            .iter()
            .filter_map(|id| match self.pending.get(id) {
                Some(p) => Some(VersionRow::Pending(p.clone())),
                None => self.version(id).cloned().map(VersionRow::Version),
            })
            .collect();
        let mut sessions: Vec<Session> =
            query.sessions.iter().filter_map(|id| self.sessions.get(id).cloned()).collect();
        if let Some(user) = &query.sessions_of {
            sessions.extend(
                self.sessions
                    .values()
                    .filter(|s| &s.user == user && s.revoked_at.is_none() && !query.sessions.contains(&s.id))
                    .cloned(),
            );
        }
        let repository = if query.repository { self.repository } else { None };
        LoadedState::new(collection, versions, sessions, repository)
    }

    /// Checks every mutation of a step against the state and the step's earlier writes;
    /// nothing is applied unless all pass.
    fn check(&self, mutations: &[Mutation]) -> Result<()> {
        let mut created: HashSet<&CollectionId> = HashSet::new();
        let mut ids: HashSet<VersionId> = HashSet::new();
        let mut numbers: HashSet<(&CollectionId, u64)> = HashSet::new();
        let mut sessions: HashSet<&SessionId> = HashSet::new();
        let exists = |c: &CollectionId, created: &HashSet<&CollectionId>| {
            self.collections.contains_key(c) || created.contains(c)
        };
        for m in mutations {
            let ok = match m {
                Mutation::CreateCollection(c) => {
                    if exists(&c.id, &created) {
                        return Err(Error::CollectionExists { collection: c.id.clone() });
                    }
                    created.insert(&c.id);
                    true
                }
                Mutation::UpdateCollection(c) => exists(&c.id, &created),
                Mutation::DeleteCollection { id, .. } => exists(id, &created),
                Mutation::SetCounters { collection, .. } => exists(collection, &created),
                Mutation::InsertPending(p) => {
                    if self.pending.contains_key(&p.id) || self.version_index.contains_key(&p.id) || !ids.insert(p.id) {
                        return Err(Error::AlreadyExists { what: format!("upload {}", p.id) });
                    }
                    exists(&p.collection, &created)
                }
                Mutation::UpdatePending(p) => self.pending.contains_key(&p.id),
                Mutation::RemovePending(id) => self.pending.contains_key(id),
                Mutation::CommitVersion(v) => {
                    let taken = self.collections.get(&v.collection).is_some_and(|r| r.versions.contains_key(&v.number));
                    if taken || !numbers.insert((&v.collection, v.number)) {
                        return Err(Error::conflict(format!("version {} of {} exists", v.number, v.collection)));
                    }
                    self.pending.get(&v.id).is_some_and(|p| p.collection == v.collection)
                }
                Mutation::UpdateVersion(v) => self.version(&v.id).is_some_and(|old| old.collection == v.collection),
                Mutation::InsertVersion(v) => {
                    let taken = self.collections.get(&v.collection).is_some_and(|r| r.versions.contains_key(&v.number));
                    if self.version_index.contains_key(&v.id)
                        || self.pending.contains_key(&v.id)
                        || !ids.insert(v.id)
                        || taken
                        || !numbers.insert((&v.collection, v.number))
                    {
                        return Err(Error::AlreadyExists {
                            what: format!("version {} of {} ({})", v.number, v.collection, v.id),
                        });
                    }
                    exists(&v.collection, &created)
                }
                Mutation::MarkUndescribed { id, .. } => {
                    // Committed in this step (still pending in the state), inserted in it, or
                    // there already.
                    self.version_index.contains_key(id) || self.pending.contains_key(id) || ids.contains(id)
                }
                Mutation::ClearUndescribed { collection, .. } => exists(collection, &created),
                Mutation::InsertTombstone(_) | Mutation::ForgetTombstone(_) => true,
                Mutation::InsertSession(s) => {
                    if self.sessions.contains_key(&s.id) || !sessions.insert(&s.id) {
                        return Err(Error::AlreadyExists { what: format!("session {}", s.id) });
                    }
                    true
                }
                Mutation::RevokeSession { id, .. } => self.sessions.contains_key(id) || sessions.contains(id),
                Mutation::DeleteSessionsExpiredBefore(_) => true,
                Mutation::AppendAudit(e) => e.seq == 0 || self.audit_head().seq < e.seq,
                Mutation::PruneAudit { .. } => true,
                Mutation::SetAuditCheckpoint(_) => self.audit.is_empty() && self.audit_checkpoint.is_none(),
                Mutation::ClaimCursor { name, owner, now, .. } => match self.cursors.get(name) {
                    Some(c) if !c.claimable_by(owner, *now) => {
                        return Err(cursor_held(c));
                    }
                    _ => true,
                },
                Mutation::AdvanceCursor { name, owner, from, .. } => match self.cursors.get(name) {
                    Some(c) if c.owner.as_deref() == Some(owner.as_str()) && c.seq == *from => true,
                    _ => return Err(cursor_moved(name)),
                },
                Mutation::SetCursor(_) => true,
                Mutation::SetRepository(id) => {
                    if let Some(current) = self.repository
                        && current != *id
                    {
                        return Err(Error::conflict(format!("the catalog belongs to repository {current}, not {id}")));
                    }
                    true
                }
            };
            if !ok {
                return Err(mismatch(m));
            }
        }
        Ok(())
    }

    /// Applies a checked mutation.
    fn apply(&mut self, m: Mutation) {
        match m {
            Mutation::CreateCollection(c) => {
                self.collections.insert(c.id.clone(), CollectionRow::new(c));
            }
            Mutation::UpdateCollection(c) => {
                if let Some(row) = self.collections.get_mut(&c.id) {
                    row.collection = c;
                }
            }
            Mutation::DeleteCollection { id, at } => {
                if let Some(row) = self.collections.remove(&id) {
                    for v in row.versions.into_values() {
                        self.version_index.remove(&v.id);
                        self.undescribed.remove(&v.id);
                        if v.state == VersionState::Trashed {
                            let t = Tombstone::new(v.object_key, id.clone(), v.id, TombstoneKind::Purged, at);
                            self.tombstones.insert(t.object_key.clone(), t);
                        }
                    }
                }
                self.pending.retain(|_, p| p.collection != id);
            }
            Mutation::SetCounters { collection, counters } => {
                if let Some(row) = self.collections.get_mut(&collection) {
                    row.counters = counters;
                }
            }
            Mutation::InsertPending(p) | Mutation::UpdatePending(p) => {
                self.pending.insert(p.id, p);
            }
            Mutation::RemovePending(id) => {
                self.pending.remove(&id);
            }
            Mutation::CommitVersion(v) => {
                self.pending.remove(&v.id);
                self.put_version(v);
            }
            Mutation::UpdateVersion(v) | Mutation::InsertVersion(v) => self.put_version(v),
            Mutation::MarkUndescribed { id, mark } => {
                self.undescribed.insert(id, mark);
            }
            Mutation::ClearUndescribed { collection, id, mark } => {
                let of_collection = self.version_index.get(&id).is_some_and(|(c, _)| *c == collection);
                if of_collection && self.undescribed.get(&id) == Some(&mark) {
                    self.undescribed.remove(&id);
                }
            }
            Mutation::InsertTombstone(t) => {
                self.tombstones.insert(t.object_key.clone(), t);
            }
            Mutation::ForgetTombstone(key) => {
                self.tombstones.remove(&key);
            }
            Mutation::InsertSession(s) => {
                self.sessions.insert(s.id.clone(), s);
            }
            Mutation::RevokeSession { id, at } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.revoked_at.get_or_insert(at);
                }
            }
            Mutation::DeleteSessionsExpiredBefore(before) => self.sessions.retain(|_, s| s.expires_at >= before),
            Mutation::AppendAudit(e) => {
                // `check` made sure the number follows the head.
                if let Ok(e) = e.chained(&self.audit_head()) {
                    self.audit.push(e);
                }
            }
            Mutation::PruneAudit { through } => {
                let cut = self.audit.partition_point(|e| e.seq <= through);
                if cut > 0 {
                    self.audit_checkpoint = Some(self.audit[cut - 1].head_for_append());
                    self.audit.drain(..cut);
                }
            }
            Mutation::SetAuditCheckpoint(head) => self.audit_checkpoint = Some(head),
            Mutation::ClaimCursor { name, owner, start_at, until, .. } => {
                let c = self.cursors.entry(name.clone()).or_insert_with(|| LogCursor::new(name, start_at));
                c.owner = Some(owner);
                c.lease_until = Some(until);
            }
            Mutation::AdvanceCursor { name, to, state, .. } => {
                if let Some(c) = self.cursors.get_mut(&name) {
                    c.seq = to;
                    c.state = state;
                }
            }
            Mutation::SetCursor(c) => {
                self.cursors.insert(c.name.clone(), c);
            }
            Mutation::SetRepository(id) => self.repository = Some(id),
        }
    }

    fn put_version(&mut self, v: Version) {
        if let Some(row) = self.collections.get_mut(&v.collection) {
            if v.state == VersionState::Committed {
                row.committed.insert(v.number);
            } else {
                row.committed.remove(&v.number);
            }
            self.version_index.insert(v.id, (v.collection.clone(), v.number));
            row.versions.insert(v.number, v);
        }
    }

    /// The last event's head, else the checkpoint, else the genesis.
    fn audit_head(&self) -> AuditHead {
        match self.audit.last() {
            Some(e) => e.head_for_append(),
            None => self.audit_checkpoint.unwrap_or(AuditHead::GENESIS),
        }
    }

    fn is_empty(&self) -> bool {
        self.repository.is_none()
            && self.collections.is_empty()
            && self.pending.is_empty()
            && self.sessions.is_empty()
            && self.audit.is_empty()
            && self.audit_checkpoint.is_none()
            && self.cursors.is_empty()
            && self.tombstones.is_empty()
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    fn location(&self) -> String {
        "memory catalog".to_owned()
    }

    async fn transact(&self, query: StateQuery, decide: Decide) -> Result<()> {
        let mut inner = self.lock();
        let state = inner.load(&query);
        let mutations = decide(&state)?;
        inner.check(&mutations)?;
        for m in mutations {
            inner.apply(m);
        }
        Ok(())
    }

    async fn load(&self, query: StateQuery) -> Result<LoadedState> {
        Ok(self.lock().load(&query))
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

    async fn get_version(&self, collection: &CollectionId, selector: VersionSelector) -> Result<Version> {
        let inner = self.lock();
        let row = inner.row(collection)?;
        let number = match selector {
            VersionSelector::Latest => row.committed.last().copied(),
            VersionSelector::Number(n) => row.committed.contains(&n).then_some(n),
        };
        number
            .and_then(|n| row.versions.get(&n))
            .cloned()
            .ok_or_else(|| Error::VersionNotFound { collection: collection.clone(), selector: selector.to_string() })
    }

    async fn list_versions(&self, collection: &CollectionId, query: &VersionQuery) -> Result<Vec<Version>> {
        let inner = self.lock();
        let row = inner.row(collection)?;
        let start = query.after.map_or(0, |a| a.saturating_add(1));
        let found: Vec<Version> = if query.include_trashed {
            row.versions
                .range(start..)
                .map(|(_, v)| v)
                .filter(|v| matches!(v.state, VersionState::Committed | VersionState::Trashed))
                .take(query.limit)
                .cloned()
                .collect()
        } else {
            row.committed.range(start..).take(query.limit).filter_map(|n| row.versions.get(n).cloned()).collect()
        };
        Ok(found)
    }

    async fn list_pending(&self, filter: &PendingFilter, limit: usize) -> Result<Vec<PendingUpload>> {
        let inner = self.lock();
        let mut found: Vec<_> = inner
            .pending
            .values()
            .filter(|p| filter.expired_at.is_none_or(|now| !p.is_live(now)))
            .filter(|p| filter.owner.as_ref().is_none_or(|o| p.owner.as_ref() == Some(o)))
            .cloned()
            .collect();
        found.sort_by_key(|p| (p.lease_until, p.id));
        found.truncate(limit);
        Ok(found)
    }

    async fn list_trashed(&self, before: Timestamp, limit: usize) -> Result<Vec<Version>> {
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

    async fn list_tombstones(
        &self,
        collection: Option<&CollectionId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>> {
        let inner = self.lock();
        let range = match after {
            Some(a) => inner.tombstones.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => inner.tombstones.range::<str, _>(..),
        };
        Ok(range
            .map(|(_, t)| t)
            .filter(|t| collection.is_none_or(|c| &t.collection == c))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn list_undescribed(&self, after: Option<VersionId>, limit: usize) -> Result<Vec<Undescribed>> {
        let inner = self.lock();
        let range = match after {
            Some(a) => inner.undescribed.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => inner.undescribed.range(..),
        };
        Ok(range
            .filter_map(|(id, mark)| inner.version(id).map(|v| Undescribed::new(v.clone(), *mark)))
            .take(limit)
            .collect())
    }

    async fn classify_object_keys(&self, keys: &[String]) -> Result<Vec<KeyClass>> {
        let inner = self.lock();
        let mut live: HashSet<&str> = inner.pending.values().map(|p| p.object_key.as_str()).collect();
        let mut purged: HashSet<&str> = HashSet::new();
        for v in inner.collections.values().flat_map(|r| r.versions.values()) {
            if v.state == VersionState::Purged {
                purged.insert(v.object_key.as_str());
            } else {
                live.insert(v.object_key.as_str());
            }
        }
        Ok(keys
            .iter()
            .map(|k| {
                if live.contains(k.as_str()) {
                    KeyClass::Live
                } else if purged.contains(k.as_str()) || inner.tombstones.contains_key(k) {
                    KeyClass::Garbage
                } else {
                    KeyClass::Unknown
                }
            })
            .collect())
    }

    async fn repository(&self) -> Result<RepositoryInfo> {
        let inner = self.lock();
        let holds = !inner.version_index.is_empty() || !inner.pending.is_empty();
        Ok(RepositoryInfo::new(inner.repository, holds))
    }

    async fn list_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let inner = self.lock();
        let mut out: Vec<Session> =
            inner.sessions.values().filter(|s| user.is_none_or(|u| s.user == u)).cloned().collect();
        out.sort_by(|a, b| b.issued_at.cmp(&a.issued_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn list_audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEvent>> {
        let inner = self.lock();
        let after = after.unwrap_or(0);
        let start = inner.audit.partition_point(|e| e.seq <= after);
        Ok(inner.audit[start..].iter().take(limit).cloned().collect())
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditHead>> {
        Ok(self.lock().audit_checkpoint)
    }

    async fn audit_head(&self) -> Result<AuditHead> {
        Ok(self.lock().audit_head())
    }

    async fn list_cursors(&self) -> Result<Vec<LogCursor>> {
        Ok(self.lock().cursors.values().cloned().collect())
    }

    async fn export(&self) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
        let inner = self.lock();
        let mut records = vec![CatalogRecord::header(chrono::Utc::now())];
        records.extend(inner.repository.map(|id| CatalogRecord::Repository { id }));
        for row in inner.collections.values() {
            records.push(CatalogRecord::Collection {
                collection: row.collection.clone(),
                next_number: row.counters.next_number,
            });
        }
        for row in inner.collections.values() {
            records.extend(row.versions.values().cloned().map(CatalogRecord::Version));
        }
        records.extend(inner.pending.values().cloned().map(CatalogRecord::Pending));
        records.extend(inner.tombstones.values().cloned().map(CatalogRecord::Tombstone));
        records.extend(inner.sessions.values().cloned().map(CatalogRecord::Session));
        records.extend(inner.cursors.values().cloned().map(CatalogRecord::Cursor));
        records.extend(inner.audit_checkpoint.map(CatalogRecord::AuditCheckpoint));
        records.extend(inner.audit.iter().cloned().map(CatalogRecord::Audit));
        Ok(futures::stream::iter(records.into_iter().map(Ok)).boxed())
    }

    async fn import(&self, records: BoxStream<'static, Result<CatalogRecord>>) -> Result<ImportSummary> {
        if !self.lock().is_empty() {
            return Err(Error::conflict("import needs an empty catalog"));
        }
        let mut records = records;
        let mut check = ImportCheck::new();
        let mut fresh = Inner::default();
        while let Some(record) = records.try_next().await? {
            let mutations = check.record(record)?;
            fresh.check(&mutations)?;
            for m in mutations {
                fresh.apply(m);
            }
        }
        let (counters, summary) = check.finish()?;
        for m in counters {
            fresh.apply(m);
        }
        let mut inner = self.lock();
        if !inner.is_empty() {
            return Err(Error::conflict("import needs an empty catalog"));
        }
        *inner = fresh;
        Ok(summary)
    }
}
