//! Export and import: a consistent snapshot as records, and its load into an empty catalog.

use std::path::PathBuf;

use backup_core::catalog::protocol::ImportCheck;
use backup_core::catalog::{CatalogRecord, ImportSummary};
use backup_core::{Error, Result, Timestamp};
use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::{Transaction, TransactionBehavior};

use super::rows::{self, AUDIT_COLUMNS, COLLECTION_COLUMNS, SESSION_COLUMNS, TOMBSTONE_COLUMNS, VERSION_COLUMNS};
use super::{SqliteCatalog, apply, connection, state};
use crate::error::sqlite_error;

/// Reads a row of a table as a snapshot record.
type ToRecord = fn(&rusqlite::Row<'_>) -> rusqlite::Result<CatalogRecord>;

/// Streams every row from one read transaction on a connection (and a thread) of its own: the
/// snapshot stays open for as long as the consumer takes, without holding a reader.
pub(super) fn export(path: PathBuf) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
    let (tx_records, rx) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
    std::thread::Builder::new()
        .name("sqlite-export".into())
        .spawn(move || {
            let send = |r: Result<CatalogRecord>| tx_records.blocking_send(r).is_ok();
            if let Err(e) = export_all(&path, &send) {
                send(Err(e));
            }
        })
        .map_err(|e| Error::internal(format!("sqlite export thread: {e}")))?;
    Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed())
}

fn export_all(path: &std::path::Path, send: &impl Fn(Result<CatalogRecord>) -> bool) -> Result<()> {
    let mut conn = connection::open_connection(path)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(sqlite_error("export"))?;
    // The first read pins the snapshot for the rest of the transaction.
    let repository = state::repository(&tx)?;
    if !send(Ok(CatalogRecord::header(Timestamp::from(chrono::Utc::now())))) {
        return Ok(());
    }
    if let Some(id) = repository
        && !send(Ok(CatalogRecord::Repository { id }))
    {
        return Ok(());
    }
    let cursors = format!("SELECT {} FROM log_cursors ORDER BY name", super::audit::CURSOR_COLUMNS);
    let tables: [(&str, ToRecord); 7] = [
        (&format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"), |r| {
            rows::collection(r).map(|(collection, counters)| CatalogRecord::Collection {
                collection,
                next_number: counters.next_number,
            })
        }),
        (
            &format!("SELECT {VERSION_COLUMNS} FROM versions ORDER BY collection, state = 'pending', number, id"),
            rows::record,
        ),
        (&format!("SELECT {TOMBSTONE_COLUMNS} FROM tombstones ORDER BY object_key"), |r| {
            rows::tombstone(r).map(CatalogRecord::Tombstone)
        }),
        (&format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY issued_at, id"), |r| {
            rows::session(r).map(CatalogRecord::Session)
        }),
        (&cursors, |r| rows::cursor(r).map(CatalogRecord::Cursor)),
        ("SELECT seq, hash FROM audit_checkpoint", |r| rows::audit_head(r).map(CatalogRecord::AuditCheckpoint)),
        (&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"), |r| rows::audit(r).map(CatalogRecord::Audit)),
    ];
    for (sql, map) in tables {
        if !export_table(&tx, sql, map, send)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends every row; `false` when the consumer went away.
fn export_table(
    tx: &Transaction<'_>,
    sql: &str,
    map: ToRecord,
    send: &impl Fn(Result<CatalogRecord>) -> bool,
) -> Result<bool> {
    let mut st = tx.prepare(sql).map_err(sqlite_error("export"))?;
    let mut rows = st.query([]).map_err(sqlite_error("export"))?;
    while let Some(row) = rows.next().map_err(sqlite_error("export"))? {
        let record = map(row).map_err(sqlite_error("export"))?;
        if !send(Ok(record)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Loads a snapshot in one write transaction: checked by [`ImportCheck`], all or nothing.
pub(super) async fn import(
    catalog: &SqliteCatalog,
    records: BoxStream<'static, Result<CatalogRecord>>,
) -> Result<ImportSummary> {
    let (tx_records, mut rx) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
    let writer = catalog.write("import", false, move |tx| {
        let used: i64 = tx
            .query_row(
                "SELECT (SELECT count(*) FROM collections) + (SELECT count(*) FROM sessions) \
                 + (SELECT count(*) FROM audit) + (SELECT count(*) FROM audit_checkpoint) + (SELECT count(*) FROM log_cursors) + (SELECT count(*) FROM tombstones) + (SELECT count(*) FROM repository)",
                [],
                |r| r.get(0),
            )
            .map_err(sqlite_error("import"))?;
        if used != 0 {
            return Err(Error::conflict("import needs an empty catalog"));
        }
        let mut check = ImportCheck::new();
        while let Some(record) = rx.blocking_recv() {
            for m in check.record(record?)? {
                apply::apply(tx, &m)?;
            }
        }
        let (counters, summary) = check.finish()?;
        for m in counters {
            apply::apply(tx, &m)?;
        }
        // Explicit sequence numbers advance AUTOINCREMENT's counter, so new events follow.
        Ok(summary)
    });
    let feeder = async move {
        let mut records = records;
        while let Some(r) = records.next().await {
            if tx_records.send(r).await.is_err() {
                break; // The writer stopped (an error it reports).
            }
        }
    };
    let (summary, ()) = futures::join!(writer, feeder);
    summary
}
