//! The detectors: a reader of the audit log (the cursor `detectors`) that turns what happened
//! and what did not into alert events ([`crate::alerts`]), written in the same step that moves
//! its cursor and keeps its memory, so that a crash or a second instance never loses an alert
//! nor sends one twice.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Engine, chrono_duration};
use crate::alerts::{self, AlertPolicy};
use crate::audit::AuditEvent;
use crate::catalog::{CatalogExt, VersionQuery};
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::time::Timestamp;
use crate::version::Collection;

/// The detectors' cursor.
pub const DETECTORS_CURSOR: &str = "detectors";

/// How many events one run reads at most.
const BATCH: usize = 1000;

/// What one run of the detectors did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DetectorRun {
    /// Events read.
    pub events: u64,
    /// Alerts written, in order.
    pub alerts: Vec<AuditEvent>,
    /// Another instance holds the detectors' lease: this run did nothing.
    pub held_elsewhere: bool,
}

/// What the detectors remember between runs, per collection (the cursor's state).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Memory {
    #[serde(default)]
    collections: BTreeMap<CollectionId, Remembered>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Remembered {
    /// The end of the window slot alerted as missed, until a version arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    missed: Option<Timestamp>,
    /// The last commit time alerted as stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale: Option<Timestamp>,
    /// Over the quota's alert threshold, alerted.
    #[serde(default)]
    quota_near: bool,
    /// No `upload.refused` alert before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused_quiet_until: Option<Timestamp>,
}

