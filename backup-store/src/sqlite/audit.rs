//! The audit chain in SQLite: every step runs under the database's one writer, so the head
//! read in a step's transaction is the head its event follows.

use backup_core::audit::{AuditEvent, AuditHash, AuditHead, LogCursor};
use backup_core::{Error, Result};
use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{self, AUDIT_COLUMNS, int, micros};
use crate::error::sqlite_error;

/// The last event's head, else the checkpoint, else the genesis.
pub(super) fn head(tx: &Transaction<'_>) -> Result<AuditHead> {
    let e = sqlite_error("audit head");
    let last = tx
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], rows::audit_head).optional())
        .map_err(&e)?;
    match last {
        Some(head) => Ok(head),
        None => Ok(checkpoint(tx)?.unwrap_or(AuditHead::GENESIS)),
    }
}

/// The head kept by the last pruning.
pub(super) fn checkpoint(tx: &Transaction<'_>) -> Result<Option<AuditHead>> {
    tx.prepare_cached("SELECT seq, hash FROM audit_checkpoint WHERE singleton = 1")
        .and_then(|mut st| st.query_row([], rows::audit_head).optional())
        .map_err(sqlite_error("audit checkpoint"))
}

/// Appends `event` after the head.
pub(super) fn append(tx: &Transaction<'_>, event: &AuditEvent) -> Result<()> {
    let a = event.clone().chained(&head(tx)?)?;
    tx.prepare_cached(&format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))
        .and_then(|mut st| {
            st.execute(params![
                int(a.seq)?,
                micros(a.at),
                a.actor,
                a.action,
                a.collection.as_ref().map(|c| c.as_str()),
                a.version.map(int).transpose()?,
                a.detail,
                a.hash.map(|h| h.to_string()),
            ])
        })
        .map_err(sqlite_error("append audit"))?;
    Ok(())
}

/// Deletes the events up to `through`, keeping the head of the last one as the checkpoint.
pub(super) fn prune(tx: &Transaction<'_>, through: u64) -> Result<()> {
    let e = sqlite_error("prune audit");
    let last = tx
        .prepare_cached("SELECT seq, hash FROM audit WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([int(through)?], rows::audit_head).optional())
        .map_err(&e)?;
    if let Some(last) = last {
        set_checkpoint(tx, &last)?;
        tx.prepare_cached("DELETE FROM audit WHERE seq <= ?1")
            .and_then(|mut st| st.execute([int(last.seq)?]))
            .map_err(&e)?;
    }
    Ok(())
}

/// Sets the checkpoint.
pub(super) fn set_checkpoint(tx: &Transaction<'_>, head: &AuditHead) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO audit_checkpoint (singleton, seq, hash) VALUES (1, ?1, ?2)")
        .and_then(|mut st| st.execute(params![int(head.seq)?, head.hash.to_string()]))
        .map_err(sqlite_error("audit checkpoint"))?;
    Ok(())
}

/// Chains the events written before the log had hashes (schema 8), in order: the first
/// follows the genesis. Runs in the migration's transaction.
pub(super) fn chain_unchained(tx: &Transaction<'_>) -> Result<()> {
    let e = sqlite_error("migrate audit chain");
    let events: Vec<AuditEvent> = tx
        .prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))
        .and_then(|mut st| st.query_map([], rows::audit)?.collect())
        .map_err(&e)?;
    let mut previous = AuditHash::ZERO;
    for event in events {
        let hash = match event.hash {
            Some(h) => h,
            None => {
                let h = event.link(&previous);
                tx.execute(
                    "UPDATE audit SET hash = ?1 WHERE seq = ?2",
                    params![h.to_string(), int(event.seq).map_err(|e| Error::internal(e.to_string()))?],
                )
                .map_err(&e)?;
                h
            }
        };
        previous = hash;
    }
    Ok(())
}

/// The columns of a cursor row.
pub(super) const CURSOR_COLUMNS: &str = "name, seq, owner, lease_until, state";

/// Takes a cursor's lease (creating it), if it may be taken.
pub(super) fn claim_cursor(
    tx: &Transaction<'_>,
    name: &str,
    owner: &str,
    start_at: u64,
    now: backup_core::Timestamp,
    until: backup_core::Timestamp,
) -> Result<()> {
    let e = sqlite_error("claim log cursor");
    tx.prepare_cached(
        "INSERT OR IGNORE INTO log_cursors (name, seq, owner, lease_until, state) VALUES (?1, ?2, NULL, NULL, '')",
    )
    .and_then(|mut st| st.execute(params![name, int(start_at)?]))
    .map_err(&e)?;
    let n = tx
        .prepare_cached(
            "UPDATE log_cursors SET owner = ?2, lease_until = ?4 WHERE name = ?1 \
             AND (owner IS NULL OR lease_until IS NULL OR owner = ?2 OR lease_until <= ?3)",
        )
        .and_then(|mut st| st.execute(params![name, owner, micros(now), micros(until)]))
        .map_err(&e)?;
    if n == 0 {
        let held = cursor(tx, name)?.unwrap_or_else(|| LogCursor::new(name, start_at));
        return Err(backup_core::audit::cursor_held(&held));
    }
    Ok(())
}

/// Moves a cursor its owner holds at `from`.
pub(super) fn advance_cursor(
    tx: &Transaction<'_>,
    name: &str,
    owner: &str,
    from: u64,
    to: u64,
    state: &str,
) -> Result<()> {
    let n = tx
        .prepare_cached("UPDATE log_cursors SET seq = ?4, state = ?5 WHERE name = ?1 AND owner = ?2 AND seq = ?3")
        .and_then(|mut st| st.execute(params![name, owner, int(from)?, int(to)?, state]))
        .map_err(sqlite_error("advance log cursor"))?;
    if n == 0 {
        return Err(backup_core::audit::cursor_moved(name));
    }
    Ok(())
}

/// Writes a cursor as it is.
pub(super) fn set_cursor(tx: &Transaction<'_>, c: &LogCursor) -> Result<()> {
    tx.prepare_cached(&format!("INSERT OR REPLACE INTO log_cursors ({CURSOR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"))
        .and_then(|mut st| st.execute(params![c.name, int(c.seq)?, c.owner, c.lease_until.map(micros), c.state]))
        .map_err(sqlite_error("set log cursor"))?;
    Ok(())
}

/// One cursor.
pub(super) fn cursor(tx: &Transaction<'_>, name: &str) -> Result<Option<LogCursor>> {
    tx.prepare_cached(&format!("SELECT {CURSOR_COLUMNS} FROM log_cursors WHERE name = ?1"))
        .and_then(|mut st| st.query_row([name], rows::cursor).optional())
        .map_err(sqlite_error("read log cursor"))
}

/// Every cursor, by name.
pub(super) fn cursors(tx: &Transaction<'_>) -> Result<Vec<LogCursor>> {
    tx.prepare_cached(&format!("SELECT {CURSOR_COLUMNS} FROM log_cursors ORDER BY name"))
        .and_then(|mut st| st.query_map([], rows::cursor)?.collect())
        .map_err(sqlite_error("list log cursors"))
}
