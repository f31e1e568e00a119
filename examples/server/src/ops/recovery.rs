//! Helper modes for disaster recovery: a catalog rebuilt from the storage, alone or on top of
//! a scheduled snapshot.

use backup_core::RebuildOptions;
use backup_store::snapshot;
use object_store::path::Path;

use crate::config::Args;
use crate::{Prepared, ServerConfig, engine, prepare};

/// `--rebuild-catalog [--verify] [--from-snapshot latest|KEY]`: fills the (empty) catalog the
/// flags name from the storage, collections from the manifests; returns the summary to print.
///
/// # Errors
/// A line naming what is wrong: a catalog that is not empty, a snapshot that cannot be read,
/// the storage or the catalog failing (an empty catalog then stays empty).
pub async fn rebuild_catalog(args: &Args) -> Result<String, String> {
    let Prepared { manifests, storage_url, catalog, clock, directory, .. } =
        prepare(&ServerConfig::from_args(args.clone())?).await?;
    // Adopting: the rebuilt catalog is paired with the storage's repository.
    let engine = engine(args, &storage_url, catalog, clock, directory, true)?;
    let mut lines = Vec::new();
    let options = match args.from_snapshot.as_deref() {
        None => RebuildOptions::empty_catalog(),
        Some(which) => {
            let key = if which == "latest" {
                snapshot::latest_scheduled(engine.store(), engine.key_prefix())
                    .await
                    .map_err(|e| format!("snapshots: {e}"))?
                    .ok_or_else(|| {
                        format!(
                            "--from-snapshot latest: no scheduled snapshot under {}/{}",
                            engine.key_prefix(),
                            snapshot::SNAPSHOTS_FOLDER
                        )
                    })?
            } else {
                Path::from(which)
            };
            let loaded =
                snapshot::import_into(&engine, &key).await.map_err(|e| format!("--from-snapshot {key}: {e}"))?;
            lines.push(format!(
                "snapshot {key} loaded: {} collections, {} versions, {} sessions, {} audit events",
                loaded.collections, loaded.versions, loaded.sessions, loaded.audit_events
            ));
            RebuildOptions::add_missing()
        }
    };
    let mut options = options
        .verify_digests(args.verify)
        .progress(crate::ops::progress::for_command_line("rebuild", args.progress_interval));
    for c in &manifests.collections {
        options = options.collection(c.id.clone(), c.spec.clone());
    }
    let report = engine.rebuild_catalog(&options).await.map_err(|e| format!("rebuild: {e}"))?;
    lines.push(report.summary());
    Ok(lines.join("\n"))
}
