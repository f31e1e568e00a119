//! A collection's health, read through the engine: one collection row (its counters and its
//! newest version), the versions a failing check names only when the counters say one exists,
//! and the authorizer's windows, given to [`health::assess`].

use futures::TryStreamExt;

use super::{Engine, Page};
use crate::authz::{Action, Actor};
use crate::catalog::{CatalogExt, VersionQuery};
use crate::error::{ErrorKind, Result};
use crate::health::{self, CheckKind, CollectionHealth, Facts, Health, Verdict};
use crate::id::CollectionId;
use crate::protocol::{CollectionState, Counters, VersionRange, VersionsNeeded};
use crate::replica::ReplicaStatus;
use crate::version::{Collection, Version};

impl Engine {
    /// A collection's health: the checks of [`crate::health`] (window, soft limit, hard limit,
    /// integrity), each with its verdict and reason, and what they looked at. It reads one
    /// collection row, whatever the history (plus, when a counter says a version passes the
    /// soft limit or is quarantined, the versions up to the first such one, to name it).
    ///
    /// ```
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let (me, id) = (Actor::user("me"), "db".parse()?);
    /// engine.create_collection(&me, &id, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
    /// let report = engine.health(&me, &id).await?;
    /// assert!(report.healthy() && report.latest.is_none());
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`](crate::Error::CollectionNotFound); the authorizer's
    /// denial (it takes [`Action::ReadCollection`]); catalog errors.
    pub async fn health(&self, actor: &Actor, id: &CollectionId) -> Result<CollectionHealth> {
        let state = self.health_state(id).await?;
        self.authorize(actor, Action::ReadCollection, Some(&state.collection)).await?;
        self.assess(state).await
    }

    /// A collection's health for a caller the authorizer does not know (an anonymous visitor
    /// with a collection's health code, say): the collection is read first, then `opens`
    /// decides whether this caller may see its health (`Ok(None)` when not). An unknown
    /// collection and a known one that `opens` refuses thus cost the same catalog read, so the
    /// time of a refusal does not tell which it was; the rest is read only for a caller let in.
    /// No authorizer is asked: `opens` is the decision.
    ///
    /// ```
    /// use backup_core::{CollectionSpec, Engine, ErrorKind, Limits};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// let id = "db".parse()?;
    /// engine.declare_collection(&id, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?), "setup").await?;
    /// assert!(engine.health_if(&id, |_| false).await?.is_none());
    /// assert!(engine.health_if(&id, |_| true).await?.is_some_and(|h| h.healthy()));
    /// let unknown = engine.health_if(&"nope".parse()?, |_| true).await.unwrap_err();
    /// assert_eq!(unknown.kind(), ErrorKind::NotFound);
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Engine::health`], without the denial.
    pub async fn health_if<F>(&self, id: &CollectionId, opens: F) -> Result<Option<CollectionHealth>>
    where
        F: FnOnce(&Collection) -> bool + Send,
    {
        let state = self.health_state(id).await?;
        if !opens(&state.collection) {
            return Ok(None);
        }
        self.assess(state).await.map(Some)
    }

    /// The health of every collection, ordered by id, after `after`, at most `limit` (1 to
    /// 1000) a page: for an operator's view of the whole repository (metrics, alerts). No
    /// authorizer is asked: the host decides who may see it (a metrics endpoint behind an
    /// operator's key). One collection row each, as [`Engine::health`]; a collection deleted
    /// while the page is read is left out.
    ///
    /// ```
    /// use backup_core::{CollectionSpec, Engine, Limits};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let engine = Engine::in_memory();
    /// for name in ["a", "b", "c"] {
    ///     engine.declare_collection(&name.parse()?, CollectionSpec::new("x-${version}", Limits::new(3, 100, 300)?), "setup").await?;
    /// }
    /// let first = engine.health_page(None, 2).await?;
    /// assert_eq!(first.items.iter().map(|h| h.collection.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    /// let rest = engine.health_page(first.next.as_ref(), 2).await?;
    /// assert_eq!((rest.items.len(), rest.next), (1, None));
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn health_page(
        &self,
        after: Option<&CollectionId>,
        limit: usize,
    ) -> Result<Page<CollectionHealth, CollectionId>> {
        let limit = limit.clamp(1, 1000);
        let listed = self.inner.catalog.list_collections(after, limit).await?;
        let next = if listed.len() == limit { listed.last().map(|c| c.id.clone()) } else { None };
        let mut items = Vec::with_capacity(listed.len());
        // The replicas' lag once for the page, not once per collection.
        let mut statuses = Vec::new();
        for r in self.replicas().iter() {
            statuses.push(self.replica_status(r.name()).await?);
        }
        for c in &listed {
            let read = match self.health_state(&c.id).await {
                Ok(state) => self.assess_with(state, Some(&statuses)).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(h) => items.push(h),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Page { items, next })
    }

    /// The collection row, its counters and its newest version.
    pub(super) async fn health_state(&self, id: &CollectionId) -> Result<CollectionState> {
        self.inner.catalog.collection_state_with(id, VersionsNeeded::Range(VersionRange::Newest(1))).await
    }

    async fn assess(&self, state: CollectionState) -> Result<CollectionHealth> {
        self.assess_with(state, None).await
    }

    /// [`Engine::assess`] with the replicas' statuses, when known already.
    async fn assess_with(&self, state: CollectionState, known: Option<&[ReplicaStatus]>) -> Result<CollectionHealth> {
        let latest = state.committed.last().cloned();
        let health = self.health_checks(&state.collection, &state.counters, latest.as_ref(), known).await?;
        let c = state.counters;
        Ok(CollectionHealth {
            collection: state.collection,
            versions: c.versions,
            committed_bytes: c.bytes,
            quarantined_versions: c.quarantined,
            last_committed_at: c.last_committed_at,
            latest,
            health,
        })
    }

    /// The checks of a collection read by the caller: the versions a failing check names (when
    /// the counters say there is one), the authorizer's windows, and the pure decision.
    pub(super) async fn health_checks(
        &self,
        collection: &Collection,
        counters: &Counters,
        latest: Option<&Version>,
        known: Option<&[ReplicaStatus]>,
    ) -> Result<Health> {
        let (over, quarantined) = self.first_at_fault(collection, counters).await?;
        let windows = self.inner.authorizer.backup_windows(collection).await?;
        let facts = Facts::new(&collection.spec, counters)
            .with_latest(latest)
            .with_first_over_soft_limit(over.as_ref())
            .with_first_quarantined(quarantined.as_ref());
        let mut health = health::assess(&facts, &windows, self.now().to_datetime());
        if let Some(check) = self.replication_check(&collection.id, known).await? {
            health.checks.push(check);
        }
        Ok(health)
    }

    /// The replication check of a collection copied to replicas: it fails when one of them
    /// lags more than its limit ([`crate::replica::Replica::lag_limit`]).
    async fn replication_check(
        &self,
        id: &CollectionId,
        known: Option<&[ReplicaStatus]>,
    ) -> Result<Option<health::Check>> {
        let replicas = self.replicas();
        let mut passing = Vec::new();
        let mut failing = Vec::new();
        for r in replicas.iter().filter(|r| r.covers(id)) {
            let status = match known.and_then(|k| k.iter().find(|s| s.name == r.name())) {
                Some(s) => s.clone(),
                None => self.replica_status(r.name()).await?,
            };
            let limit = r.lag_limit_value();
            let line = format!(
                "replica {}: {} versions ({} bytes) pending, {} s behind{}",
                r.name(),
                status.pending_versions,
                status.pending_bytes,
                status.lag_seconds,
                status.unavailable.as_deref().map(|u| format!(", unavailable: {u}")).unwrap_or_default()
            );
            if status.lag_seconds > limit.as_secs() {
                failing.push(format!("{line} (the limit is {} s)", limit.as_secs()));
            } else {
                passing.push(line);
            }
        }
        Ok(match (failing.is_empty(), passing.is_empty()) {
            (true, true) => None,
            (true, false) => Some(health::Check::new(CheckKind::Replication, Verdict::Pass, passing.join("; "))),
            (false, _) => Some(health::Check::new(CheckKind::Replication, Verdict::Fail, failing.join("; "))),
        })
    }

    /// The first committed version over the soft limit and the first quarantined one, each
    /// looked for only when the counters say one exists (in one pass over the versions, which
    /// `max_versions` bounds).
    async fn first_at_fault(
        &self,
        collection: &Collection,
        counters: &Counters,
    ) -> Result<(Option<Version>, Option<Version>)> {
        let (mut want_over, mut want_quarantined) = Facts::details_needed(counters);
        let (mut over, mut quarantined) = (None, None);
        if !(want_over || want_quarantined) {
            return Ok((over, quarantined));
        }
        let soft = collection.spec.limits.max_version_size;
        let mut pages = self.inner.catalog.version_pages(&collection.id, VersionQuery::first(1000));
        while (want_over || want_quarantined)
            && let Some(page) = pages.try_next().await?
        {
            for v in page {
                if want_over && v.size > soft {
                    want_over = false;
                    over = Some(v.clone());
                }
                if want_quarantined && v.quarantined.is_some() {
                    want_quarantined = false;
                    quarantined = Some(v);
                }
            }
        }
        Ok((over, quarantined))
    }
}
