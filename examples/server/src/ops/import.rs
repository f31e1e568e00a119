//! `--import-backup-repository`: backup-repository's versions (its PostgreSQL table
//! `uploaded_versions`, its objects at `<collection>/<filename>` in the bucket) registered as
//! this server's versions, with their numbers, file names, uploaders and times.

use std::collections::BTreeMap;

use backup_core::{
    CollectionId, Engine, ImportOutcome, ImportedVersion, ProgressTracker, SessionId, Timestamp, Uploader, VersionId,
};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::config::Args;
use crate::{Prepared, ServerConfig, engine, prepare};

/// One live row of `uploaded_versions`.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    collection: String,
    number: i64,
    filename: String,
    size: i64,
    session: String,
    uploader: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl Row {
    fn name(&self) -> String {
        format!("version {} of {} ({})", self.number, self.collection, self.filename)
    }
}

/// What the import found and did, one line each.
#[derive(Debug, Default)]
struct Outcome {
    imported: u64,
    bytes: u64,
    already: u64,
    planned: Vec<String>,
    skipped: Vec<String>,
}

/// Runs the import (or, with `--dry-run`, prints its plan): every row of backup-repository's
/// `uploaded_versions` not soft-deleted, of a collection the manifests declare, whose object is
/// in the bucket with the recorded size, is copied under this server's prefix (the digest
/// computed on the way) and registered with its number, file name, uploader and time. What
/// cannot be is reported and skipped, never invented; a second run imports nothing twice.
///
/// # Errors
/// A line naming what is wrong: no `--db-*` flags, the database or the table unreadable, the
/// storage or the catalog failing.
pub async fn import_backup_repository(args: &Args) -> Result<String, String> {
    let source = args.source_database().ok_or(
        "--import-backup-repository reads backup-repository's PostgreSQL database: give --db-hostname, \
         --db-port, --db-user, --db-password and --db-name",
    )?;
    let Prepared { manifests, storage_url, catalog, clock, directory, .. } =
        prepare(&ServerConfig::from_args(args.clone())?).await?;
    let engine = engine(args, &storage_url, catalog, clock, directory, args.adopt_storage)?;
    if !args.dry_run {
        engine.open_repository().await.map_err(|e| format!("repository: {e}"))?;
        crate::ops::sync::collections(&engine, &manifests).await.map_err(|e| format!("configuration: {e}"))?;
    }
    let rows = read_rows(&source).await?;
    let declared: std::collections::HashSet<&CollectionId> = manifests.collections.iter().map(|c| &c.id).collect();
    let mut outcome = Outcome::default();
    let grouped = group(rows, &mut outcome);
    let progress = ProgressTracker::new(
        Some(crate::ops::progress::for_command_line("import", args.progress_interval)),
        engine.clock().clone(),
    );
    let (count, bytes) = grouped.values().flatten().fold((0, 0), |(n, b), r| (n + 1, b + r.size.max(0) as u64));
    let phase = if args.dry_run { "checking versions (dry run)" } else { "importing versions" };
    progress.start(phase, Some(count), (!args.dry_run).then_some(bytes));
    for (collection, rows) in grouped {
        let Some(id) = CollectionId::new(collection.clone()).ok().filter(|id| declared.contains(id)) else {
            for r in rows {
                outcome.skipped.push(format!("{}: the collection is not declared in the manifests", r.name()));
                progress.advance(1, 0);
            }
            continue;
        };
        for r in rows {
            import_row(&engine, &id, &r, args.dry_run, &mut outcome, &progress).await?;
            progress.advance(1, 0);
        }
    }
    progress.finish();
    let mut lines = vec![format!(
        "{}: {} versions imported ({} bytes), {} already imported, {} skipped",
        if args.dry_run { "dry run" } else { "import" },
        outcome.imported,
        outcome.bytes,
        outcome.already,
        outcome.skipped.len()
    )];
    lines.extend(outcome.planned.into_iter().map(|l| format!("would import: {l}")));
    lines.extend(outcome.skipped.into_iter().map(|l| format!("skipped: {l}")));
    Ok(lines.join("\n"))
}

#[cfg(not(feature = "postgres"))]
async fn read_rows(_url: &str) -> Result<Vec<Row>, String> {
    Err("--import-backup-repository reads PostgreSQL: build backup-server with its `postgres` feature".to_owned())
}

