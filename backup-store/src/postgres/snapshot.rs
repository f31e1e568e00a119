//! Export and import: a consistent snapshot as records, and its load into an empty catalog.

use backup_core::catalog::protocol::{ImportCheck, VersionRow};
use backup_core::catalog::{CatalogRecord, ImportSummary};
use backup_core::{Error, Result, Timestamp};
use deadpool_postgres::Object;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::IsolationLevel;

use super::error::pg_error;
use super::rows::{self, AUDIT_COLUMNS, COLLECTION_COLUMNS, SESSION_COLUMNS, TOMBSTONE_COLUMNS, VERSION_COLUMNS};
use super::statements::Cached;
use super::{apply, state};

type Map = fn(&tokio_postgres::Row) -> Result<CatalogRecord>;

fn version_record(r: &tokio_postgres::Row) -> Result<CatalogRecord> {
    match rows::version_row(r)? {
        VersionRow::Pending(p) => Ok(CatalogRecord::Pending(p)),
        VersionRow::Version(v) => Ok(CatalogRecord::Version(v)),
        other => Err(Error::internal(format!("postgres catalog: a row of an unknown kind: {other:?}"))),
    }
}

/// Streams every row from one repeatable-read transaction on a connection of its own.
pub(super) async fn export(mut client: Object) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
    let (sender, rx) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
    tokio::spawn(async move {
        let result: Result<()> = async {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg_error("export"))?;
            // The first query pins the snapshot for every table that follows.
            let repository = state::repository(&tx).await?;
            if sender.send(Ok(CatalogRecord::header(Timestamp::from(chrono::Utc::now())))).await.is_err() {
                return Ok(());
            }
            if let Some(id) = repository
                && sender.send(Ok(CatalogRecord::Repository { id })).await.is_err()
            {
                return Ok(());
            }
            let tables: [(String, Map); 7] = [
                (format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"), |r| {
                    rows::collection(r).map(|(collection, counters)| CatalogRecord::Collection {
                        collection,
                        next_number: counters.next_number,
                    })
                }),
                (
                    format!(
                        "SELECT {VERSION_COLUMNS} FROM versions ORDER BY collection, state = 'pending', number, id"
                    ),
                    version_record,
                ),
                (format!("SELECT {TOMBSTONE_COLUMNS} FROM tombstones ORDER BY object_key"), |r| {
                    rows::tombstone(r).map(CatalogRecord::Tombstone)
                }),
                (format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY issued_at, id"), |r| {
                    rows::session(r).map(CatalogRecord::Session)
                }),
                (format!("SELECT {} FROM log_cursors ORDER BY name", super::audit::CURSOR_COLUMNS), |r| {
                    rows::cursor(r).map(CatalogRecord::Cursor)
                }),
                ("SELECT seq, hash FROM audit_checkpoint".to_owned(), |r| {
                    rows::audit_head(r).map(CatalogRecord::AuditCheckpoint)
                }),
                (format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"), |r| {
                    rows::audit(r).map(CatalogRecord::Audit)
                }),
            ];
            for (sql, map) in tables {
                let rows = tx.query_raw(&sql, std::iter::empty::<i64>()).await.map_err(pg_error("export"))?;
                let mut rows = std::pin::pin!(rows);
                while let Some(row) = rows.try_next().await.map_err(pg_error("export"))? {
                    if sender.send(map(&row)).await.is_err() {
                        return Ok(()); // The consumer went away.
                    }
                }
            }
            tx.commit().await.map_err(pg_error("export"))
        }
        .await;
        if let Err(e) = result {
            let _ = sender.send(Err(e)).await;
        }
    });
    Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed())
}

/// Loads a snapshot in one transaction, the tables locked against every other instance:
/// checked by [`ImportCheck`], all or nothing.
pub(super) async fn import(
    client: &mut Object,
    records: BoxStream<'static, Result<CatalogRecord>>,
) -> Result<ImportSummary> {
    let tx = client.transaction().await.map_err(pg_error("import"))?;
    let out = async {
        tx.batch_execute(
            "LOCK TABLE collections, versions, sessions, audit, audit_head, audit_checkpoint, log_cursors, tombstones, \
             repository IN EXCLUSIVE MODE",
        )
            .await
            .map_err(pg_error("import"))?;
        let used = tx
            .cquery_opt(
                "SELECT (SELECT count(*) FROM collections) + (SELECT count(*) FROM sessions) \
                 + (SELECT count(*) FROM audit) + (SELECT count(*) FROM audit_checkpoint) + (SELECT count(*) FROM log_cursors) + (SELECT count(*) FROM tombstones) + (SELECT count(*) FROM repository)",
                &[],
            )
            .await
            .map_err(pg_error("import"))?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()
            .map_err(pg_error("import"))?;
        if used.unwrap_or(0) != 0 {
            return Err(Error::conflict("import needs an empty catalog"));
        }
        let mut records = records;
        let mut check = ImportCheck::new();
        while let Some(record) = records.try_next().await? {
            apply::apply_all(&tx, &check.record(record)?).await?;
        }
        let (counters, summary) = check.finish()?;
        apply::apply_all(&tx, &counters).await?;
        Ok(summary)
    }
    .await;
    match out {
        Ok(summary) => {
            tx.commit().await.map_err(pg_error("import"))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}
