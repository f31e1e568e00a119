//! `GET /api/stable/audit` (ours): the audit log, a page at a time, as far as the caller may
//! see it (a systemAdmin everything, a collection manager the events of their collections).

use axum::extract::{Query, State};
use axum::response::Response;
use backup_core::AuditEvent;
use backup_core::audit::{AuditQuery, MAX_AUDIT_PAGE};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::caller::Caller;
use crate::http::json::{ApiError, ok};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct AuditParams {
    collection: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/stable/audit?collection=ID&after=SEQ&limit=N`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> Result<Response, ApiError> {
    let mut query = AuditQuery::new().with_after(p.after).with_limit(p.limit.unwrap_or(100));
    if query.limit == 0 || query.limit > MAX_AUDIT_PAGE {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_AUDIT_PAGE}")));
    }
    if let Some(c) = p.collection.filter(|c| !c.is_empty()) {
        query = query.with_collection(c.parse().map_err(|e| ApiError::bad_request(format!("collection: {e}")))?);
    }
    let page =
        state.inner.engine.audit_events(&caller.actor, &query).await.map_err(|e| {
            ApiError::from_core(&e, "reading the audit log needs a systemAdmin or a collection manager")
        })?;
    Ok(ok(json!({
        "events": page.items.iter().map(event).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// `GET /api/stable/notifications` (ours): each notification target's delivery state, for
/// those who may read the whole log (a systemAdmin).
pub(crate) async fn notifications(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let engine = &state.inner.engine;
    let denied = "the notification targets are for a systemAdmin";
    engine.authorize_audit(&caller.actor, None).await.map_err(|e| ApiError::from_core(&e, denied))?;
    let (head, states) = crate::ops::notify::target_states(engine).await.map_err(|e| ApiError::from_core(&e, ""))?;
    let targets: Vec<Value> = states
        .iter()
        .map(|t| {
            let d = &t.delivery;
            json!({
                "name": t.name,
                "kind": t.kind,
                "after": t.cursor.seq,
                "pending": t.pending,
                "delivered": d.delivered_total,
                "failedTotal": d.failed_total,
                "deadLettered": d.dead,
                "attempts": d.attempts,
                "lastError": d.last_error,
                "heldBy": t.cursor.owner,
            })
        })
        .collect();
    Ok(ok(json!({ "head": head, "targets": targets })))
}

/// An event as the route (and the webhooks) show it.
pub(crate) fn event(e: &AuditEvent) -> Value {
    json!({
        "seq": e.seq,
        "at": e.at.to_string(),
        "actor": e.actor,
        "action": e.action,
        "collection": e.collection.as_ref().map(|c| c.as_str()),
        "version": e.version,
        "detail": e.detail,
        "hash": e.hash.map(|h| h.to_string()),
    })
}
