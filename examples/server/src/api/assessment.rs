//! A collection's health: the checks its health route answers, the dashboard shows and the
//! badge sums up, computed in one place so the three never disagree.

use backup_core::catalog::CatalogExt;
use backup_core::catalog::protocol::{CollectionState, Counters, VersionRange, VersionsNeeded};
use backup_core::{Collection, CollectionId, Version, VersionQuery};
use futures::TryStreamExt;

use crate::state::AppState;

/// One check's outcome: `Err` says what is wrong.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// backup-repository's name of the check (`BackupWindowValidator`, …).
    pub(crate) name: &'static str,
    pub(crate) result: Result<(), String>,
}

impl Check {
    fn new(name: &'static str, result: Result<(), String>) -> Self {
        Check { name, result }
    }

    /// A short name for people (the dashboard's chips).
    pub(crate) fn label(&self) -> &'static str {
        match self.name {
            "BackupWindowValidator" => "window",
            "VersionsSizeValidator" => "soft limit",
            "SumOfVersionsValidator" => "hard limit",
            "IntegrityValidator" => "integrity",
            _ => self.name,
        }
    }
}

/// A collection as its health sees it: one catalog snapshot and the checks on it.
#[derive(Debug, Clone)]
pub(crate) struct Assessment {
    pub(crate) collection: Collection,
    pub(crate) counters: Counters,
    /// The newest committed version.
    pub(crate) latest: Option<Version>,
    pub(crate) checks: Vec<Check>,
}

impl Assessment {
    /// Every check passed.
    pub(crate) fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
    }
}

/// The checks of a collection's health: the last backup came in a window slot (when the
/// collection has windows), no version passes the soft limit, the sum stays under the hard
/// one, no version is quarantined. It asks no permission: the caller decided who may see it.
///
/// # Errors
/// The catalog's, [`backup_core::ErrorKind::NotFound`] for an unknown collection among them.
pub(crate) async fn assess(state: &AppState, id: &CollectionId) -> backup_core::Result<Assessment> {
    let st = snapshot(state, id).await?;
    check(state, id, st).await
}

/// [`assess`] for an anonymous visitor: the collection is read first, then `opens` decides
/// whether the visitor may see its health (`None` when not). A known collection whose code was
/// wrong and an unknown one thus cost the same catalog read: the time of a refusal does not
/// tell which it was.
///
/// # Errors
/// As [`assess`].
pub(crate) async fn assess_if(
    state: &AppState,
    id: &CollectionId,
    opens: impl FnOnce() -> bool,
) -> backup_core::Result<Option<Assessment>> {
    let st = snapshot(state, id).await?;
    if !opens() {
        return Ok(None);
    }
    check(state, id, st).await.map(Some)
}

/// One snapshot: the spec, the counters and the newest version: one row, whatever the
/// history.
async fn snapshot(state: &AppState, id: &CollectionId) -> backup_core::Result<CollectionState> {
    state.inner.catalog.collection_state_with(id, VersionsNeeded::Range(VersionRange::Newest(1))).await
}

/// The checks on a snapshot.
async fn check(state: &AppState, id: &CollectionId, st: CollectionState) -> backup_core::Result<Assessment> {
    let catalog = &state.inner.catalog;
    let policy = state.inner.directory.snapshot().collections.get(id).cloned().unwrap_or_default();
    let latest = st.committed.last().cloned();
    let mut checks = Vec::new();
    if !policy.windows.is_empty() {
        let now = state.inner.clock.now();
        let created = latest.as_ref().map(|v| v.created_at.to_datetime());
        let in_slot = policy.windows.iter().any(|w| {
            w.last_slot(now).is_some_and(|(start, end)| {
                created.is_some_and(|t| start <= t && t <= end) || (start < now && now < end)
            })
        });
        let result = if in_slot {
            Ok(())
        } else {
            Err(format!(
                "previous backup was not executed in expected time slots: {}. Latest backup created at: {}",
                policy.windows.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                created.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
            ))
        };
        checks.push(Check::new("BackupWindowValidator", result));
    }
    let limits = &st.collection.spec.limits;
    let soft = limits.max_version_size;
    // The counters say whether a version is over the soft limit; only then is one looked for.
    let too_big = if st.counters.overage == 0 {
        Ok(())
    } else {
        match committed_where(catalog.as_ref(), id, 1, |v| v.size > soft).await?.first() {
            None => Ok(()),
            Some(v) => Err(format!(
                "maximum filesize is bigger than collection soft limit per file. Failed file: {} (size={}b)",
                v.filename, v.size
            )),
        }
    };
    checks.push(Check::new("VersionsSizeValidator", too_big));
    let (sum, hard) = (st.counters.bytes, limits.max_collection_size);
    checks.push(Check::new(
        "SumOfVersionsValidator",
        if sum <= hard {
            Ok(())
        } else {
            Err(format!("Summary of all files is {sum}b, while collection hard limit is {hard}b"))
        },
    ));
    let damaged = committed_where(catalog.as_ref(), id, usize::MAX, |v| v.quarantined.is_some()).await?;
    checks.push(Check::new(
        "IntegrityValidator",
        match damaged.first() {
            None => Ok(()),
            Some(v) => Err(format!(
                "{} versions are quarantined: their bytes are damaged or missing. First: version {} ({})",
                damaged.len(),
                v.number,
                v.quarantined.as_deref().unwrap_or_default()
            )),
        },
    ));
    Ok(Assessment { collection: st.collection, counters: st.counters, latest, checks })
}

/// The committed versions `keep` picks, at most `limit`, read a page at a time (committed
/// versions are bounded by the collection's `maxBackupsCount`).
async fn committed_where(
    catalog: &dyn backup_core::catalog::Catalog,
    id: &CollectionId,
    limit: usize,
    keep: impl Fn(&Version) -> bool,
) -> backup_core::Result<Vec<Version>> {
    let mut pages = catalog.version_pages(id, VersionQuery::first(1000));
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(page) = pages.try_next().await?
    {
        out.extend(page.into_iter().filter(|v| keep(v)).take(limit - out.len()));
    }
    Ok(out)
}
