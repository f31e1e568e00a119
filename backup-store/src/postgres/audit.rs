//! The audit chain in PostgreSQL. Transactions of several instances append at once, so the
//! log's head lives in one row (`audit_head`) that an append locks (`FOR UPDATE`) until its
//! transaction ends: the next append reads the head this one wrote. Only appends wait on it,
//! and only from their append to their commit.

use backup_core::audit::{AuditEvent, AuditHead, LogCursor};
use backup_core::catalog::protocol::Mutation;
use backup_core::{Error, Result};
use deadpool_postgres::GenericClient;

use super::error::pg_error;
use super::rows::{self, AUDIT_COLUMNS, int, ts};
use super::statements::Cached;

/// Applies a step's log mutations, in order.
pub(super) async fn apply(client: &impl GenericClient, mutations: &[&Mutation]) -> Result<()> {
    if mutations.is_empty() {
        return Ok(());
    }
    let e = pg_error("append audit");
    let mut head = client
        .cquery_opt("SELECT seq, hash FROM audit_head WHERE singleton = 1 FOR UPDATE", &[])
        .await
        .map_err(&e)?
        .map(|r| rows::audit_head(&r))
        .transpose()?
        .ok_or_else(|| Error::internal("postgres catalog: the audit head's row is missing"))?;
    let mut inserts = Vec::new();
    for m in mutations {
        match m {
            Mutation::AppendAudit(event) => {
                let event = event.clone().chained(&head)?;
                head = event.head()?;
                inserts.push(event);
            }
            Mutation::PruneAudit { through } => {
                flush(client, std::mem::take(&mut inserts)).await?;
                prune(client, *through).await?;
            }
            Mutation::SetAuditCheckpoint(checkpoint) => {
                flush(client, std::mem::take(&mut inserts)).await?;
                set_checkpoint(client, checkpoint).await?;
                if checkpoint.seq > head.seq {
                    head = *checkpoint;
                }
            }
            other => return Err(Error::internal(format!("postgres catalog: {other:?} is not an audit mutation"))),
        }
    }
    flush(client, inserts).await?;
    client
        .cexecute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE singleton = 1",
            &[&int(head.seq)?, &head.hash.to_string()],
        )
        .await
        .map_err(&e)?;
    Ok(())
}

/// Appends `event` after the head in one statement: the head's row is updated (its lock held
/// until the transaction ends) with the next number and the link computed by the database
/// from the old head, [`backup_core::audit::AUDIT_LINK_TAG`] and [`AuditEvent::link_tail`],
/// and the event inserted with them. The same hash as [`AuditEvent::link`].
pub(super) async fn append_linked(client: &impl GenericClient, event: &AuditEvent) -> Result<()> {
    let version = event.version.map(int).transpose()?;
    let collection = event.collection.as_ref().map(|c| c.as_str());
    let (tag, tail) = (backup_core::audit::AUDIT_LINK_TAG, event.link_tail());
    client
        .cexecute(
            "WITH h AS (UPDATE audit_head SET seq = seq + 1, \
             hash = encode(sha256($1::bytea || decode(hash, 'hex') || int8send(seq + 1) || $2::bytea), 'hex') \
             WHERE singleton = 1 RETURNING seq, hash) \
             INSERT INTO audit (seq, at, actor, action, collection, version, detail, hash) \
             SELECT h.seq, $3, $4, $5, $6, $7, $8, h.hash FROM h",
            &[&tag, &tail, &ts(event.at), &event.actor, &event.action, &collection, &version, &event.detail],
        )
        .await
        .map_err(pg_error("append audit"))?;
    Ok(())
}

/// Inserts chained events (pipelined: each has its number and hash already).
async fn flush(client: &impl GenericClient, events: Vec<AuditEvent>) -> Result<()> {
    let sql = format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    let results = futures::future::join_all(events.iter().map(|a| {
        let sql = &sql;
        async move {
            let version = a.version.map(int).transpose()?;
            let collection = a.collection.as_ref().map(|c| c.as_str());
            let hash = a.hash.map(|h| h.to_string());
            client
                .cexecute(sql, &[&int(a.seq)?, &ts(a.at), &a.actor, &a.action, &collection, &version, &a.detail, &hash])
                .await
                .map_err(pg_error("append audit"))
        }
    }))
    .await;
    results.into_iter().collect::<Result<Vec<u64>>>().map(|_| ())
}

/// Deletes the events up to `through`, keeping the head of the last one as the checkpoint.
async fn prune(client: &impl GenericClient, through: u64) -> Result<()> {
    let e = pg_error("prune audit");
    let last = client
        .cquery_opt("SELECT seq, hash FROM audit WHERE seq <= $1 ORDER BY seq DESC LIMIT 1", &[&int(through)?])
        .await
        .map_err(&e)?
        .map(|r| rows::audit_head(&r))
        .transpose()?;
    if let Some(last) = last {
        set_checkpoint(client, &last).await?;
        client.cexecute("DELETE FROM audit WHERE seq <= $1", &[&int(last.seq)?]).await.map_err(&e)?;
    }
    Ok(())
}

/// The log's head, from its row (no lock: a read).
pub(super) async fn head(client: &impl GenericClient) -> Result<AuditHead> {
    client
        .cquery_opt("SELECT seq, hash FROM audit_head WHERE singleton = 1", &[])
        .await
        .map_err(pg_error("audit head"))?
        .map(|r| rows::audit_head(&r))
        .transpose()
        .map(|h| h.unwrap_or(AuditHead::GENESIS))
}