impl Engine {
    /// Runs the detectors once, as `owner` (an instance's name): reads the audit log after its
    /// cursor (commits, refusals, quarantines) and every collection's windows and age at the
    /// engine's clock, and writes the alerts ([`crate::alerts`]) with the cursor's move, in one
    /// step. Hosts call it every minute or so; with several instances on one catalog, the
    /// one holding the lease runs and the others return with [`DetectorRun::held_elsewhere`].
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use backup_core::{Actor, CollectionSpec, Engine, Limits};
    /// use bytes::Bytes;
    ///
    /// let engine = Engine::in_memory();
    /// let (actor, id) = (Actor::user("ci"), "db".parse()?);
    /// engine.create_collection(&actor, &id, CollectionSpec::new("db-${version}", Limits::new(10, 1000, 10_000)?)).await?;
    /// engine.run_detectors("me").await?; // starts reading here
    /// for size in [100, 100, 100, 100, 100, 30] {
    ///     let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![0u8; size]))]);
    ///     engine.upload(&actor, &id, body).await?;
    /// }
    /// let run = engine.run_detectors("me").await?;
    /// assert_eq!(run.alerts.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["upload.lighter"]);
    /// # Ok::<(), backup_core::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The catalog's; [`Error::Conflict`] when the lease was lost during the run (nothing of
    /// it was written; the next run does it again).
    pub async fn run_detectors(&self, owner: &str) -> Result<DetectorRun> {
        let catalog = &self.inner.catalog;
        let now = self.now();
        let lease = chrono_duration(Duration::from_secs(120));
        let cursor = match self.claim_log_cursor(DETECTORS_CURSOR, owner, now, now + lease).await {
            Ok(c) => c,
            Err(Error::Conflict { .. }) => return Ok(DetectorRun { held_elsewhere: true, ..DetectorRun::default() }),
            Err(e) => return Err(e),
        };
        let mut memory: Memory = serde_json::from_str(&cursor.state).unwrap_or_default();
        let mut alerts = Vec::new();
        let events = catalog.list_audit(Some(cursor.seq), BATCH).await?;
        let to = events.last().map_or(cursor.seq, |e| e.seq);
        let mut specs: BTreeMap<CollectionId, Option<Collection>> = BTreeMap::new();
        for e in &events {
            let Some(id) = &e.collection else { continue };
            if !matches!(e.action.as_str(), "version.commit" | "upload.refusal" | "version.quarantine") {
                continue;
            }
            if !specs.contains_key(id) {
                specs.insert(id.clone(), catalog.get_collection(id).await.ok());
            }
            let Some(Some(collection)) = specs.get(id) else { continue };
            let policy = collection.spec.alerts;
            let remembered = memory.collections.entry(id.clone()).or_default();
            match e.action.as_str() {
                "version.commit" => {
                    if let Some(n) = e.version {
                        alerts.extend(self.lighter(collection, n, &policy, now).await?);
                        if let Some(end) = remembered.missed.take() {
                            alerts.push(alert(
                                now,
                                alerts::WINDOW_OK,
                                id,
                                Some(n),
                                format!(
                                    "version {n} arrived at {} after the backup window ending {end} was missed",
                                    e.at
                                ),
                            ));
                        }
                    }
                    remembered.stale = None;
                    let near = self.quota_near(collection, &policy).await?;
                    match near {
                        Some(detail) if !remembered.quota_near => {
                            remembered.quota_near = true;
                            alerts.push(alert(now, alerts::QUOTA_NEAR, id, e.version, detail));
                        }
                        Some(_) => {}
                        None => remembered.quota_near = false,
                    }
                }
                "upload.refusal" => {
                    if remembered.refused_quiet_until.is_none_or(|until| e.at >= until) {
                        remembered.refused_quiet_until = e.at.checked_add(chrono_duration(policy.refused_quiet));
                        alerts.push(alert(
                            now,
                            alerts::UPLOAD_REFUSED,
                            id,
                            None,
                            format!(
                                "an upload by {} was refused at {}: {} (further refusals within {}s make no alert)",
                                e.actor,
                                e.at,
                                e.detail,
                                policy.refused_quiet.as_secs()
                            ),
                        ));
                    }
                }
                _ => alerts.push(alert(now, alerts::VERSION_QUARANTINED, id, e.version, e.detail.clone())),
            }
        }
        // What did not happen: each collection's windows and age, at the engine's clock.
        let mut after = None;
        loop {
            let page = catalog.list_collections(after.as_ref(), BATCH).await?;
            for c in &page {
                let remembered = memory.collections.entry(c.id.clone()).or_default();
                alerts.extend(self.missed(c, remembered, now).await?);
            }
            match page.last() {
                Some(last) if page.len() == BATCH => after = Some(last.id.clone()),
                _ => break,
            }
        }
        memory.collections.retain(|_, r| {
            r.missed.is_some() || r.stale.is_some() || r.quota_near || r.refused_quiet_until.is_some_and(|u| u > now)
        });
        let state = serde_json::to_string(&memory).map_err(|e| Error::internal(e.to_string()))?;
        catalog.advance_cursor(DETECTORS_CURSOR, owner, cursor.seq, to, &state, alerts.clone()).await?;
        Ok(DetectorRun { events: events.len() as u64, alerts, held_elsewhere: false })
    }

