//! `GET /api/stable/repository/replicas` (ours): how far each replica lags, its failed
//! copies, the deletions waiting for their delay.

use axum::extract::State;
use axum::response::Response;
use backup_core::replica::ReplicaStatus;
use serde_json::{Value, json};

use crate::http::caller::Caller;
use crate::http::json::{ApiError, ok};
use crate::state::AppState;

/// Every replica's status; a systemAdmin only (it names the stores).
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let engine = &state.inner.engine;
    let denied = "the replicas are for a systemAdmin";
    engine.authorize_audit(&caller.actor, None).await.map_err(|e| ApiError::from_core(&e, denied))?;
    let statuses = statuses(engine).await.map_err(|e| ApiError::from_core(&e, ""))?;
    Ok(ok(json!({ "replicas": statuses.iter().map(replica).collect::<Vec<Value>>() })))
}

/// The status of every replica of `engine`.
pub(crate) async fn statuses(engine: &backup_core::Engine) -> backup_core::Result<Vec<ReplicaStatus>> {
    let mut out = Vec::new();
    for r in engine.replicas().iter() {
        out.push(engine.replica_status(r.name()).await?);
    }
    Ok(out)
}

/// A replica's status as the route shows it.
fn replica(s: &ReplicaStatus) -> Value {
    json!({
        "name": s.name,
        "location": s.location,
        "after": s.cursor,
        "pendingVersions": s.pending_versions,
        "pendingBytes": s.pending_bytes,
        "oldestPending": s.oldest_pending.map(|t| t.to_string()),
        "lagSeconds": s.lag_seconds,
        "catchingUp": s.catching_up,
        "copied": s.copied,
        "copiedBytes": s.bytes,
        "alreadyThere": s.already_there,
        "deleted": s.deleted,
        "deletionsPending": s.deletions_pending,
        "unavailable": s.unavailable,
        "unavailableSince": s.unavailable_since.map(|t| t.to_string()),
        "heldBy": s.owner,
        "failed": s.failed.iter().map(|f| json!({
            "collection": f.collection.as_str(),
            "version": f.number,
            "attempts": f.attempts,
            "lastError": f.last_error,
            "since": f.since.to_string(),
        })).collect::<Vec<Value>>(),
    })
}
