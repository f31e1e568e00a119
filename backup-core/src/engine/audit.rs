//! The audit log from the host's side: recording, reading with permissions, pruning, anchoring
//! its head in the store, and verifying the chain.

use std::collections::HashMap;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{Engine, Page, chrono_duration};
use crate::audit::{AuditAnchor, AuditEvent, AuditHash, AuditHead, AuditProblem, AuditQuery, AuditReport, LogCursor};
use crate::authz::{Action, Actor};
use crate::catalog::CatalogExt;
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::time::Timestamp;

/// The folder, under the key prefix, of the audit log's anchors: `anchor-<seq>.json`, each the
/// head at some moment. A name starting with a dot: no collection can have it.
pub(crate) const AUDIT_ANCHORS: &str = ".audit";

/// How many events one read of the log asks the catalog for.
const PAGE: usize = crate::audit::MAX_AUDIT_PAGE;

impl Engine {
    /// Appends an event of the host's to the audit log (a refused login, a download): on its
    /// own, chained like the engine's, which are appended with the changes they record.
    ///
    /// # Errors
    /// The catalog's.
    pub async fn record_audit(&self, event: &AuditEvent) -> Result<()> {
        self.inner.catalog.append_audit(event).await
    }

    /// Audit events in order, after `query.after`, as far as `actor` may see them: every
    /// event with [`Action::ReadAudit`] on the whole repository, else those of collections
    /// where it has [`Action::ReadAudit`]. One call reads a bounded part of the log: a page
    /// may hold fewer than `limit` events and still have a `next`.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] when `actor` may read the log of no collection asked
    /// (the one of `query.collection`, or the whole log without one and any collection);
    /// [`Error::InvalidInput`] for a limit of 0 or above 1000; the catalog's.
    pub async fn audit_events(&self, actor: &Actor, query: &AuditQuery) -> Result<Page<AuditEvent, u64>> {
        if query.limit == 0 || query.limit > PAGE {
            return Err(Error::invalid("audit query", format!("the limit must be 1 to {PAGE}")));
        }
        let everything = self.authorize_audit(actor, None).await.is_ok();
        if let Some(c) = &query.collection
            && !everything
        {
            self.authorize_audit(actor, Some(c)).await?;
        }
        let mut allowed: HashMap<CollectionId, bool> = HashMap::new();
        if !everything && query.collection.is_none() {
            // A manager of some collections reads theirs; anyone else is refused outright
            // rather than answered an empty log.
            let mut any = false;
            let mut after = None;
            'scan: loop {
                let page = self.inner.catalog.list_collections(after.as_ref(), PAGE).await?;
                for c in &page {
                    let ok = self.authorize_audit(actor, Some(&c.id)).await.is_ok();
                    allowed.insert(c.id.clone(), ok);
                    any |= ok;
                    if any {
                        break 'scan;
                    }
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
                    _ => break,
                }
            }
            if !any {
                return Err(Error::PermissionDenied {
                    reason: "reading the audit log needs a systemAdmin or a collection manager".to_owned(),
                });
            }
        }
        // Bounded work per call: at most ten catalog pages are scanned for matches.
        let mut items = Vec::new();
        let mut cursor = query.after;
        for _ in 0..10 {
            let page = self.inner.catalog.list_audit(cursor, PAGE).await?;
            let full = page.len() == PAGE;
            for e in page {
                cursor = Some(e.seq);
                let visible = match (&query.collection, &e.collection) {
                    (Some(want), Some(c)) => want == c,
                    (Some(_), None) => false,
                    (None, _) if everything => true,
                    (None, None) => false,
                    (None, Some(c)) => match allowed.get(c) {
                        Some(ok) => *ok,
                        None => {
                            let ok = self.authorize_audit(actor, Some(c)).await.is_ok();
                            allowed.insert(c.clone(), ok);
                            ok
                        }
                    },
                };
                if visible {
                    items.push(e);
                    if items.len() == query.limit {
                        return Ok(Page { items, next: cursor });
                    }
                }
            }
            if !full {
                return Ok(Page { items, next: None });
            }
        }
        Ok(Page { items, next: cursor })
    }

    /// Audit events after `after`, in order, at most `limit` (1 to 1000), for the host's own
    /// readers (notification targets): no authorizer is asked, the host decides who reads.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit of 0 or above 1000; the catalog's.
    pub async fn read_audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        if limit == 0 || limit > PAGE {
            return Err(Error::invalid("audit read", format!("the limit must be 1 to {PAGE}")));
        }
        self.inner.catalog.list_audit(Some(after), limit).await
    }

    /// Every reader's place in the log ([`crate::audit::LogCursor`]): for metrics and
    /// dashboards of notification targets.
    ///
    /// # Errors
    /// The catalog's.
    pub async fn log_cursors(&self) -> Result<Vec<crate::audit::LogCursor>> {
        self.inner.catalog.list_cursors().await
    }

    /// Takes or renews a log cursor's lease for `owner` until `until`; a new cursor starts at
    /// the log's head (a new reader gets what happens from now on).
    ///
    /// # Errors
    /// [`Error::Conflict`] naming the holder when another instance holds it; the catalog's.
    pub async fn claim_log_cursor(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<LogCursor> {
        // Where a new cursor starts; a claim of an existing one keeps its place.
        let start_at = self.audit_head().await?.seq;
        self.inner.catalog.claim_cursor(name, owner, start_at, now, until).await
    }

    /// Moves a log cursor `owner` holds from `from` to `to`, with its new state and the
    /// events to append, in one step.
    ///
    /// # Errors
    /// [`Error::Conflict`] when the cursor moved or changed hands (the lease was lost); the
    /// catalog's.
    pub async fn advance_log_cursor(
        &self,
        name: &str,
        owner: &str,
        from: u64,
        to: u64,
        state: &str,
        events: Vec<AuditEvent>,
    ) -> Result<()> {
        self.inner.catalog.advance_cursor(name, owner, from, to, state, events).await
    }

    /// Whether `actor` may read the audit log of `collection`, or the whole log (its events of
    /// no collection included: logins, tokens, notification targets) without one.
    ///
    /// # Errors
    /// The authorizer's refusal; [`Error::CollectionNotFound`] for an unknown collection.
    pub async fn authorize_audit(&self, actor: &Actor, collection: Option<&CollectionId>) -> Result<()> {
        let policy = match collection {
            Some(id) => Some(self.inner.catalog.get_collection(id).await?),
            None => None,
        };
        self.authorize(actor, Action::ReadAudit, policy.as_ref()).await.map(|_| ())
    }

    /// Deletes the events the retention ([`crate::EngineBuilder::audit_retention`]) no longer
    /// keeps, leaving the head of the last one as the log's checkpoint (so that the rest
    /// still verifies), and the anchors it covers; records `audit.prune`. Returns the number
    /// of the last event deleted, if any.
    ///
    /// # Errors
    /// The catalog's and the store's.
    pub async fn prune_audit(&self) -> Result<Option<u64>> {
        let retention = self.inner.config.audit_retention;
        let now = self.now();
        let mut through: Option<u64> = None;
        if let Some(age) = retention.max_age {
            let cutoff = now.checked_sub(chrono_duration(age)).unwrap_or(Timestamp::UNIX_EPOCH);
            let mut after = None;
            loop {
                let page = self.inner.catalog.list_audit(after, PAGE).await?;
                let old = page.iter().take_while(|e| e.at < cutoff).last().map(|e| e.seq);
                through = through.max(old);
                match (page.last(), old) {
                    (Some(last), Some(o)) if o == last.seq && page.len() == PAGE => after = Some(last.seq),
                    _ => break,
                }
            }
        }
        if let Some(keep) = retention.max_events {
            let head = self.audit_head().await?;
            let first = self.inner.catalog.audit_checkpoint().await?.map_or(1, |c| c.seq + 1);
            if head.seq >= first && head.seq - first + 1 > keep {
                through = through.max(Some(head.seq - keep));
            }
        }
        // What a replica has not read yet is its queue: it stays.
        if let Some(hold) = self.replicas_hold().await? {
            through = through.map(|t| t.min(hold)).filter(|t| *t > 0);
        }
        let Some(through) = through else { return Ok(None) };
        self.inner.catalog.prune_audit(through).await?;
        self.record_audit(
            &AuditEvent::new(now, "engine", "audit.prune").with_detail(format!("events up to {through} pruned")),
        )
        .await?;
        // The anchors the pruning covers, by their names: no need to read them to drop them.
        for key in self.anchor_keys().await? {
            let seq =
                key.filename().and_then(|n| n.strip_prefix("anchor-")?.strip_suffix(".json")?.parse::<u64>().ok());
            if seq.is_some_and(|seq| seq <= through) {
                let _ = self.inner.store.delete(&key).await;
            }
        }
        Ok(Some(through))
    }

    /// The log's head: its last event's, else the checkpoint's, else the genesis.
    ///
    /// # Errors
    /// The catalog's.
    pub async fn audit_head(&self) -> Result<AuditHead> {
        self.inner.catalog.audit_head().await
    }

    /// Writes the log's head to the store as an anchor (unless it is there already), out of
    /// the catalog's reach: a rewrite of the log before it is found by
    /// [`Engine::verify_audit`]. Hosts call it on a schedule; catalog snapshots call it too.
    ///
    /// # Errors
    /// The catalog's and the store's.
    pub async fn anchor_audit(&self) -> Result<AuditHead> {
        let head = self.audit_head().await?;
        if head.seq == 0 {
            return Ok(head);
        }
        let key = self.anchor_key(head.seq);
        let anchor = AuditAnchor { seq: head.seq, hash: head.hash, at: self.now() };
        let body = serde_json::to_vec(&anchor).map_err(|e| Error::internal(e.to_string()))?;
        match self.inner.store.put_opts(&key, PutPayload::from(body), object_store::PutMode::Create.into()).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(head),
            Err(e) => Err(Error::store("write audit anchor", &key, e)),
        }
    }

    fn anchor_key(&self, seq: u64) -> Path {
        self.inner.key_prefix.clone().join(AUDIT_ANCHORS).join(format!("anchor-{seq:020}.json"))
    }

    /// After a rebuild: anchors of events the rebuilt catalog does not have (a snapshot older
    /// than the last anchor) are moved to `.audit/lost/`, kept for people but no longer
    /// checked, and the loss is recorded (`audit.lost`), so that the rebuilt log verifies
    /// and says what it lacks. Returns how many anchors were set aside.
    pub(crate) async fn set_aside_lost_anchors(&self) -> Result<u64> {
        let head = self.audit_head().await?;
        let beyond: Vec<AuditAnchor> = self.audit_anchors().await?.into_iter().filter(|a| a.seq > head.seq).collect();
        let Some(last) = beyond.last().copied() else { return Ok(0) };
        for a in &beyond {
            let (from, to) = (self.anchor_key(a.seq), self.lost_anchor_key(a.seq));
            self.inner.store.copy(&from, &to).await.map_err(|e| Error::store("keep a lost audit anchor", &to, e))?;
            self.inner.store.delete(&from).await.map_err(|e| Error::store("set aside an audit anchor", &from, e))?;
        }
        self.record_audit(&AuditEvent::new(self.now(), "rebuild", "audit.lost").with_detail(format!(
            "the rebuilt catalog's log ends at event {} but the lost catalog's had reached event {} (anchored at {}): \
             those events are gone; {} anchors moved to {}/lost/",
            head.seq,
            last.seq,
            last.at,
            beyond.len(),
            AUDIT_ANCHORS
        )))
        .await?;
        Ok(beyond.len() as u64)
    }

    fn lost_anchor_key(&self, seq: u64) -> Path {
        self.inner.key_prefix.clone().join(AUDIT_ANCHORS).join("lost").join(format!("anchor-{seq:020}.json"))
    }

    /// The newest anchor in the store, if any.
    pub(crate) async fn latest_audit_anchor(&self) -> Result<Option<AuditAnchor>> {
        match self.anchor_keys().await?.last() {
            Some(key) => self.read_anchor(key).await.map(Some),
            None => Ok(None),
        }
    }

    /// The keys of the anchors in the store (those set aside as lost excepted), by name, which
    /// is by sequence number: names are zero-padded.
    async fn anchor_keys(&self) -> Result<Vec<Path>> {
        let prefix = self.inner.key_prefix.clone().join(AUDIT_ANCHORS);
        let lost = prefix.clone().join("lost");
        let metas: Vec<_> = self
            .inner
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store("list audit anchors", &prefix, e))?;
        let mut keys: Vec<Path> = metas.into_iter().map(|m| m.location).filter(|k| !k.prefix_matches(&lost)).collect();
        keys.sort();
        Ok(keys)
    }

    /// One anchor; an unreadable one is an error.
    async fn read_anchor(&self, key: &Path) -> Result<AuditAnchor> {
        let bytes = self
            .inner
            .store
            .get(key)
            .await
            .map_err(|e| Error::store("read audit anchor", key, e))?
            .bytes()
            .await
            .map_err(|e| Error::store("read audit anchor", key, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid("audit anchor", format!("{key} is unreadable: {e}")))
    }

    /// The anchors in the store, by sequence number (their own, not their names').
    async fn audit_anchors(&self) -> Result<Vec<AuditAnchor>> {
        let mut out = Vec::new();
        for key in self.anchor_keys().await? {
            out.push(self.read_anchor(&key).await?);
        }
        out.sort_by_key(|a| a.seq);
        Ok(out)
    }

    /// Checks the audit log: every event from the checkpoint (or the first) to the head is
    /// there, numbered one after another, and carries the hash of itself and the one before;
    /// every anchor in the store names an event that is there with that hash (or one the
    /// pruning removed). The report names the first event that does not fit.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use backup_core::{AuditEvent, Engine, Timestamp};
    ///
    /// let engine = Engine::in_memory();
    /// engine.record_audit(&AuditEvent::new(Timestamp::UNIX_EPOCH, "alice", "login")).await?;
    /// engine.anchor_audit().await?;
    /// let report = engine.verify_audit().await?;
    /// assert!(report.is_intact());
    /// assert_eq!((report.events, report.anchors, report.head.seq), (1, 1, 1));
    /// # Ok::<(), backup_core::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The catalog's and the store's; an unreadable anchor ([`Error::InvalidInput`]). What
    /// does not fit is in the report, not an error.
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        let checkpoint = self.inner.catalog.audit_checkpoint().await?;
        let anchors = self.audit_anchors().await?;
        let mut head = checkpoint.unwrap_or(AuditHead::GENESIS);
        let mut report = AuditReport { events: 0, checkpoint, head, anchors: 0, problem: None };
        let by_seq: HashMap<u64, AuditHash> = anchors.iter().map(|a| (a.seq, a.hash)).collect();
        let fail = |mut report: AuditReport, head: AuditHead, seq: u64, reason: String| {
            report.head = head;
            report.problem = Some(AuditProblem { seq, reason });
            Ok(report)
        };
        loop {
            let page = self.inner.catalog.list_audit(Some(head.seq), PAGE).await?;
            let full = page.len() == PAGE;
            for e in page {
                let expected = head.seq + 1;
                if e.seq != expected {
                    let reason = format!("missing: the log goes from event {} to event {}", head.seq, e.seq);
                    return fail(report, head, expected, reason);
                }
                let Some(hash) = e.hash else {
                    return fail(report, head, e.seq, "it has no hash".into());
                };
                if e.link(&head.hash) != hash {
                    let reason = if head.seq == 0 || checkpoint.is_some_and(|c| c.seq == head.seq) {
                        "its content does not match its hash".to_owned()
                    } else {
                        format!("it does not fit the chain: it, or event {} before it, was changed", head.seq)
                    };
                    return fail(report, head, e.seq, reason);
                }
                if let Some(anchored) = by_seq.get(&e.seq) {
                    report.anchors += 1;
                    if *anchored != hash {
                        let reason = "its hash differs from the anchor in the store: the log was rewritten".to_owned();
                        return fail(report, head, e.seq, reason);
                    }
                }
                report.events += 1;
                head = AuditHead { seq: e.seq, hash };
            }
            if !full {
                break;
            }
        }
        report.head = head;
        if let Some(c) = checkpoint
            && let Some(anchored) = by_seq.get(&c.seq)
        {
            report.anchors += 1;
            if *anchored != c.hash {
                let reason = "the checkpoint's hash differs from the anchor in the store".to_owned();
                return fail(report, head, c.seq, reason);
            }
        }
        if let Some(beyond) = anchors.iter().find(|a| a.seq > head.seq) {
            let reason = format!(
                "an anchor written at {} names event {}, but the log ends at {}: events were removed",
                beyond.at, beyond.seq, head.seq
            );
            return fail(report, head, head.seq + 1, reason);
        }
        Ok(report)
    }
}
