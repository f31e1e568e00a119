//! Copies of versions in replicas ([`crate::replica`]): the replication runs, their status,
//! and what the primary takes back from a replica (healing, a download's fallback, restoring
//! a version a replica still holds).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::audit::AuditEvent;
use crate::authz::Actor;
use crate::catalog::CatalogExt;
use crate::engine::download::verified;
use crate::engine::last_write::LastWrite;
use crate::engine::part_writer::PartWriter;
use crate::engine::scrub::Throttle;
use crate::engine::{Engine, UploadOptions, chrono_duration};
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::protocol::{CollectionQuery, StateQuery};
use crate::replica::{
    CatchUp, Replica, ReplicaState, ReplicaStatus, ReplicationOptions, ReplicationRun, committed_size,
};
use crate::spec::CollectionSpec;
use crate::store::{REPOSITORY_MARKER, description_key};
use crate::version::{Version, VersionState};

/// Log events read per page when counting a replica's lag.
const STATUS_PAGE: usize = 1000;

/// Pages of log events read at most when counting a replica's lag (beyond, the count is a
/// lower bound).
const STATUS_PAGES: usize = 50;

/// Why a copy failed.
#[derive(Debug)]
enum CopyError {
    /// The destination (or the source store itself) could not be written or read: nothing is
    /// known about the version; the queue waits.
    Blocked(String),
    /// The source's bytes are missing or do not match the recorded digest: this version
    /// cannot be copied from there now.
    Damaged(String),
}

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copied {
    /// Copied, this many bytes.
    Bytes(u64),
    /// It was there already.
    AlreadyThere,
    /// It left the primary before its turn.
    Skipped,
}

/// Where a copy reads from.
enum Source<'a> {
    /// The engine's own store.
    Primary,
    /// Another store (a replica, for a repair).
    Store(&'a Arc<dyn ObjectStore>),
}

