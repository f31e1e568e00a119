//! `GET /ui/`: every collection the user may see, with its health, last upload and quota use.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::api::collections::visible_collections;
use crate::format;
use crate::state::AppState;
use crate::ui::layout;
use crate::ui::session::UiSession;
use backup_core::health::CollectionHealth;

/// The most collections listed on one page.
pub(crate) const MAX_COLLECTIONS: usize = 1000;

/// `GET /ui/`.
pub(crate) async fn overview(State(state): State<AppState>, session: UiSession) -> Response {
    // The engine lists only what this user may read: the same call as the API's listing.
    let (collections, truncated) = match visible_collections(&state, &session.caller.actor, MAX_COLLECTIONS).await {
        Ok(listed) => listed,
        Err(e) => return failure(&session, &e),
    };
    let mut rows = Vec::with_capacity(collections.len());
    for c in &collections {
        match state.inner.engine.health(&session.caller.actor, &c.id).await {
            Ok(a) => rows.push(a),
            // Deleted between the listing and now: not shown.
            Err(e) if e.kind() == backup_core::ErrorKind::NotFound => {}
            Err(e) => return failure(&session, &e),
        }
    }
    let failing = rows.iter().filter(|a| !a.healthy()).count();
    let targets = crate::ui::activity::targets(&state.inner.engine, &session.caller.actor).await;
    let replicas = crate::ui::activity::replicas(&state.inner.engine, &session.caller.actor).await;
    let body = html! {
        h1 { "Collections" }
        p.muted {
            (rows.len()) " collection" @if rows.len() != 1 { "s" } " you may see"
            @if failing > 0 { ", " strong.fail-text { (failing) " failing" } }
            "."
            @if truncated { " Only the first " (MAX_COLLECTIONS) " are listed." }
        }
        @if rows.is_empty() {
            p { "No collection is open to you. An administrator gives access in the collection's manifest." }
        } @else {
            table.collections {
                thead { tr {
                    th { "Collection" } th { "Health" } th { "Last upload" } th { "Versions" } th { "Space used" }
                } }
                tbody { @for a in &rows { (row(a)) } }
            }
        }
        @if let Some(targets) = targets { (targets) }
        @if let Some(replicas) = replicas { (replicas) }
    };
    layout::page(StatusCode::OK, "Collections", Some(&session), body)
}

/// One collection's line.
fn row(a: &CollectionHealth) -> Markup {
    let c = &a.collection;
    let limits = &c.spec.limits;
    let id = c.id.as_str();
    html! {
        tr.collection data-collection=(id) {
            td {
                a.name href=(format!("/ui/collections/{id}")) { (id) }
                @if !c.spec.description.is_empty() { div.description { (c.spec.description) } }
            }
            td { (health_badges(a)) }
            td {
                @match &a.latest {
                    Some(v) => {
                        time datetime=(format::machine_time(v.created_at)) { (format::time(v.created_at)) }
                        div.muted {
                            (format::bytes(v.size)) ", " (format::percent(v.size, limits.max_version_size))
                            "% of the " (format::bytes(limits.max_version_size)) " soft limit"
                        }
                    }
                    None => span.muted { "never" },
                }
            }
            td { (a.versions) " of " (limits.max_versions) }
            td { (quota(a.committed_bytes, limits.max_collection_size)) }
        }
    }
}

/// The health as one colored badge, and a chip per check, each with its reason on hover.
pub(crate) fn health_badges(a: &CollectionHealth) -> Markup {
    html! {
        @if a.healthy() { span.badge.ok { "healthy" } } @else { span.badge.fail { "failing" } }
        ul.checks {
            @for check in &a.health.checks {
                @if check.passed() {
                    li.ok title=(format!("{}: OK, {}", check.kind.name(), check.reason)) { (check.kind.label()) }
                } @else {
                    li.fail title=(check.reason) { (check.kind.label()) }
                }
            }
        }
    }
}

/// Space used against the hard limit, as a meter and in words.
pub(crate) fn quota(used: u64, limit: u64) -> Markup {
    html! {
        meter min="0" max=(limit) low=(limit / 10 * 7) high=(limit / 10 * 9) optimum="0" value=(used.min(limit)) {
            (format::percent(used, limit)) "%"
        }
        div.muted { (format::bytes(used)) " of " (format::bytes(limit)) " (" (format::percent(used, limit)) "%)" }
    }
}

/// An engine error as a page.
pub(crate) fn failure(session: &UiSession, e: &backup_core::Error) -> Response {
    layout::api_error_page(session, crate::http::json::ApiError::from_core(e, "you may not see this"))
}
