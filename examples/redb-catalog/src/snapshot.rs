//! Export and import: every row as snapshot records, from one read transaction; a snapshot
//! loaded into an empty catalog in one write transaction, checked by [`ImportCheck`].

use std::sync::Arc;

use backup_core::catalog::protocol::ImportCheck;
use backup_core::catalog::{CatalogRecord, ImportSummary};
use backup_core::{Error, Result, Timestamp};
use futures::StreamExt;
use futures::stream::BoxStream;
use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::blocking;
use crate::read::repository_id;
use crate::tables::*;
use crate::write::Writer;

/// Streams the snapshot of the moment of the call: the read transaction is begun before this
/// returns, and a blocking task walks it as the consumer reads.
pub(crate) async fn export(db: Arc<Database>) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
    let tx = blocking("export", move || Ok(db.begin_read()?)).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
    tokio::task::spawn_blocking(move || {
        let send = |r: CatalogRecord| {
            sender.blocking_send(Ok(r)).map_err(|_| Fail::Step(Error::internal("the export's reader went away")))
        };
        let result = export_all(&tx, &send);
        // The snapshot goes before the stream ends: a reader that then closes the catalog
        // finds nothing of it still open.
        drop(tx);
        if let Err(e) = result {
            // Sent if the reader is still there; it is the end of the stream either way.
            let _ = sender.blocking_send(Err(e.into_error("export")));
        }
    });
    Ok(futures::stream::unfold(receiver, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed())
}

/// Header, repository, collections, versions (by collection and number, then its pending
/// uploads), tombstones, sessions, audit events.
fn export_all(tx: &ReadTransaction, send: &impl Fn(CatalogRecord) -> Res<()>) -> Res<()> {
    send(CatalogRecord::header(Timestamp::from(backup_core::chrono::Utc::now())))?;
    if let Some(id) = repository_id(&tx.open_table(META)?)? {
        send(CatalogRecord::Repository { id })?;
    }
    let collections = tx.open_table(COLLECTIONS)?;
    let mut ids = Vec::new();
    for entry in collections.range::<&str>(..)? {
        let (collection, counters) = from_json::<CollectionRow>(entry?.1.value())?;
        ids.push(collection.id.clone());
        send(CatalogRecord::Collection { collection, next_number: counters.next_number })?;
    }
    let (versions, numbers, pending) = (tx.open_table(VERSIONS)?, tx.open_table(NUMBERS)?, tx.open_table(PENDING)?);
    // Rows are stored as their records.
    let record = |id: &str| -> Res<()> {
        if let Some(bytes) = versions.get(id)? {
            send(from_json(bytes.value())?)?;
        }
        Ok(())
    };
    for c in &ids {
        let c = c.as_str();
        for entry in numbers.range((c, 0)..=(c, u64::MAX))? {
            record(entry?.1.value())?;
        }
        for entry in pending.range((c, "")..)? {
            let (key, _) = entry?;
            match key.value() {
                (of, id) if of == c => record(id)?,
                _ => break,
            }
        }
    }
    for entry in tx.open_table(TOMBSTONES)?.range::<&str>(..)? {
        send(CatalogRecord::Tombstone(from_json(entry?.1.value())?))?;
    }
    for entry in tx.open_table(SESSIONS)?.range::<&str>(..)? {
        send(CatalogRecord::Session(from_json(entry?.1.value())?))?;
    }
    for c in super::read::list_cursors(tx)? {
        send(CatalogRecord::Cursor(c))?;
    }
    if let Some(head) = super::read::audit_checkpoint(&tx.open_table(META)?)? {
        send(CatalogRecord::AuditCheckpoint(head))?;
    }
    for entry in tx.open_table(AUDIT)?.range::<u64>(..)? {
        send(CatalogRecord::Audit(from_json(entry?.1.value())?))?;
    }
    Ok(())
}

/// Loads a snapshot into an empty catalog, all or nothing: one write transaction on a
/// blocking thread, fed the records through a channel as the stream yields them.
pub(crate) async fn import(
    db: Arc<Database>,
    records: BoxStream<'static, Result<CatalogRecord>>,
) -> Result<ImportSummary> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<CatalogRecord>>(256);
    let writer = blocking("import", move || {
        let tx = db.begin_write()?;
        let summary = {
            let mut w = Writer::open(&tx)?;
            if !w.is_empty()? {
                return Err(Error::conflict("import needs an empty catalog").into());
            }
            let mut check = ImportCheck::new();
            while let Some(record) = receiver.blocking_recv() {
                for m in check.record(record?)? {
                    w.apply(m)?;
                }
            }
            let (counters, summary) = check.finish()?;
            for m in counters {
                w.apply(m)?;
            }
            summary
        };
        tx.commit()?;
        Ok(summary)
    });
    let feeder = async move {
        let mut records = records;
        while let Some(r) = records.next().await {
            if sender.send(r).await.is_err() {
                break; // The writer stopped, with an error it reports.
            }
        }
    };
    let (summary, ()) = futures::join!(writer, feeder);
    summary
}
