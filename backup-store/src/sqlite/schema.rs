//! The SQLite schema and its versioned migrations.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{migration_error, sqlite_error};
use backup_core::{Error, Result};

/// Migrations in order; the schema version is the number applied. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE collections (
        id          TEXT PRIMARY KEY NOT NULL,
        spec        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        revision    INTEGER NOT NULL,
        next_number INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE versions (
        id               TEXT PRIMARY KEY NOT NULL,
        collection       TEXT NOT NULL REFERENCES collections(id),
        state            TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'trashed', 'purged')),
        number           INTEGER,
        filename         TEXT,
        object_key       TEXT NOT NULL,
        size             INTEGER,
        digest           TEXT,
        reserved         INTEGER,
        pool_share       INTEGER,
        lease_until      INTEGER,
        created_at       INTEGER NOT NULL,
        committed_at     INTEGER,
        trashed_at       INTEGER,
        trash_reason     TEXT,
        purged_at        INTEGER,
        uploader_user    TEXT NOT NULL,
        uploader_key     TEXT,
        uploader_session TEXT,
        UNIQUE (collection, number),
        CHECK ((state = 'pending') = (number IS NULL))
    ) STRICT;
    CREATE INDEX versions_by_collection ON versions (collection, state, number);
    CREATE INDEX versions_by_lease ON versions (state, lease_until);
    CREATE INDEX versions_by_trash ON versions (state, trashed_at);
    CREATE INDEX versions_by_key ON versions (object_key);

    CREATE TABLE sessions (
        id             TEXT PRIMARY KEY NOT NULL,
        user_name      TEXT NOT NULL,
        access_key     TEXT,
        issued_at      INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        requester_addr TEXT,
        description    TEXT NOT NULL,
        single_use     INTEGER NOT NULL,
        scope          TEXT,
        revoked_at     INTEGER
    ) STRICT;
    CREATE INDEX sessions_by_user ON sessions (user_name, issued_at);

    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        collection TEXT,
        version    INTEGER,
        detail     TEXT NOT NULL
    ) STRICT;
    "#,
    // 2: counters in the collection row (commits read them, not the history), tombstones,
    // the repository id, leases owned by engine instances, protection, verification, and
    // sessions bound to a credential.
    r#"
    ALTER TABLE collections ADD COLUMN committed_versions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN committed_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN committed_overage INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN protected_versions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN held_versions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE collections ADD COLUMN last_committed_at INTEGER;
    UPDATE collections SET
        committed_versions = (SELECT count(*) FROM versions v
            WHERE v.collection = collections.id AND v.state = 'committed'),
        committed_bytes = (SELECT coalesce(sum(v.size), 0) FROM versions v
            WHERE v.collection = collections.id AND v.state = 'committed'),
        committed_overage = (SELECT coalesce(sum(max(0, v.size - json_extract(collections.spec, '$.limits.max_version_size'))), 0)
            FROM versions v WHERE v.collection = collections.id AND v.state = 'committed'),
        last_committed_at = (SELECT max(v.committed_at) FROM versions v
            WHERE v.collection = collections.id AND v.state = 'committed');

    ALTER TABLE versions ADD COLUMN announced INTEGER;
    ALTER TABLE versions ADD COLUMN owner TEXT;
    ALTER TABLE versions ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE versions ADD COLUMN protected_until INTEGER;
    ALTER TABLE versions ADD COLUMN verified_at INTEGER;
    ALTER TABLE versions ADD COLUMN quarantined TEXT;
    CREATE INDEX versions_by_owner ON versions (owner) WHERE state = 'pending';

    CREATE TABLE tombstones (
        object_key  TEXT PRIMARY KEY NOT NULL,
        collection  TEXT NOT NULL,
        version     TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('released', 'purged')),
        recorded_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tombstones_by_collection ON tombstones (collection, object_key);

    CREATE TABLE repository (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        id        TEXT NOT NULL
    ) STRICT;

    ALTER TABLE sessions ADD COLUMN credential TEXT;
    ALTER TABLE sessions ADD COLUMN chain_started_at INTEGER;
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    "#,
    // 3: the store's id of an upload's multipart upload, to abort it when the upload is
    // released (also by another instance, after a crash).
    r#"
    ALTER TABLE versions ADD COLUMN staging TEXT;
    ALTER TABLE tombstones ADD COLUMN staging TEXT;
    "#,
    // 4: a version's metadata, as a JSON object (NULL: none).
    r#"
    ALTER TABLE versions ADD COLUMN metadata TEXT;
    "#,
    // 5: the mark of a version whose description is not written yet for its current record
    // (NULL: written), with an index of the marked versions only, so recover() finds them
    // whatever the history. Versions from before are not marked: scrubs cover them, as before.
    r#"
    ALTER TABLE versions ADD COLUMN undescribed INTEGER;
    CREATE INDEX versions_undescribed ON versions (id) WHERE undescribed IS NOT NULL;
    "#,
    // 6: the count of committed versions in quarantine, with the other counters in the
    // collection row (a collection's health reads it instead of its versions), counted from
    // the versions that are there.
    r#"
    ALTER TABLE collections ADD COLUMN quarantined_versions INTEGER NOT NULL DEFAULT 0;
    UPDATE collections SET quarantined_versions = (SELECT count(*) FROM versions v
        WHERE v.collection = collections.id AND v.state = 'committed' AND v.quarantined IS NOT NULL);
    "#,
    // 7: a version's retention lock: its mode and when it ends (both NULL: not locked).
    r#"
    ALTER TABLE versions ADD COLUMN lock_mode TEXT CHECK (lock_mode IN ('governance', 'compliance'));
    ALTER TABLE versions ADD COLUMN locked_until INTEGER;
    "#,
    // 8: the audit chain: each event's hash (hex; the events before this migration are
    // chained by it, in order, see `audit::chain_unchained`) and the head of the pruned part;
    // the log's readers (notification targets, detectors) and their places.
    r#"
    ALTER TABLE audit ADD COLUMN hash TEXT;
    CREATE TABLE audit_checkpoint (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        seq       INTEGER NOT NULL,
        hash      TEXT NOT NULL
    ) STRICT;
    CREATE TABLE log_cursors (
        name        TEXT PRIMARY KEY NOT NULL,
        seq         INTEGER NOT NULL,
        owner       TEXT,
        lease_until INTEGER,
        state       TEXT NOT NULL
    ) STRICT;
    "#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], one transaction per migration.
///
/// # Errors
/// [`Error::Backend`] naming the found version when the database was written by a newer
/// build; SQLite errors.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sqlite_error("migrate"))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT")
        .map_err(sqlite_error("migrate"))?;
    let found: Option<i64> = tx
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(sqlite_error("migrate"))?
        .flatten();
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(migration_error("sqlite catalog", found, SCHEMA_VERSION));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(|e| {
            Error::backend(
                backup_core::ErrorKind::Internal,
                "sqlite catalog",
                "migrate",
                format!("migration {} failed: {e}", i + 1),
            )
        })?;
    }
    if found < 8 {
        super::audit::chain_unchained(&tx)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", []).map_err(sqlite_error("migrate"))?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [SCHEMA_VERSION])
            .map_err(sqlite_error("migrate"))?;
    }
    tx.commit().map_err(sqlite_error("migrate"))
}
