//! `--verify-audit`: checks the audit log's hash chain and the anchors in the storage, and
//! names the first event that does not fit.

use crate::config::Args;
use crate::{Prepared, ServerConfig, engine, prepare};

/// Verifies the audit log of the catalog and storage the flags name; returns the summary to
/// print when the log verifies.
///
/// # Errors
/// A line naming the first event that does not fit (the process exits 1 with it), or what
/// could not be read.
pub async fn verify_audit(args: &Args) -> Result<String, String> {
    let Prepared { storage_url, catalog, clock, directory, .. } =
        prepare(&ServerConfig::from_args(args.clone())?).await?;
    let engine = engine(args, &storage_url, catalog, clock, directory, false)?;
    let report = engine.verify_audit().await.map_err(|e| format!("verify the audit log: {e}"))?;
    let from = match report.checkpoint {
        Some(c) => format!("from the checkpoint at event {}", c.seq),
        None => "from the first event".to_owned(),
    };
    match &report.problem {
        None => Ok(format!(
            "the audit log verifies: {} events {from} to event {} (head {}), {} anchors in the storage match",
            report.events, report.head.seq, report.head.hash, report.anchors
        )),
        Some(p) => Err(format!(
            "the audit log does not verify: {p} ({} events {from} checked before it, {} anchors matched)",
            report.events, report.anchors
        )),
    }
}

/// Writes the log's head to the storage and prunes what the retention no longer keeps: the
/// maintenance's part of the audit log.
pub(crate) async fn maintain(engine: &backup_core::Engine) {
    if let Err(e) = engine.prune_audit().await {
        tracing::warn!(error = %e, "maintenance: the audit log could not be pruned");
    }
    if let Err(e) = engine.anchor_audit().await {
        tracing::warn!(error = %e, "maintenance: the audit log's head could not be anchored in the storage");
    }
}
