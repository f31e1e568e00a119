//! The storage probe of `/ready` and the sweep of what probes leave behind.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::state::AppState;

/// Where `/ready` writes its probe objects (at the bucket's root, beside the server's prefix).
pub(crate) const PROBE_PREFIX: &str = ".health";

/// How long the deletion of a probe object may take, apart from the probe's own timeout.
const PROBE_DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes a probe object, reads it back and deletes it, within `--storage-health-timeout`.
/// The deletion runs in a task of its own (with its own bound): a timeout that cuts the probe
/// after its write must not leave the object behind. What a deletion still misses (the process
/// killed meanwhile, the store failing) the maintenance sweeps ([`sweep_probes`]).
pub(crate) async fn probe_storage(state: &AppState) -> Result<(), String> {
    let key = ObjectPath::from(format!("{PROBE_PREFIX}/{}", uuid::Uuid::new_v4()));
    let store = state.inner.engine.store().clone();
    let deadline = tokio::time::Instant::now() + state.inner.storage_health_timeout;
    let probe = async {
        store.put(&key, "ok".into()).await.map_err(|e| e.to_string())?;
        let read = store.get(&key).await.map_err(|e| e.to_string())?.bytes().await.map_err(|e| e.to_string())?;
        if read != "ok" {
            return Err("read back something else than was written".to_owned());
        }
        Ok(())
    };
    let probed = tokio::time::timeout_at(deadline, probe).await.unwrap_or_else(|_| Err("timed out".into()));
    // Deleted whatever the probe gave (a write cut by the timeout may still have landed).
    let deletion = tokio::spawn(async move {
        match tokio::time::timeout(PROBE_DELETE_TIMEOUT, store.delete(&key)).await {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(format!("deleting {key}: {e}")),
            Err(_) => Err(format!("deleting {key}: timed out")),
        }
        .inspect_err(
            |e| tracing::warn!(error = %e, "readiness probe: the object stays until the maintenance sweeps it"),
        )
    });
    probed?;
    // A probe that worked reports its deletion too, if it ends in time.
    match tokio::time::timeout_at(deadline, deletion).await {
        Ok(Ok(deleted)) => deleted,
        Ok(Err(_)) => Err("the deletion task failed".into()),
        Err(_) => Err("timed out".into()),
    }
}

/// Deletes the probe objects of `/ready` written before `before`: what a probe's own deletion
/// missed. Run by the maintenance; returns how many it deleted.
///
/// # Errors
/// The store's listing failed (a failed deletion is logged and left for the next run).
pub(crate) async fn sweep_probes(
    store: &Arc<dyn ObjectStore>,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<usize, object_store::Error> {
    let prefix = ObjectPath::from(PROBE_PREFIX);
    let mut listed = store.list(Some(&prefix));
    let mut old = Vec::new();
    while let Some(meta) = listed.next().await {
        let meta = meta?;
        if meta.last_modified < before {
            old.push(meta.location);
        }
    }
    let mut deleted = 0;
    for key in old {
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
            Err(e) => tracing::warn!(%key, error = %e, "maintenance: a readiness probe object could not be deleted"),
        }
    }
    Ok(deleted)
}
