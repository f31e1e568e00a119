//! The checks of an import, once for every catalog: [`ImportCheck`] turns snapshot records
//! into mutations, refusing what would make an inconsistent catalog.

use std::collections::{BTreeMap, HashSet};

use crate::catalog::snapshot::{CatalogRecord, ImportSummary};
use crate::error::{Error, Result};
use crate::id::{CollectionId, SessionId, VersionId};
use crate::protocol::mutation::Mutation;
use crate::protocol::state::Counters;
use crate::protocol::versions::counters_after;
use crate::version::{MAX_VERSION_NUMBER, VersionState, check_version_number};

/// Checks a snapshot record by record and says what to write for each; a catalog applies the
/// mutations of the whole snapshot in one transaction, then those of [`ImportCheck::finish`]
/// (every collection's counters, computed from its versions).
///
/// ```
/// use backup_core::catalog::CatalogRecord;
/// use backup_core::catalog::protocol::ImportCheck;
/// use backup_core::Timestamp;
///
/// let mut check = ImportCheck::new();
/// check.record(CatalogRecord::header(Timestamp::UNIX_EPOCH))?;
/// let e = check.record(CatalogRecord::header(Timestamp::UNIX_EPOCH)).unwrap_err();
/// assert!(e.to_string().contains("a second header"));
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct ImportCheck {
    header: bool,
    collections: BTreeMap<CollectionId, (crate::spec::CollectionSpec, Counters)>,
    version_ids: HashSet<VersionId>,
    numbers: HashSet<(CollectionId, u64)>,
    sessions: HashSet<SessionId>,
    cursors: HashSet<String>,
    tombstones: HashSet<String>,
    repository: bool,
    last_audit: u64,
    audit_started: bool,
    summary: ImportSummary,
}

fn bad(reason: String) -> Error {
    Error::invalid("catalog snapshot", reason)
}

impl ImportCheck {
    /// A check expecting a header first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one record and returns what to write for it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming what is wrong: no header first, a second header, a
    /// version of an unknown collection or out of sequence, a number out of range
    /// ([`crate::check_version_number`]), anything twice.
    pub fn record(&mut self, record: CatalogRecord) -> Result<Vec<Mutation>> {
        if !self.header {
            record.check_header()?;
            self.header = true;
            return Ok(vec![]);
        }
        self.summary.count(&record);
        Ok(match record {
            CatalogRecord::Header { .. } => return Err(bad("a second header".into())),
            CatalogRecord::Repository { id } => {
                if std::mem::replace(&mut self.repository, true) {
                    return Err(bad("a second repository id".into()));
                }
                vec![Mutation::SetRepository(id)]
            }
            CatalogRecord::Collection { collection, next_number } => {
                if next_number == 0 || next_number > MAX_VERSION_NUMBER + 1 {
                    return Err(bad(format!(
                        "collection {} has next number {next_number}, out of range (1 to {})",
                        collection.id,
                        MAX_VERSION_NUMBER + 1
                    )));
                }
                let counters = Counters { next_number, ..Counters::empty() };
                if self.collections.insert(collection.id.clone(), (collection.spec.clone(), counters)).is_some() {
                    return Err(bad(format!("collection {} twice", collection.id)));
                }
                vec![Mutation::CreateCollection(collection)]
            }
            CatalogRecord::Version(v) => {
                let Some((spec, counters)) = self.collections.get_mut(&v.collection) else {
                    return Err(bad(format!("version {} of unknown collection {}", v.number, v.collection)));
                };
                if let Err(e) = check_version_number(v.number) {
                    return Err(bad(format!("version {} of {}: {e}", v.number, v.collection)));
                }
                if v.number >= counters.next_number || v.state == VersionState::Pending {
                    return Err(bad(format!("version {} of {} is out of sequence", v.number, v.collection)));
                }
                if !self.version_ids.insert(v.id) || !self.numbers.insert((v.collection.clone(), v.number)) {
                    return Err(bad(format!("version {} of {} twice", v.number, v.collection)));
                }
                if v.state == VersionState::Committed {
                    // The same count as every step's, so imported counters cannot drift.
                    *counters = counters_after(counters, spec, Some(&v), &[]);
                    counters.last_committed_at = counters.last_committed_at.max(Some(v.committed_at));
                }
                vec![Mutation::InsertVersion(v)]
            }
            CatalogRecord::Pending(p) => {
                if !self.collections.contains_key(&p.collection) {
                    return Err(bad(format!("upload {} of unknown collection {}", p.id, p.collection)));
                }
                if !self.version_ids.insert(p.id) {
                    return Err(bad(format!("upload {} twice", p.id)));
                }
                vec![Mutation::InsertPending(p)]
            }
            CatalogRecord::Tombstone(t) => {
                if !self.tombstones.insert(t.object_key.clone()) {
                    return Err(bad(format!("tombstone of {} twice", t.object_key)));
                }
                vec![Mutation::InsertTombstone(t)]
            }
            CatalogRecord::Session(s) => {
                if !self.sessions.insert(s.id.clone()) {
                    return Err(bad("a session twice".into()));
                }
                vec![Mutation::InsertSession(s)]
            }
            CatalogRecord::Cursor(c) => {
                if !self.cursors.insert(c.name.clone()) {
                    return Err(bad(format!("cursor {} twice", c.name)));
                }
                vec![Mutation::SetCursor(c)]
            }
            CatalogRecord::AuditCheckpoint(head) => {
                if self.audit_started {
                    return Err(bad("an audit checkpoint after audit events".into()));
                }
                self.audit_started = true;
                self.last_audit = head.seq;
                vec![Mutation::SetAuditCheckpoint(head)]
            }
            CatalogRecord::Audit(e) => {
                self.audit_started = true;
                if e.seq <= self.last_audit {
                    return Err(bad(format!("audit event {} out of order", e.seq)));
                }
                self.last_audit = e.seq;
                vec![Mutation::AppendAudit(e)]
            }
        })
    }

    /// The counters of every collection, and what was imported.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a snapshot without a header.
    pub fn finish(self) -> Result<(Vec<Mutation>, ImportSummary)> {
        if !self.header {
            return Err(bad("it is empty".into()));
        }
        let mutations = self
            .collections
            .into_iter()
            .map(|(collection, (_, counters))| Mutation::SetCounters { collection, counters })
            .collect();
        Ok((mutations, self.summary))
    }
}