/// Renews a replica's cursor lease while a run lasts; stops when dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// The replicas, in the order they were added.
    pub fn replicas(&self) -> Arc<Vec<Replica>> {
        self.inner.replicas.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the replicas (a host's configuration changed). A replica that goes keeps its
    /// cursor: added again under its name, it goes on where it stopped.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for two replicas of one name, or replicas without the event log.
    pub fn set_replicas(&self, replicas: Vec<Replica>) -> Result<()> {
        crate::replica::check_replicas(&replicas, self.inner.config.event_log)?;
        *self.inner.replicas.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(replicas);
        Ok(())
    }

    fn replica(&self, name: &str) -> Result<Replica> {
        self.replicas().iter().find(|r| r.name() == name).cloned().ok_or_else(|| {
            let shown: String = name.chars().take(80).collect();
            Error::invalid("replica", format!("there is no replica called {shown:?}"))
        })
    }

    fn replicas_of(&self, collection: &CollectionId) -> Vec<Replica> {
        self.replicas().iter().filter(|r| r.covers(collection)).cloned().collect()
    }

    /// Runs one batch of replication to the replica `name`, for the instance `owner` (who
    /// holds the replica's log cursor meanwhile; another instance's run is refused until its
    /// lease ends):
    ///
    /// 1. copies whose earlier attempt failed, when their back-off is over;
    /// 2. for a replica that starts (or whose queue was pruned before it read it), a walk over
    ///    the catalog's committed versions, copying those it lacks;
    /// 3. the versions committed since the last run, from the audit log (`version.commit`);
    /// 4. versions purged from the primary longer ago than the replica's delay, removed from it.
    ///
    /// Each copy streams the primary's object through the digest check into the replica (a
    /// multipart upload completed only when every byte matched, so nothing partial is ever
    /// visible there), then writes the version's description next to it. A version already
    /// there with its size and description is not copied again. When the replica (or the
    /// primary store) fails, the run stops and the queue stays where it is: the next run
    /// goes on from there. Progress is recorded in the cursor at the end of the run.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad options or an unknown replica; [`Error::Conflict`] when
    /// another instance holds the replica's cursor; [`Error::RepositoryMismatch`] when the
    /// replica belongs to another repository; the catalog's.
    pub async fn replicate(&self, name: &str, owner: &str, options: &ReplicationOptions) -> Result<ReplicationRun> {
        options.check()?;
        let replica = self.replica(name)?;
        let repository = self.open_repository().await?;
        let cursor_name = replica.cursor_name();
        let now = self.now();
        let lease = chrono_duration(options.lease);
        let head = self.audit_head().await?.seq;
        let cursor = self.inner.catalog.claim_cursor(&cursor_name, owner, head, now, now + lease).await?;
        let _renewal = self.renew_cursor(cursor_name.clone(), owner.to_owned(), options.lease);
        let (mut state, _) = ReplicaState::parse(&cursor.state, cursor.seq);
        let before = state.to_text();
        let mut seq = cursor.seq;
        // Events pruned before this replica read them: catch up over the catalog instead.
        if let Some(checkpoint) = self.inner.catalog.audit_checkpoint().await?
            && checkpoint.seq > seq
        {
            state.catch_up.get_or_insert_with(CatchUp::default);
            seq = checkpoint.seq;
            state.deletes_after = state.deletes_after.max(checkpoint.seq);
        }
        // A catch-up lags from when it began, even while the replica cannot be reached.
        if let Some(catch_up) = state.catch_up.as_mut() {
            catch_up.started_at.get_or_insert(now);
        }
        let mut run = ReplicationRun::default();
        let mut events = Vec::new();
        let stopped = match self.check_replica_marker(&replica, repository).await {
            Ok(()) => self.replicate_batch(&replica, options, &mut state, &mut seq, &mut run, &mut events).await,
            Err(e @ Error::RepositoryMismatch { .. }) => return Err(e),
            Err(e) => Some(format!("replica {name}: {e}")),
        };
        match stopped {
            Some(reason) => {
                let reason = if reason.starts_with(&format!("replica {name}")) {
                    reason
                } else {
                    format!("replica {name}: {reason}")
                };
                if state.unavailable.is_none() {
                    events.push(AuditEvent::new(now, "engine", "replica.unavailable").with_detail(reason.clone()));
                }
                state.unavailable_since.get_or_insert(now);
                state.unavailable = Some(reason.clone());
                run.unavailable = Some(reason);
            }
            None => {
                state.unavailable = None;
                state.unavailable_since = None;
            }
        }
        let after = state.to_text();
        if seq != cursor.seq || after != before || !events.is_empty() {
            self.inner.catalog.advance_cursor(&cursor_name, owner, cursor.seq, seq, &after, events).await?;
        }
        Ok(run)
    }

    /// Keeps a replica's cursor lease while a run lasts.
    fn renew_cursor(&self, name: String, owner: String, lease: std::time::Duration) -> Renewal {
        let engine = self.clone();
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 2).await;
                let now = engine.now();
                let Ok(head) = engine.audit_head().await else { continue };
                if let Err(e) =
                    engine.inner.catalog.claim_cursor(&name, &owner, head.seq, now, now + chrono_duration(lease)).await
                {
                    tracing::warn!(cursor = %name, error = %e, "the replication lost its cursor's lease");
                    return;
                }
            }
        }))
    }

    /// Writes the repository marker into a replica that has none (a rebuild from the replica
    /// needs it); refuses a replica holding another repository's.
    async fn check_replica_marker(&self, replica: &Replica, repository: crate::RepositoryId) -> Result<()> {
        let key = self.inner.key_prefix.clone().join(REPOSITORY_MARKER);
        let store = replica.store();
        match store.get(&key).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| Error::store("get", &key, e))?;
                let theirs = crate::engine::repository::parse_marker(&bytes);
                if theirs.is_some_and(|id| id != repository) {
                    return Err(Error::RepositoryMismatch {
                        catalog: self.inner.catalog.location(),
                        store: format!("replica {} ({})", replica.name(), replica.location_text()),
                        reason: "the replica holds another repository's marker; nothing is written to it".to_owned(),
                    });
                }
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => {
                let ours = self.inner.store.get(&key).await.map_err(|e| Error::store("get", &key, e))?;
                let bytes = ours.bytes().await.map_err(|e| Error::store("get", &key, e))?;
                let put = store.put_opts(&key, PutPayload::from(bytes), PutOptions::from(PutMode::Create)).await;
                match put {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                    Err(e) => Err(Error::store("put", &key, e)),
                }
            }
            Err(e) => Err(Error::store("get", &key, e)),
        }
    }

    /// The run's work; `Some(reason)` when it stopped because a store failed.
    async fn replicate_batch(
        &self,
        replica: &Replica,
        options: &ReplicationOptions,
        state: &mut ReplicaState,
        seq: &mut u64,
        run: &mut ReplicationRun,
        events: &mut Vec<AuditEvent>,
    ) -> Option<String> {
        let now = self.now();
        let throttle = Throttle::new(options.bytes_per_second);
        let throttle = throttle.as_ref();
        let name = replica.name();
        let mut fail = |state: &mut ReplicaState, v: &Version, error: String| {
            if !state.failed.iter().any(|f| f.collection == v.collection && f.number == v.number) {
                events.push(
                    AuditEvent::new(now, "engine", "replica.failed")
                        .with_collection(&v.collection)
                        .with_version(v.number)
                        .with_detail(format!("replica {name}: {error}")),
                );
            }
            state.fail(&v.collection, v.number, v.size, error, now);
        };

        // 1. Earlier failures whose back-off is over.
        let due: Vec<_> =
            state.failed.iter().filter(|f| f.next_attempt() <= now).take(options.batch).cloned().collect();
        let found = match self.versions_named(due.iter().map(|f| (f.collection.clone(), f.number))).await {
            Ok(found) => found,
            Err(e) => return Some(e.to_string()),
        };
        for f in due {
            let version = found.get(&(f.collection.clone(), f.number));
            let outcome = match version {
                Some((v, spec)) => self.copy_to_replica(replica, v, spec, throttle).await,
                None => Ok(Copied::Skipped),
            };
            match outcome {
                Ok(copied) => {
                    state.failed.retain(|g| !(g.collection == f.collection && g.number == f.number));
                    count(run, state, copied);
                }
                Err(CopyError::Damaged(e)) => {
                    if let Some((v, _)) = version {
                        fail(state, v, e);
                    }
                    run.failed += 1;
                }
                Err(CopyError::Blocked(e)) => return Some(e),
            }
        }

        // 2. A catch-up over the catalog.
        if let Some(mut catch_up) = state.catch_up.clone() {
            catch_up.started_at.get_or_insert(now);
            let versions = match self.versions_after(replica, catch_up.after.as_ref(), options.batch).await {
                Ok(v) => v,
                Err(e) => return Some(e.to_string()),
            };
            let done = versions.len() < options.batch;
            // Collected first: a stream over a borrowing closure is not `Send` for every
            // lifetime, which a spawned caller needs.
            let copies: Vec<_> =
                versions.iter().map(|(v, spec)| self.copy_to_replica(replica, v, spec, throttle).boxed()).collect();
            let results = in_order(copies, options.workers).await;
            for ((v, _), outcome) in versions.iter().zip(results) {
                match outcome {
                    Ok(copied) => count(run, state, copied),
                    Err(CopyError::Damaged(e)) => {
                        fail(state, v, e);
                        run.failed += 1;
                    }
                    Err(CopyError::Blocked(e)) => {
                        state.catch_up = Some(catch_up);
                        return Some(e);
                    }
                }
                catch_up.after = Some((v.collection.clone(), v.number));
            }
            if done {
                state.catch_up = None;
            } else {
                state.catch_up = Some(catch_up);
                run.more = true;
                return None;
            }
        }

        // 3. Versions committed since the last run.
        let page = match self.inner.catalog.list_audit(Some(*seq), options.batch).await {
            Ok(page) => page,
            Err(e) => return Some(e.to_string()),
        };
        run.more |= page.len() == options.batch;
        // The versions the page commits, read in one catalog call per collection.
        let committed = page.iter().filter_map(|e| match (&e.collection, e.version) {
            (Some(c), Some(n)) if e.action == "version.commit" && replica.covers(c) => Some((c.clone(), n)),
            _ => None,
        });
        let found = match self.versions_named(committed).await {
            Ok(found) => found,
            Err(e) => return Some(e.to_string()),
        };
        let work: Vec<_> = page
            .iter()
            .map(|e| {
                let version = match (&e.collection, e.version) {
                    (Some(c), Some(n)) if e.action == "version.commit" => found.get(&(c.clone(), n)),
                    _ => None,
                };
                async move {
                    match version {
                        Some((v, spec)) => (Some(v.clone()), self.copy_to_replica(replica, v, spec, throttle).await),
                        None => (None, Ok(Copied::Skipped)),
                    }
                }
                .boxed()
            })
            .collect();
        let results = in_order(work, options.workers).await;
        for (e, (version, outcome)) in page.iter().zip(results) {
            match outcome {
                Ok(copied) => {
                    if e.action == "version.commit" {
                        count(run, state, copied);
                    }
                }
                Err(CopyError::Damaged(error)) => {
                    if let Some(v) = &version {
                        fail(state, v, error);
                    }
                    run.failed += 1;
                }
                Err(CopyError::Blocked(error)) => return Some(error),
            }
            *seq = e.seq;
        }

        // 4. Deletions whose delay is over.
        self.delete_late(replica, options, state, *seq, run).await
    }

    /// Removes from the replica the versions purged from the primary longer ago than its
    /// delay, in the log's order, up to `through`.
    async fn delete_late(
        &self,
        replica: &Replica,
        options: &ReplicationOptions,
        state: &mut ReplicaState,
        through: u64,
        run: &mut ReplicationRun,
    ) -> Option<String> {
        let delay = chrono_duration(replica.deletion_delay().unwrap_or(self.inner.config.trash_retention));
        let now = self.now();
        if state.deletes_after >= through {
            return None;
        }
        let page = match self.inner.catalog.list_audit(Some(state.deletes_after), options.batch).await {
            Ok(page) => page,
            Err(e) => return Some(e.to_string()),
        };
        for e in page.iter().take_while(|e| e.seq <= through) {
            // A purge, or an eviction that purged at once (no trash retention).
            if let (Some(c), Some(n)) = (&e.collection, e.version)
                && (e.action == "version.purge" || e.action == "version.evict")
                && replica.covers(c)
            {
                if e.at + delay > now {
                    return None;
                }
                match self.version_in_any_state(c, n).await {
                    Ok(Some(v)) if v.state == VersionState::Purged => {
                        if let Err(error) = self.delete_from_replica(replica, &v).await {
                            return Some(error);
                        }
                        run.deleted += 1;
                        state.deleted += 1;
                    }
                    Ok(_) => {}
                    Err(error) => return Some(error.to_string()),
                }
            }
            state.deletes_after = e.seq;
        }
        None
    }

    async fn delete_from_replica(&self, replica: &Replica, v: &Version) -> std::result::Result<(), String> {
        let key = Path::from(v.object_key.as_str());
        let description = description_key(key.as_ref());
        for (store, key) in [(replica.store(), key), (replica.descriptions_ref(), description)] {
            match store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(format!("replica {}: delete {key}: {e}", replica.name())),
            }
        }
        Ok(())
    }

    /// A version by number in any state but pending; `None` when it (or its collection) is
    /// gone.
    async fn version_in_any_state(&self, collection: &CollectionId, number: u64) -> Result<Option<Version>> {
        let key = (collection.clone(), number);
        Ok(self.versions_named([key.clone()]).await?.remove(&key).map(|(v, _)| v))
    }

    /// The versions named (collection, number), in any state but pending, with their
    /// collection's spec: one catalog read per collection. Those gone are left out.
    async fn versions_named(
        &self,
        named: impl IntoIterator<Item = (CollectionId, u64)>,
    ) -> Result<HashMap<(CollectionId, u64), (Version, CollectionSpec)>> {
        let mut by_collection: BTreeMap<CollectionId, Vec<u64>> = BTreeMap::new();
        for (c, n) in named {
            by_collection.entry(c).or_default().push(n);
        }
        let mut found = HashMap::new();
        for (c, numbers) in by_collection {
            let query = StateQuery::collection(CollectionQuery::new(c.clone()).with_numbers(numbers.iter().copied()))
                .with_label("replica_versions");
            let state = match self.inner.catalog.load(query).await {
                Ok(state) => state,
                Err(Error::CollectionNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if let Some(cs) = state.collection {
                for n in numbers {
                    if let Some(v) = cs.version_numbered(n) {
                        found.insert((c.clone(), n), (v.clone(), cs.collection.spec.clone()));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Up to `limit` committed versions of the collections `replica` covers after `after`
    /// (collection, then number), with their collection's spec.
    async fn versions_after(
        &self,
        replica: &Replica,
        after: Option<&(CollectionId, u64)>,
        limit: usize,
    ) -> Result<Vec<(Version, CollectionSpec)>> {
        let catalog = &self.inner.catalog;
        let mut found = Vec::new();
        let mut collections = catalog.collection_pages(self.inner.config.batch);
        while let Some(page) = collections.try_next().await? {
            for c in page {
                if !replica.covers(&c.id) || after.is_some_and(|(ac, _)| c.id < *ac) {
                    continue;
                }
                let from = match after {
                    Some((ac, n)) if *ac == c.id => *n,
                    _ => 0,
                };
                let mut versions =
                    catalog.version_pages(&c.id, crate::VersionQuery::first(limit).after(from).with_trashed());
                while let Some(versions) = versions.try_next().await? {
                    for v in versions {
                        found.push((v, c.spec.clone()));
                        if found.len() == limit {
                            return Ok(found);
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// Copies a version's object (checked against its digest as it streams) and its
    /// description to a replica, unless they are there already.
    async fn copy_to_replica(
        &self,
        replica: &Replica,
        v: &Version,
        spec: &CollectionSpec,
        throttle: Option<&Throttle>,
    ) -> std::result::Result<Copied, CopyError> {
        if v.state == VersionState::Purged || v.state == VersionState::Pending {
            return Ok(Copied::Skipped);
        }
        let name = replica.name();
        let blocked =
            |what: &str, e: &dyn std::fmt::Display| CopyError::Blocked(format!("replica {name}: {what}: {e}"));
        let key = Path::from(v.object_key.as_str());
        let dkey = description_key(key.as_ref());
        let there = match replica.store().head(&key).await {
            Ok(meta) if meta.size == v.size => true,
            Ok(_) | Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(blocked("head", &e)),
        };
        let copied = if there {
            match replica.descriptions_ref().head(&dkey).await {
                Ok(_) => return Ok(Copied::AlreadyThere),
                Err(object_store::Error::NotFound { .. }) => Copied::AlreadyThere,
                Err(e) => return Err(blocked("head", &e)),
            }
        } else {
            if let Some(leftovers) = replica.leftovers_ref() {
                let _ = leftovers.remove(&key).await;
            }
            let bytes =
                self.copy_object(Source::Primary, replica.store(), v, replica.part_size_value(), throttle).await?;
            Copied::Bytes(bytes)
        };
        let body = self.description_body(v, spec).await.map_err(|e| CopyError::Blocked(e.to_string()))?;
        replica.descriptions_ref().put(&dkey, PutPayload::from(body)).await.map_err(|e| blocked("put", &e))?;
        if let (Some(locks), Some(lock)) = (replica.object_locks_ref(), v.lock_at(self.now())) {
            locks.retain(&key, lock).await.map_err(|e| blocked("lock", &e))?;
            locks.retain(&dkey, lock).await.map_err(|e| blocked("lock", &e))?;
        }
        Ok(copied)
    }

    /// Streams version `v`'s object from `from` to the same key in `to`, checked against its
    /// size and digest on the way: the write is completed only when every byte matched
    /// (objects up to a part are written in one PUT after the check; larger ones as a
    /// multipart upload completed after it), so `to` never shows a partial or wrong object.
    async fn copy_object(
        &self,
        from: Source<'_>,
        to: &Arc<dyn ObjectStore>,
        v: &Version,
        part_size: usize,
        throttle: Option<&Throttle>,
    ) -> std::result::Result<u64, CopyError> {
        let key = Path::from(v.object_key.as_str());
        let source_error = |e: Error| match e {
            Error::Corrupted { reason, .. } => CopyError::Damaged(reason),
            e => CopyError::Blocked(e.to_string()),
        };
        let opened = match from {
            // The primary through the download's reader (large blocks, read ahead, hashed on
            // the reading thread); a version purged since it was read has no object either.
            Source::Primary => match self.read_verified(v).await {
                Err(Error::VersionNotFound { .. }) => Ok(None),
                read => read.map(Some),
            },
            Source::Store(from) => verified_in(from, v).await,
        };
        let mut body = match opened {
            Ok(Some(body)) => body,
            Ok(None) => return Err(CopyError::Damaged(format!("its object {key} is missing"))),
            Err(e) => return Err(source_error(e)),
        };
        if v.size <= part_size as u64 {
            let mut chunks = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(source_error)?;
                if let Some(t) = throttle {
                    t.wait(chunk.len()).await;
                }
                chunks.push(chunk);
            }
            let payload: PutPayload = chunks.into_iter().collect();
            to.put(&key, payload).await.map_err(|e| CopyError::Blocked(format!("put {key}: {e}")))?;
            return Ok(v.size);
        }
        let upload = to.put_multipart(&key).await.map_err(|e| CopyError::Blocked(format!("put {key}: {e}")))?;
        let mut writer = PartWriter::new(upload, key.clone(), part_size, self.inner.config.parts_in_flight);
        let copied: std::result::Result<(), CopyError> = async {
            while let Some(chunk) = body.next().await {
                let chunk: Bytes = chunk.map_err(source_error)?;
                if let Some(t) = throttle {
                    t.wait(chunk.len()).await;
                }
                writer.put(chunk).await.map_err(|e| CopyError::Blocked(e.to_string()))?;
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                writer.finish(&LastWrite::default()).await.map_err(|e| CopyError::Blocked(e.to_string()))?;
                Ok(v.size)
            }
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    /// Copies version `v`'s object back into the primary from the first replica whose copy
    /// matches its digest; the replica's name, or `None` when no copy verifies. The caller
    /// checks the primary again and records the repair.
    pub(crate) async fn heal_from_replicas(&self, v: &Version) -> Option<String> {
        for replica in self.replicas_of(&v.collection) {
            match self
                .copy_object(Source::Store(replica.store()), &self.inner.store, v, self.inner.config.part_size, None)
                .await
            {
                Ok(_) => {
                    // A new file replaced the read-only one: lock it again.
                    if let (Some(locks), Some(lock)) = (&self.inner.object_locks, v.lock_at(self.now())) {
                        let _ = locks.retain(&Path::from(v.object_key.as_str()), lock).await;
                    }
                    return Some(replica.name().to_owned());
                }
                Err(CopyError::Damaged(e) | CopyError::Blocked(e)) => {
                    tracing::warn!(collection = %v.collection, version = v.number, replica = replica.name(),
                        error = %e, "the replica's copy cannot repair the version");
                }
            }
        }
        None
    }

    /// Records a repair from a replica.
    pub(crate) async fn record_repair(&self, v: &Version, replica: &str, reason: &str, by: &str) {
        let event = AuditEvent::new(self.now(), by.to_owned(), "version.repaired")
            .with_collection(&v.collection)
            .with_version(v.number)
            .with_detail(format!("copied back from replica {replica}; the primary's object {reason}"));
        if let Err(e) = self.record_audit(&event).await {
            tracing::warn!(error = %e, "the repair was not recorded in the audit log");
        }
    }

    /// Version `v`'s bytes from the first replica that has its object with the right size,
    /// checked as they flow.
    pub(crate) async fn replica_stream(&self, v: &Version) -> Option<BoxStream<'static, Result<Bytes>>> {
        for replica in self.replicas_of(&v.collection) {
            if let Ok(Some(stream)) = verified_in(replica.store(), v).await {
                tracing::warn!(collection = %v.collection, version = v.number, replica = replica.name(),
                    "the primary's object cannot be read; serving the replica's copy");
                return Some(stream);
            }
        }
        None
    }

    /// Whether any replica copies `collection`.
    pub(crate) fn has_replicas_for(&self, collection: &CollectionId) -> bool {
        self.replicas().iter().any(|r| r.covers(collection))
    }

    /// Brings back a version the primary no longer has (deleted, rotated out, purged) from
    /// the replica `name`, which keeps it for its delay: its bytes, checked against the
    /// recorded digest as they stream, are uploaded as a new version of the collection by
    /// `actor` (so quotas, windows and retention apply as to any upload), with the metadata
    /// `restored-from` naming the version and the replica. Recorded as
    /// `version.restore_from_replica`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown replica; the authorizer's denial
    /// ([`crate::Action::RestoreVersion`], then the upload's); [`Error::VersionNotFound`] when the
    /// catalog has no such version or the replica no copy of it; [`Error::Corrupted`] when
    /// the copy does not match (nothing is committed); those of [`Engine::upload_with`].
    pub async fn restore_from_replica(
        &self,
        actor: &Actor,
        name: &str,
        collection: &CollectionId,
        number: u64,
    ) -> Result<Version> {
        let replica = self.replica(name)?;
        crate::check_version_number(number)?;
        // Who may restore a version of the collection (the upload below asks for its own).
        self.check_access(actor, collection, crate::Action::RestoreVersion).await?;
        let not_found = || Error::VersionNotFound { collection: collection.clone(), selector: number.to_string() };
        let v = self.version_in_any_state(collection, number).await?.ok_or_else(not_found)?;
        let body = verified_in(replica.store(), &v).await?.ok_or_else(not_found)?;
        let options = UploadOptions::new()
            .expected_size(v.size)
            .metadata("restored-from", format!("version {number} (replica {name})"));
        let restored = self.upload_with(actor, collection, body, options).await?;
        let event = AuditEvent::new(self.now(), actor.user.clone(), "version.restore_from_replica")
            .with_collection(collection)
            .with_version(restored.number)
            .with_detail(format!("version {number} brought back from replica {name} as version {}", restored.number));
        self.record_audit(&event).await?;
        Ok(restored)
    }

    /// Makes the replica `name` walk the catalog again at its next run, copying every version
    /// it lacks (after a replica's store was replaced or emptied).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown replica; [`Error::Conflict`] when another
    /// instance holds its cursor; the catalog's.
    pub async fn resync_replica(&self, name: &str, owner: &str) -> Result<()> {
        let replica = self.replica(name)?;
        let cursor_name = replica.cursor_name();
        let now = self.now();
        let head = self.audit_head().await?.seq;
        let cursor = self.inner.catalog.claim_cursor(&cursor_name, owner, head, now, now).await?;
        let (mut state, _) = ReplicaState::parse(&cursor.state, cursor.seq);
        state.catch_up = Some(CatchUp::default());
        self.inner.catalog.advance_cursor(&cursor_name, owner, cursor.seq, cursor.seq, &state.to_text(), vec![]).await
    }

    /// How far the replica `name` lags: versions and bytes not yet copied, the age of the
    /// oldest, failed copies, deletions waiting for their delay.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown replica; the catalog's.
    pub async fn replica_status(&self, name: &str) -> Result<ReplicaStatus> {
        let replica = self.replica(name)?;
        let now = self.now();
        let cursor = self.inner.catalog.list_cursors().await?.into_iter().find(|c| c.name == replica.cursor_name());
        let mut status = ReplicaStatus {
            name: replica.name().to_owned(),
            location: replica.location_text().to_owned(),
            cursor: cursor.as_ref().map(|c| c.seq),
            pending_versions: 0,
            pending_bytes: 0,
            oldest_pending: None,
            lag_seconds: 0,
            failed: Vec::new(),
            deletions_pending: 0,
            catching_up: true,
            copied: 0,
            bytes: 0,
            already_there: 0,
            deleted: 0,
            unavailable: None,
            unavailable_since: None,
            owner: cursor.as_ref().and_then(|c| c.owner.clone()),
        };
        let Some(cursor) = cursor else {
            // Never run: everything committed is pending.
            self.count_committed(&replica, &mut status).await?;
            return Ok(status);
        };
        let (state, _) = ReplicaState::parse(&cursor.state, cursor.seq);
        status.catching_up = state.catch_up.is_some();
        status.copied = state.copied;
        status.bytes = state.bytes;
        status.already_there = state.already_there;
        status.deleted = state.deleted;
        status.unavailable = state.unavailable.clone();
        status.unavailable_since = state.unavailable_since;
        if let Some(catch_up) = &state.catch_up {
            self.count_committed(&replica, &mut status).await?;
            status.oldest_pending = catch_up.started_at.or(Some(now));
        }
        let mut after = state.deletes_after;
        for _ in 0..STATUS_PAGES {
            let page = self.inner.catalog.list_audit(Some(after), STATUS_PAGE).await?;
            for e in &page {
                let covered = e.collection.as_ref().is_some_and(|c| replica.covers(c));
                if !covered {
                    continue;
                }
                if e.seq <= cursor.seq && e.action == "version.purge" {
                    // (An eviction that purged at once is counted when it is handled.)
                    status.deletions_pending += 1;
                }
                if e.seq > cursor.seq && e.action == "version.commit" && state.catch_up.is_none() {
                    status.pending_versions += 1;
                    status.pending_bytes += committed_size(&e.detail).unwrap_or(0);
                    status.oldest_pending = Some(status.oldest_pending.map_or(e.at, |o| o.min(e.at)));
                }
            }
            match page.last() {
                Some(last) if page.len() == STATUS_PAGE => after = last.seq,
                _ => break,
            }
        }
        for f in &state.failed {
            status.pending_versions += 1;
            status.pending_bytes += f.size;
            status.oldest_pending = Some(status.oldest_pending.map_or(f.since, |o| o.min(f.since)));
        }
        status.failed = state.failed;
        status.lag_seconds = status.oldest_pending.map_or(0, |o| (now - o).num_seconds().max(0) as u64);
        Ok(status)
    }

    /// Counts every committed version the replica covers as pending.
    async fn count_committed(&self, replica: &Replica, status: &mut ReplicaStatus) -> Result<()> {
        let mut collections = self.inner.catalog.collection_pages(self.inner.config.batch);
        while let Some(page) = collections.try_next().await? {
            for c in page.iter().filter(|c| replica.covers(&c.id)) {
                let counters = self.inner.catalog.collection_state(&c.id).await?.counters;
                status.pending_versions += counters.versions;
                status.pending_bytes += counters.bytes;
            }
        }
        Ok(())
    }

    /// The lowest log event a configured replica still has to read (its copies or its
    /// deletions): pruning stops below it.
    pub(crate) async fn replicas_hold(&self) -> Result<Option<u64>> {
        let replicas = self.replicas();
        if replicas.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = replicas.iter().map(Replica::cursor_name).collect();
        let mut hold: Option<u64> = None;
        for c in self.inner.catalog.list_cursors().await? {
            if names.contains(&c.name) {
                let (state, _) = ReplicaState::parse(&c.state, c.seq);
                let low = c.seq.min(state.deletes_after);
                hold = Some(hold.map_or(low, |h| h.min(low)));
            }
        }
        Ok(hold)
    }
}

/// Version `v`'s object in `store` (a replica), checked against its size and digest as it
/// streams; `None` when the store has no object under its key.
///
/// # Errors
/// [`Error::Corrupted`] when the object has another size; the store's.
async fn verified_in(store: &Arc<dyn ObjectStore>, v: &Version) -> Result<Option<BoxStream<'static, Result<Bytes>>>> {
    let key = Path::from(v.object_key.as_str());
    let got = match store.get(&key).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store("get", &key, e)),
    };
    if got.meta.size != v.size {
        return Err(Error::Corrupted {
            collection: v.collection.clone(),
            version: v.number,
            reason: format!("its object {key} has {} bytes, {} were committed", got.meta.size, v.size),
        });
    }
    Ok(Some(verified(got.into_stream().map_err(move |e| Error::store("get", &key, e)).boxed(), v)))
}

/// Runs `futures`, `workers` at a time, each next one started as soon as any finishes (a
/// copy held up by a slow write does not idle the others), and gives their outputs in the
/// order of `futures`.
async fn in_order<T: Send>(futures: Vec<futures::future::BoxFuture<'_, T>>, workers: usize) -> Vec<T> {
    let numbered: Vec<futures::future::BoxFuture<'_, (usize, T)>> =
        futures.into_iter().enumerate().map(|(i, f)| async move { (i, f.await) }.boxed()).collect();
    let mut done: Vec<(usize, T)> = stream::iter(numbered).buffer_unordered(workers).collect().await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// Counts a copy's outcome into the run and the replica's totals.
fn count(run: &mut ReplicationRun, state: &mut ReplicaState, copied: Copied) {
    match copied {
        Copied::Bytes(n) => {
            run.copied += 1;
            run.bytes += n;
            state.copied += 1;
            state.bytes += n;
        }
        Copied::AlreadyThere => {
            run.already_there += 1;
            state.already_there += 1;
        }
        Copied::Skipped => {
            run.skipped += 1;
            state.skipped += 1;
        }
    }
}
