//! Catalog snapshots: every row of a catalog as a stream of records, for export and import.

use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditHead};
use crate::error::{Error, Result};
use crate::id::RepositoryId;
use crate::session::Session;
use crate::time::Timestamp;
use crate::version::{Collection, PendingUpload, Tombstone, Version};

/// The format name in a snapshot's header.
pub const SNAPSHOT_FORMAT: &str = "backup-engine-catalog";
/// The newest snapshot format version this build writes and reads (2 added the repository
/// id, tombstones, protection and verification; 3 the audit chain's hashes and checkpoint;
/// older snapshots read as before, their events chained as they are imported).
pub const SNAPSHOT_VERSION: u32 = 3;

/// One record of a catalog snapshot. A snapshot is a header, then the repository id, every
/// collection, every version (pending uploads included), every tombstone, every session, the
/// log cursors, the audit checkpoint and every audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CatalogRecord {
    /// What follows, and when it was taken.
    Header {
        /// Always [`SNAPSHOT_FORMAT`].
        format: String,
        /// The format version, at most [`SNAPSHOT_VERSION`].
        version: u32,
        /// When the snapshot was taken.
        exported_at: Timestamp,
    },
    /// The repository the catalog belongs to.
    Repository {
        /// Its id.
        id: RepositoryId,
    },
    /// A collection with its number counter.
    Collection {
        /// The collection.
        collection: Collection,
        /// The number its next committed version gets.
        next_number: u64,
    },
    /// A committed, trashed or purged version.
    Version(Version),
    /// An upload in flight.
    Pending(PendingUpload),
    /// An object the catalog gave up, not yet confirmed deleted.
    Tombstone(Tombstone),
    /// A session.
    Session(Session),
    /// A reader's place in the audit log (format 3).
    Cursor(crate::audit::LogCursor),
    /// The head of the pruned part of the audit log, before its first event (format 3).
    AuditCheckpoint(AuditHead),
    /// An audit event, with its sequence number (and, from format 3, its hash).
    Audit(AuditEvent),
}

impl CatalogRecord {
    /// The header of a snapshot taken at `exported_at`.
    pub fn header(exported_at: impl Into<Timestamp>) -> Self {
        CatalogRecord::Header {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: SNAPSHOT_VERSION,
            exported_at: exported_at.into(),
        }
    }

    /// Checks that this is a header this build can read.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for anything else.
    pub fn check_header(&self) -> Result<()> {
        match self {
            CatalogRecord::Header { format, version, .. }
                if format == SNAPSHOT_FORMAT && *version <= SNAPSHOT_VERSION =>
            {
                Ok(())
            }
            CatalogRecord::Header { format, version, .. } => Err(Error::invalid(
                "catalog snapshot",
                format!(
                    "format {format:?} version {version} is not {SNAPSHOT_FORMAT:?} up to version {SNAPSHOT_VERSION}"
                ),
            )),
            _ => Err(Error::invalid("catalog snapshot", "it does not start with a header")),
        }
    }
}

/// What an import loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportSummary {
    /// Collections.
    pub collections: u64,
    /// Versions, pending uploads included.
    pub versions: u64,
    /// Sessions.
    pub sessions: u64,
    /// Audit events.
    pub audit_events: u64,
    /// Tombstones.
    pub tombstones: u64,
}

impl ImportSummary {
    /// Counts one record.
    pub fn count(&mut self, record: &CatalogRecord) {
        match record {
            CatalogRecord::Collection { .. } => self.collections += 1,
            CatalogRecord::Version(_) | CatalogRecord::Pending(_) => self.versions += 1,
            CatalogRecord::Session(_) => self.sessions += 1,
            CatalogRecord::Audit(_) => self.audit_events += 1,
            CatalogRecord::Tombstone(_) => self.tombstones += 1,
            CatalogRecord::Header { .. }
            | CatalogRecord::Repository { .. }
            | CatalogRecord::AuditCheckpoint(_)
            | CatalogRecord::Cursor(_) => {}
        }
    }
}
