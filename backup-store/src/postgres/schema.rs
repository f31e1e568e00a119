//! The PostgreSQL schema and its versioned migrations.

use backup_core::{Error, ErrorKind, Result};
use tokio_postgres::Client;

use super::error::pg_error;
use crate::error::migration_error;

/// Migrations in order; the schema version is the number applied. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE collections (
        id          TEXT COLLATE "C" PRIMARY KEY,
        spec        TEXT NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        updated_at  TIMESTAMPTZ NOT NULL,
        revision    BIGINT NOT NULL,
        next_number BIGINT NOT NULL
    );

    CREATE TABLE versions (
        id               UUID PRIMARY KEY,
        collection       TEXT COLLATE "C" NOT NULL REFERENCES collections (id),
        state            TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'trashed', 'purged')),
        number           BIGINT,
        filename         TEXT,
        object_key       TEXT NOT NULL,
        size             BIGINT,
        digest           TEXT,
        reserved         BIGINT,
        pool_share       BIGINT,
        lease_until      TIMESTAMPTZ,
        created_at       TIMESTAMPTZ NOT NULL,
        committed_at     TIMESTAMPTZ,
        trashed_at       TIMESTAMPTZ,
        trash_reason     TEXT,
        purged_at        TIMESTAMPTZ,
        uploader_user    TEXT NOT NULL,
        uploader_key     TEXT,
        uploader_session TEXT,
        UNIQUE (collection, number),
        CHECK ((state = 'pending') = (number IS NULL))
    );
    CREATE INDEX versions_by_collection ON versions (collection, state, number);
    CREATE INDEX versions_by_lease ON versions (state, lease_until);
    CREATE INDEX versions_by_trash ON versions (state, trashed_at);
    CREATE INDEX versions_by_key ON versions (object_key);

    CREATE TABLE sessions (
        id             TEXT PRIMARY KEY,
        user_name      TEXT NOT NULL,
        access_key     TEXT,
        issued_at      TIMESTAMPTZ NOT NULL,
        expires_at     TIMESTAMPTZ NOT NULL,
        requester_addr TEXT,
        description    TEXT NOT NULL,
        single_use     BOOLEAN NOT NULL,
        scope          TEXT,
        revoked_at     TIMESTAMPTZ
    );
    CREATE INDEX sessions_by_user ON sessions (user_name, issued_at);

    CREATE TABLE audit (
        seq        BIGSERIAL PRIMARY KEY,
        at         TIMESTAMPTZ NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        collection TEXT,
        version    BIGINT,
        detail     TEXT NOT NULL
    );
    "#,
    // 2: counters in the collection row (commits read them, not the history), tombstones,
    // the repository id, leases owned by engine instances, protection, verification, and
    // sessions bound to a credential.
    r#"
    ALTER TABLE collections
        ADD COLUMN committed_versions BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN committed_bytes BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN committed_overage BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN protected_versions BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN held_versions BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN last_committed_at TIMESTAMPTZ;
    UPDATE collections c SET
        committed_versions = s.n,
        committed_bytes = s.bytes,
        committed_overage = s.overage,
        last_committed_at = s.last
    FROM (
        SELECT v.collection, count(*) AS n, coalesce(sum(v.size), 0) AS bytes,
            coalesce(sum(greatest(0, v.size - (c2.spec::jsonb -> 'limits' ->> 'max_version_size')::bigint)), 0) AS overage,
            max(v.committed_at) AS last
        FROM versions v JOIN collections c2 ON c2.id = v.collection
        WHERE v.state = 'committed' GROUP BY v.collection
    ) s
    WHERE s.collection = c.id;

    ALTER TABLE versions
        ADD COLUMN announced BIGINT,
        ADD COLUMN owner TEXT,
        ADD COLUMN held BOOLEAN NOT NULL DEFAULT false,
        ADD COLUMN protected_until TIMESTAMPTZ,
        ADD COLUMN verified_at TIMESTAMPTZ,
        ADD COLUMN quarantined TEXT;
    CREATE INDEX versions_by_owner ON versions (owner) WHERE state = 'pending';

    CREATE TABLE tombstones (
        object_key  TEXT COLLATE "C" PRIMARY KEY,
        collection  TEXT COLLATE "C" NOT NULL,
        version     UUID NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('released', 'purged')),
        recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX tombstones_by_collection ON tombstones (collection, object_key);

    CREATE TABLE repository (
        singleton INT PRIMARY KEY CHECK (singleton = 1),
        id        UUID NOT NULL
    );

    ALTER TABLE sessions
        ADD COLUMN credential TEXT,
        ADD COLUMN chain_started_at TIMESTAMPTZ;
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
    ALTER TABLE versions ADD COLUMN undescribed BIGINT;
    CREATE INDEX versions_undescribed ON versions (id) WHERE undescribed IS NOT NULL;
    "#,
    // 6: the count of committed versions in quarantine, with the other counters in the
    // collection row (a collection's health reads it instead of its versions), counted from
    // the versions that are there.
    r#"
    ALTER TABLE collections ADD COLUMN quarantined_versions BIGINT NOT NULL DEFAULT 0;
    UPDATE collections c SET quarantined_versions = s.n
    FROM (
        SELECT v.collection, count(*) AS n FROM versions v
        WHERE v.state = 'committed' AND v.quarantined IS NOT NULL GROUP BY v.collection
    ) s
    WHERE s.collection = c.id;
    "#,
    // 7: a version's retention lock: its mode and when it ends (both NULL: not locked).
    r#"
    ALTER TABLE versions
        ADD COLUMN lock_mode TEXT CHECK (lock_mode IN ('governance', 'compliance')),
        ADD COLUMN locked_until TIMESTAMPTZ;
    "#,
    // 8: the audit chain: each event's hash (hex; the events before this migration are
    // chained by it, in order, see `audit::chain_unchained`), the head of the pruned part, and
    // the log's head in one row that every append locks, so that two transactions never
    // chain to the same event; the log's readers (notification targets, detectors) and their
    // places.
    r#"
    ALTER TABLE audit ADD COLUMN hash TEXT;
    CREATE TABLE audit_checkpoint (
        singleton INT PRIMARY KEY CHECK (singleton = 1),
        seq       BIGINT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE TABLE audit_head (
        singleton INT PRIMARY KEY CHECK (singleton = 1),
        seq       BIGINT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE TABLE log_cursors (
        name        TEXT PRIMARY KEY,
        seq         BIGINT NOT NULL,
        owner       TEXT,
        lease_until TIMESTAMPTZ,
        state       TEXT NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, under an advisory lock so
/// that instances starting together migrate once.
///
/// # Errors
/// [`Error::Backend`] naming the found version when a newer build wrote the database.
pub(crate) async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await.map_err(pg_error("migrate"))?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.backup-engine-migrate'))", &[])
        .await
        .map_err(pg_error("migrate"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await
        .map_err(pg_error("migrate"))?;
    let found: Option<i64> = tx
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(pg_error("migrate"))?
        .try_get(0)
        .map_err(pg_error("migrate"))?;
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(migration_error("postgres catalog", found, SCHEMA_VERSION));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(|e| {
            Error::backend(
                ErrorKind::Internal,
                "postgres catalog",
                "migrate",
                format!("migration {} failed: {e}", i + 1),
            )
        })?;
    }
    if found < 8 {
        super::audit::chain_unchained(&tx).await?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM schema_version", &[]).await.map_err(pg_error("migrate"))?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&SCHEMA_VERSION])
            .await
            .map_err(pg_error("migrate"))?;
    }
    tx.commit().await.map_err(pg_error("migrate"))
}
