//! Catalog export and import: a consistent snapshot of all metadata (collections, versions,
//! uploads in flight, sessions, audit events) as JSON lines under an object key, and its
//! restore into an empty catalog of any kind.
//!
//! This is point-in-time metadata recovery: export periodically next to the blobs; after
//! losing the catalog, import the last export into a fresh one, then let
//! [`backup_core::Engine::rebuild_catalog`] in its add-missing mode bring it up to date from
//! the versions' descriptions in the store (versions committed or deleted after the export).
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::MemoryCatalog;
//! use backup_core::catalog::Catalog;
//! use backup_store::snapshot;
//! use object_store::{ObjectStore, memory::InMemory, path::Path};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
//! let source = MemoryCatalog::new();
//! let key = Path::from("catalog/2026-11-22.jsonl");
//! let exported = snapshot::export_to(&source, &store, &key).await?;
//! let restored = MemoryCatalog::new();
//! let imported = snapshot::import_from(&store, &key, &restored).await?;
//! assert_eq!(imported.collections, 0);
//! assert!(exported.bytes > 0);
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```

use std::sync::Arc;

use backup_core::catalog::Catalog;
use backup_core::catalog::{CatalogRecord, ImportSummary};
use backup_core::{Engine, Error, Result};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// Records are written in parts of this size.
const PART: usize = 8 << 20;

/// The longest line an import accepts: no record comes near it, and a corrupt file must not
/// make the importer buffer without bound.
pub const MAX_LINE: usize = 16 << 20;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSummary {
    /// Records, the header included.
    pub records: u64,
    /// Bytes of JSON lines.
    pub bytes: u64,
}

fn store_error<'a>(operation: &'static str, key: &'a Path) -> impl Fn(object_store::Error) -> Error + 'a {
    move |e| Error::Store { operation, key: key.to_string(), source: e }
}

/// Streams a consistent snapshot of `catalog` to `key` as JSON lines (one record a line,
/// the header first). The object appears only when complete; a failed export leaves none.
///
/// # Errors
/// Catalog errors while reading the snapshot; store errors while writing it.
pub async fn export_to(catalog: &dyn Catalog, store: &Arc<dyn ObjectStore>, key: &Path) -> Result<ExportSummary> {
    write_records(catalog.export().await?, store, key).await
}

/// Writes `records` to `key` as JSON lines; the object appears only when complete.
async fn write_records(
    mut records: BoxStream<'static, Result<CatalogRecord>>,
    store: &Arc<dyn ObjectStore>,
    key: &Path,
) -> Result<ExportSummary> {
    let upload = store.put_multipart(key).await.map_err(store_error("put_multipart", key))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut summary = ExportSummary::default();
    let result: Result<()> = async {
        let mut buf = Vec::with_capacity(64 << 10);
        while let Some(record) = records.try_next().await? {
            serde_json::to_writer(&mut buf, &record)
                .map_err(|e| Error::internal(format!("serialising a record: {e}")))?;
            buf.push(b'\n');
            summary.records += 1;
            if buf.len() >= 64 << 10 {
                writer.wait_for_capacity(2).await.map_err(store_error("put_part", key))?;
                summary.bytes += buf.len() as u64;
                writer.put(Bytes::from(std::mem::take(&mut buf)));
            }
        }
        summary.bytes += buf.len() as u64;
        writer.put(Bytes::from(buf));
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            writer.finish().await.map_err(store_error("complete", key))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

/// Reads the snapshot at `key` and imports it into `catalog`, which must be empty; all or
/// nothing.
///
/// # Errors
/// [`Error::InvalidInput`] for a line that is not a record (naming its number) or over
/// [`MAX_LINE`] bytes, or a snapshot without header; [`Error::Conflict`] if the catalog is
/// not empty; store errors.
pub async fn import_from(store: &Arc<dyn ObjectStore>, key: &Path, catalog: &dyn Catalog) -> Result<ImportSummary> {
    catalog.import(read_records(store, key).await?).await
}

/// [`import_from`] the engine's store into the engine's catalog (which must be empty): how a
/// host restores a snapshot without a handle on the catalog.
///
/// # Errors
/// As [`import_from`].
pub async fn import_into(engine: &Engine, key: &Path) -> Result<ImportSummary> {
    engine.import_catalog(read_records(engine.store(), key).await?).await
}

/// The records of the snapshot at `key`, as they are read.
async fn read_records(store: &Arc<dyn ObjectStore>, key: &Path) -> Result<BoxStream<'static, Result<CatalogRecord>>> {
    let bytes = store.get(key).await.map_err(store_error("get", key))?.into_stream();
    let err_key = key.clone();
    let bytes = bytes.map_err(move |e| Error::Store { operation: "read", key: err_key.to_string(), source: e }).boxed();
    Ok(records(bytes))
}

/// Splits a byte stream into lines and parses each as a record.
fn records(bytes: BoxStream<'static, Result<Bytes>>) -> BoxStream<'static, Result<CatalogRecord>> {
    struct Lines {
        bytes: BoxStream<'static, Result<Bytes>>,
        buf: BytesMut,
        line: u64,
        done: bool,
    }
    let state = Lines { bytes, buf: BytesMut::new(), line: 0, done: false };
    futures::stream::try_unfold(state, |mut s| async move {
        loop {
            if let Some(pos) = s.buf.iter().position(|&b| b == b'\n') {
                let line = s.buf.split_to(pos + 1);
                s.line += 1;
                let text = &line[..line.len() - 1];
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record = serde_json::from_slice::<CatalogRecord>(text)
                    .map_err(|e| Error::invalid("catalog snapshot", format!("line {}: {e}", s.line)))?;
                return Ok(Some((record, s)));
            }
            if s.buf.len() > MAX_LINE {
                return Err(Error::invalid(
                    "catalog snapshot",
                    format!("line {} is longer than {MAX_LINE} bytes", s.line + 1),
                ));
            }
            if s.done {
                if s.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                // The last line without its newline.
                s.buf.extend_from_slice(b"\n");
                continue;
            }
            match s.bytes.try_next().await? {
                Some(chunk) => s.buf.extend_from_slice(&chunk),
                None => s.done = true,
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::MemoryCatalog;
    use object_store::memory::InMemory;

    fn stream_of(chunks: &[&str]) -> BoxStream<'static, Result<Bytes>> {
        let v: Vec<Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from(c.to_string()))).collect();
        futures::stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn lines_split_across_chunks_and_a_missing_last_newline() {
        let header = serde_json::to_string(&CatalogRecord::header(chrono::Utc::now())).unwrap();
        let (a, b) = header.split_at(10);
        let parsed: Vec<CatalogRecord> =
            records(stream_of(&[a, b, "\n\n", &header[..5], &header[5..]])).try_collect().await.unwrap();
        assert_eq!(parsed.len(), 2);
    }

    #[tokio::test]
    async fn a_bad_line_is_named() {
        let header = serde_json::to_string(&CatalogRecord::header(chrono::Utc::now())).unwrap();
        let e = records(stream_of(&[&header, "\n", "{\"type\":\"nonsense\"}\n"]))
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[tokio::test]
    async fn endless_lines_are_refused() {
        let big = "x".repeat(1 << 20);
        let chunks: Vec<&str> = std::iter::repeat_n(big.as_str(), 17).collect();
        let e = records(stream_of(&chunks)).try_collect::<Vec<_>>().await.unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    #[tokio::test]
    async fn a_garbage_object_imports_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = Path::from("snap");
        store.put(&key, "not json\n".into()).await.unwrap();
        let target = MemoryCatalog::new();
        let e = import_from(&store, &key, &target).await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput);
        let e = import_from(&store, &Path::from("missing"), &target).await.unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::NotFound);
    }
}

/// The folder, under an engine's key prefix, of scheduled snapshots ([`take_scheduled`]). Its
/// name starts with a dot, so the engine never takes it for versions.
pub const SNAPSHOTS_FOLDER: &str = ".catalog-snapshots";

/// What [`take_scheduled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduledSnapshot {
    /// Where the new snapshot is.
    pub key: Path,
    /// What it holds.
    pub summary: ExportSummary,
    /// Older snapshots deleted by the retention.
    pub removed: Vec<Path>,
}

