//! `GET /api/stable/repository/collection` (ours, backup-repository's #163): the collections
//! the caller may see.

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use crate::caller::Caller;
use crate::json::{ApiError, ok};
use crate::model;
use crate::state::AppState;

pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .inner
            .engine
            .list_collections(&caller.actor, after.as_ref(), 1000)
            .await
            .map_err(|e| ApiError::from_core(&e, "not authorized to list collections"))?;
        all.extend(page.items.iter().map(model::collection));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(ok(json!({ "collections": all })))
}