#[cfg(feature = "postgres")]
async fn read_rows(url: &str) -> Result<Vec<Row>, String> {
    let shown = url.split('@').next_back().unwrap_or_default().to_owned();
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("backup-repository's database {shown}: {e}"))?;
    let driver = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT id::text, collection_id::text, version_number::bigint, filename::text, filesize::bigint, \
                    coalesce(uploaded_by_session_id::text, ''), coalesce(uploader::text, ''), created_at::timestamptz \
             FROM uploaded_versions WHERE deleted_at IS NULL \
             ORDER BY collection_id, version_number, created_at",
            &[],
        )
        .await
        .map_err(|e| format!("backup-repository's table uploaded_versions in {shown}: {e}"))?;
    driver.abort();
    Ok(rows
        .iter()
        .map(|r| Row {
            id: r.get(0),
            collection: r.get(1),
            number: r.get(2),
            filename: r.get(3),
            size: r.get(4),
            session: r.get(5),
            uploader: r.get(6),
            created_at: r.get(7),
        })
        .collect())
}

/// Rows by collection, with the ambiguous ones reported and left out: a number two rows
/// claim (backup-repository has no unique constraint on it), and rows sharing an object (a
/// file name template without `${version}`: each upload overwrote the previous one's bytes;
/// only the newest row's bytes are there).
fn group(rows: Vec<Row>, outcome: &mut Outcome) -> BTreeMap<String, Vec<Row>> {
    let mut by_number: BTreeMap<(String, i64), Vec<Row>> = BTreeMap::new();
    for r in rows {
        by_number.entry((r.collection.clone(), r.number)).or_default().push(r);
    }
    let mut by_object: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for ((collection, number), claimants) in by_number {
        if claimants.len() > 1 {
            let ids: Vec<&str> = claimants.iter().map(|r| r.id.as_str()).collect();
            outcome.skipped.push(format!(
                "version {number} of {collection}: {} rows claim it ({}); none is imported",
                ids.len(),
                ids.join(", ")
            ));
            continue;
        }
        for r in claimants {
            by_object.entry((r.collection.clone(), r.filename.clone())).or_default().push(r);
        }
    }
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for ((collection, _), mut sharing) in by_object {
        sharing.sort_by_key(|r| r.created_at);
        let Some(newest) = sharing.pop() else { continue };
        for r in sharing {
            outcome.skipped.push(format!("{}: its object was overwritten by version {}", r.name(), newest.number));
        }
        out.entry(collection).or_default().push(newest);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r.number);
    }
    out
}

async fn import_row(
    engine: &Engine,
    id: &CollectionId,
    r: &Row,
    dry_run: bool,
    outcome: &mut Outcome,
    progress: &ProgressTracker,
) -> Result<(), String> {
    let (Ok(number), Ok(size)) = (u64::try_from(r.number), u64::try_from(r.size)) else {
        outcome.skipped.push(format!("{}: a negative number or size", r.name()));
        return Ok(());
    };
    if let Err(e) = backup_core::check_version_number(number) {
        outcome.skipped.push(format!("{}: {e}", r.name()));
        return Ok(());
    }
    let Ok(version_id) = r.id.parse::<VersionId>() else {
        outcome.skipped.push(format!("{}: its id {:?} is not a UUID", r.name(), r.id));
        return Ok(());
    };
    // Asked before the original's object is looked at (import_version asks again): a version
    // imported earlier counts as imported even if the original's object is gone since.
    if engine.knows_version(version_id).await.map_err(|e| format!("catalog: {e}"))? {
        outcome.already += 1;
        return Ok(());
    }
    let key = Path::from(format!("{}/{}", r.collection, r.filename));
    let store = engine.store();
    let meta = match store.head(&key).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => {
            outcome.skipped.push(format!("{}: its object {key} is missing", r.name()));
            return Ok(());
        }
        Err(e) => return Err(format!("storage: reading {key}: {e}")),
    };
    if meta.size != size {
        outcome.skipped.push(format!("{}: its object {key} has {} bytes, {size} were recorded", r.name(), meta.size));
        return Ok(());
    }
    if dry_run {
        outcome.planned.push(format!("{} from {key}, {size} bytes", r.name()));
        return Ok(());
    }
    let session = SessionId::new(r.session.clone()).ok();
    let uploader = Uploader::user(r.uploader.clone()).with_session(session);
    let imported = ImportedVersion::new(
        version_id,
        id.clone(),
        number,
        r.filename.clone(),
        size,
        uploader,
        Timestamp::from(r.created_at),
    );
    let body = store
        .get(&key)
        .await
        .map_err(|e| format!("storage: reading {key}: {e}"))?
        .into_stream()
        .inspect_ok(|chunk| progress.advance(0, chunk.len() as u64))
        .map_err(std::io::Error::other);
    match engine.import_version(&imported, body).await {
        Ok(ImportOutcome::Imported(v)) => {
            outcome.imported += 1;
            outcome.bytes += v.size;
        }
        Ok(_) => outcome.already += 1,
        Err(e) if matches!(e.kind(), backup_core::ErrorKind::Conflict | backup_core::ErrorKind::Corrupted) => {
            outcome.skipped.push(format!("{}: {e}", r.name()));
        }
        Err(e) => return Err(format!("importing {}: {e}", r.name())),
    }
    Ok(())
}