/// Takes a snapshot of `catalog` into `<prefix>/.catalog-snapshots/catalog-<UTC time>.jsonl`
/// and keeps the newest `keep` of them (at least one: the one just taken), deleting older
/// ones. Restore the latest with [`latest_scheduled`] and [`import_from`], then bring it up to
/// date with [`backup_core::Engine::rebuild_catalog`] in its add-missing mode.
///
/// ```
/// use std::sync::Arc;
/// use backup_core::MemoryCatalog;
/// use backup_store::snapshot;
/// use object_store::{ObjectStore, memory::InMemory, path::Path};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
/// let prefix = Path::from("data");
/// let catalog = MemoryCatalog::new();
/// let t = chrono::Utc::now();
/// for minutes in 0..3 {
///     snapshot::take_scheduled(&catalog, &store, &prefix, 2, t + chrono::Duration::minutes(minutes)).await?;
/// }
/// let latest = snapshot::latest_scheduled(&store, &prefix).await?.expect("one");
/// assert_eq!(snapshot::list_scheduled(&store, &prefix).await?.len(), 2);
/// snapshot::import_from(&store, &latest, &MemoryCatalog::new()).await?;
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
///
/// # Errors
/// Those of [`export_to`]; a failure to delete an old snapshot is an error too (the new one is
/// kept).
pub async fn take_scheduled(
    catalog: &dyn Catalog,
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    keep: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ScheduledSnapshot> {
    take_scheduled_from(catalog.export().await?, store, prefix, keep, now).await
}

/// [`take_scheduled`] of the engine's catalog into the engine's store, under its key prefix,
/// at the engine's time: how a host takes snapshots without a handle on the catalog.
///
/// # Errors
/// As [`take_scheduled`].
pub async fn take_scheduled_of(engine: &Engine, keep: usize) -> Result<ScheduledSnapshot> {
    let now = engine.clock().now();
    let taken =
        take_scheduled_from(engine.export_catalog().await?, engine.store(), engine.key_prefix(), keep, now).await?;
    // The snapshot holds the log with its hashes; the anchor puts its head beside it, out of
    // the catalog's reach.
    engine.anchor_audit().await?;
    Ok(taken)
}

async fn take_scheduled_from(
    records: BoxStream<'static, Result<CatalogRecord>>,
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    keep: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ScheduledSnapshot> {
    let folder = prefix.clone().join(SNAPSHOTS_FOLDER);
    let key = folder.clone().join(format!("catalog-{}.jsonl", now.format("%Y%m%dT%H%M%S%.6fZ")));
    let summary = write_records(records, store, &key).await?;
    let all = list_scheduled(store, prefix).await?;
    let mut removed = Vec::new();
    for old in all.iter().rev().skip(keep.max(1)) {
        if old == &key {
            continue;
        }
        match store.delete(old).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => removed.push(old.clone()),
            Err(e) => return Err(store_error("delete", old)(e)),
        }
    }
    Ok(ScheduledSnapshot { key, summary, removed })
}

/// The scheduled snapshots under `prefix`, oldest first.
///
/// # Errors
/// Listing failures.
pub async fn list_scheduled(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<Vec<Path>> {
    let folder = prefix.clone().join(SNAPSHOTS_FOLDER);
    let metas: Vec<_> = store.list(Some(&folder)).try_collect().await.map_err(store_error("list", &folder))?;
    let mut keys: Vec<Path> = metas
        .into_iter()
        .map(|m| m.location)
        .filter(|k| k.filename().is_some_and(|f| f.starts_with("catalog-") && f.ends_with(".jsonl")))
        .collect();
    keys.sort();
    Ok(keys)
}

/// The newest scheduled snapshot under `prefix`, if any.
///
/// # Errors
/// Listing failures.
pub async fn latest_scheduled(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Result<Option<Path>> {
    Ok(list_scheduled(store, prefix).await?.pop())
}