/// Keeps `head` as the checkpoint.
async fn set_checkpoint(client: &impl GenericClient, head: &AuditHead) -> Result<()> {
    client
        .cexecute(
            "INSERT INTO audit_checkpoint (singleton, seq, hash) VALUES (1, $1, $2) \
             ON CONFLICT (singleton) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            &[&int(head.seq)?, &head.hash.to_string()],
        )
        .await
        .map_err(pg_error("audit checkpoint"))?;
    Ok(())
}

/// The head kept by the last pruning.
pub(super) async fn checkpoint(client: &impl GenericClient) -> Result<Option<AuditHead>> {
    client
        .cquery_opt("SELECT seq, hash FROM audit_checkpoint WHERE singleton = 1", &[])
        .await
        .map_err(pg_error("audit checkpoint"))?
        .map(|r| rows::audit_head(&r))
        .transpose()
}

/// Chains the events written before the log had hashes (schema 8), in order, and writes the
/// head's row. Runs in the migration's transaction.
pub(super) async fn chain_unchained(client: &tokio_postgres::Transaction<'_>) -> Result<()> {
    let e = pg_error("migrate audit chain");
    let found = client.query(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"), &[]).await.map_err(&e)?;
    let mut head = AuditHead::GENESIS;
    for row in &found {
        let event = rows::audit(row)?;
        let hash = match event.hash {
            Some(h) => h,
            None => {
                let h = event.link(&head.hash);
                client
                    .execute("UPDATE audit SET hash = $1 WHERE seq = $2", &[&h.to_string(), &int(event.seq)?])
                    .await
                    .map_err(&e)?;
                h
            }
        };
        head = AuditHead { seq: event.seq, hash };
    }
    client
        .execute(
            "INSERT INTO audit_head (singleton, seq, hash) VALUES (1, $1, $2)",
            &[&int(head.seq)?, &head.hash.to_string()],
        )
        .await
        .map_err(&e)?;
    Ok(())
}

/// The columns of a cursor row.
pub(super) const CURSOR_COLUMNS: &str = "name, seq, owner, lease_until, state";

/// Applies a cursor mutation: compare-and-set writes of one row.
pub(super) async fn apply_cursor(client: &impl GenericClient, m: &Mutation) -> Result<()> {
    let e = pg_error("log cursor");
    match m {
        Mutation::ClaimCursor { name, owner, start_at, now, until } => {
            client
                .cexecute(
                    "INSERT INTO log_cursors (name, seq, owner, lease_until, state) VALUES ($1, $2, NULL, NULL, '') \
                     ON CONFLICT (name) DO NOTHING",
                    &[name, &int(*start_at)?],
                )
                .await
                .map_err(&e)?;
            let n = client
                .cexecute(
                    "UPDATE log_cursors SET owner = $2, lease_until = $4 WHERE name = $1 \
                     AND (owner IS NULL OR lease_until IS NULL OR owner = $2 OR lease_until <= $3)",
                    &[name, owner, &ts(*now), &ts(*until)],
                )
                .await
                .map_err(&e)?;
            if n == 0 {
                let held = cursor(client, name).await?.unwrap_or_else(|| LogCursor::new(name.clone(), *start_at));
                return Err(backup_core::audit::cursor_held(&held));
            }
        }
        Mutation::AdvanceCursor { name, owner, from, to, state } => {
            let n = client
                .cexecute(
                    "UPDATE log_cursors SET seq = $4, state = $5 WHERE name = $1 AND owner = $2 AND seq = $3",
                    &[name, owner, &int(*from)?, &int(*to)?, state],
                )
                .await
                .map_err(&e)?;
            if n == 0 {
                return Err(backup_core::audit::cursor_moved(name));
            }
        }
        Mutation::SetCursor(c) => {
            client
                .cexecute(
                    &format!(
                        "INSERT INTO log_cursors ({CURSOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) \
                         DO UPDATE SET seq = excluded.seq, owner = excluded.owner, \
                         lease_until = excluded.lease_until, state = excluded.state"
                    ),
                    &[&c.name, &int(c.seq)?, &c.owner, &c.lease_until.map(ts), &c.state],
                )
                .await
                .map_err(&e)?;
        }
        other => return Err(Error::internal(format!("postgres catalog: {other:?} is not a cursor mutation"))),
    }
    Ok(())
}

/// One cursor.
async fn cursor(client: &impl GenericClient, name: &str) -> Result<Option<LogCursor>> {
    client
        .cquery_opt(&format!("SELECT {CURSOR_COLUMNS} FROM log_cursors WHERE name = $1"), &[&name])
        .await
        .map_err(pg_error("read log cursor"))?
        .map(|r| rows::cursor(&r))
        .transpose()
}

/// Every cursor, by name.
pub(super) async fn cursors(client: &impl GenericClient) -> Result<Vec<LogCursor>> {
    client
        .cquery(&format!("SELECT {CURSOR_COLUMNS} FROM log_cursors ORDER BY name"), &[])
        .await
        .map_err(pg_error("list log cursors"))?
        .iter()
        .map(rows::cursor)
        .collect()
}