    /// An `upload.lighter` alert when version `n` is under the policy's share of the median
    /// of the versions before it (rotated-out ones included).
    async fn lighter(
        &self,
        collection: &Collection,
        n: u64,
        policy: &AlertPolicy,
        now: Timestamp,
    ) -> Result<Option<AuditEvent>> {
        if policy.lighter_percent == 0 {
            return Ok(None);
        }
        let previous = u64::from(policy.lighter_versions);
        let query = VersionQuery::first(previous as usize + 1).after(n.saturating_sub(previous + 1)).with_trashed();
        let versions = match self.inner.catalog.list_versions(&collection.id, &query).await {
            Ok(v) => v,
            Err(Error::CollectionNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(this) = versions.iter().find(|v| v.number == n) else { return Ok(None) };
        let mut sizes: Vec<u64> = versions.iter().filter(|v| v.number < n).map(|v| v.size).collect();
        if sizes.is_empty() {
            return Ok(None);
        }
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        let share = u128::from(this.size) * 100;
        if share >= u128::from(median) * u128::from(policy.lighter_percent) {
            return Ok(None);
        }
        let percent = if median == 0 { 0 } else { u128::from(this.size) * 100 / u128::from(median) };
        Ok(Some(alert(
            now,
            alerts::UPLOAD_LIGHTER,
            &collection.id,
            Some(n),
            format!(
                "version {n} has {} bytes, {percent}% of the median of the {} before it ({median} bytes; the alert is \
             under {}%)",
                this.size,
                sizes.len(),
                policy.lighter_percent
            ),
        )))
    }

    /// Why the collection is near its hard limit, if it is.
    async fn quota_near(&self, collection: &Collection, policy: &AlertPolicy) -> Result<Option<String>> {
        if policy.quota_near_percent == 0 {
            return Ok(None);
        }
        let state = match self.health_state(&collection.id).await {
            Ok(s) => s,
            Err(Error::CollectionNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (bytes, limit) = (state.counters.bytes, collection.spec.limits.max_collection_size);
        if u128::from(bytes) * 100 < u128::from(limit) * u128::from(policy.quota_near_percent) {
            return Ok(None);
        }
        Ok(Some(format!(
            "the committed versions take {bytes} of {limit} bytes (the alert is at {}%)",
            policy.quota_near_percent
        )))
    }

    /// `window.missed` for a window slot that ended (plus the grace) without a version, and
    /// `collection.stale` for a collection without windows and without a recent version; each
    /// once per slot, or per last version.
    async fn missed(&self, c: &Collection, remembered: &mut Remembered, now: Timestamp) -> Result<Vec<AuditEvent>> {
        let policy = c.spec.alerts;
        let windows = self.inner.authorizer.backup_windows(c).await?;
        let state = match self.health_state(&c.id).await {
            Ok(s) => s,
            Err(Error::CollectionNotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let latest = state.committed.last().map(|v| v.created_at);
        let mut out = Vec::new();
        if windows.is_empty() {
            if let (Some(age), Some(last)) =
                (policy.stale_after, state.counters.last_committed_at.or(Some(c.created_at)))
                && last.checked_add(chrono_duration(age)).is_some_and(|due| due <= now)
                && remembered.stale != Some(last)
            {
                remembered.stale = Some(last);
                out.push(alert(
                    now,
                    alerts::COLLECTION_STALE,
                    &c.id,
                    None,
                    format!(
                        "no version since {last} ({}s ago; the alert is after {}s)",
                        (now.to_datetime() - last.to_datetime()).num_seconds(),
                        age.as_secs()
                    ),
                ));
            }
            return Ok(out);
        }
        // The most recent slot of any window that ended, grace included, before now.
        let grace = chrono_duration(policy.window_grace);
        let due = windows
            .iter()
            .filter_map(|w| w.last_slot(now.to_datetime()).map(|slot| (w, slot)))
            .filter(|(_, (_, end))| *end + grace <= now.to_datetime())
            .max_by_key(|(_, (_, end))| *end);
        let Some((window, (start, end))) = due else { return Ok(out) };
        let end = Timestamp::from(end);
        let came = latest.is_some_and(|t| Timestamp::from(start) <= t && t <= end);
        if !came && remembered.missed.is_none_or(|alerted| alerted < end) {
            remembered.missed = Some(end);
            out.push(alert(now, alerts::WINDOW_MISSED, &c.id, None, format!(
                "no version was created in the slot of {window} from {} to {end} (grace {}s); the latest was created {}",
                Timestamp::from(start),
                policy.window_grace.as_secs(),
                latest.map_or_else(|| "never".to_owned(), |t| format!("at {t}"))
            )));
        }
        Ok(out)
    }
}

fn alert(now: Timestamp, action: &str, id: &CollectionId, version: Option<u64>, detail: String) -> AuditEvent {
    let mut e = AuditEvent::new(now, "detector", action).with_collection(id).with_detail(detail);
    e.version = version;
    e
}
