//! `GET /api/stable/repository/collection` (ours, backup-repository's #163): the collections
//! the caller may see.

use axum::extract::State;
use axum::response::Response;
use backup_core::{Actor, Collection};
use serde_json::json;

use crate::api::model;
use crate::http::caller::Caller;
use crate::http::json::{ApiError, ok};
use crate::state::AppState;

pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let (all, _) = visible_collections(&state, &caller.actor, usize::MAX)
        .await
        .map_err(|e| ApiError::from_core(&e, "not authorized to list collections"))?;
    Ok(ok(json!({ "collections": all.iter().map(model::collection).collect::<Vec<_>>() })))
}

/// The collections `actor` may see, by id, a page at a time from the engine (which decides
/// per collection), stopping once `max` are read; `true` when more were left.
///
/// # Errors
/// The engine's.
pub(crate) async fn visible_collections(
    state: &AppState,
    actor: &Actor,
    max: usize,
) -> backup_core::Result<(Vec<Collection>, bool)> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = state.inner.engine.list_collections(actor, after.as_ref(), 1000).await?;
        all.extend(page.items);
        match page.next {
            Some(_) if all.len() >= max => return Ok((all, true)),
            Some(next) => after = Some(next),
            None => return Ok((all, false)),
        }
    }
}
