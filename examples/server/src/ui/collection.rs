//! `/ui/collections/{id}`: one collection's versions, health, quota, retention preview and
//! size chart, with downloads and the delete and restore actions the user may take.

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use backup_core::rotation::{Mark, RotationDecision};
use backup_core::{Action, Collection, CollectionId, Version, VersionQuery, VersionSelector, VersionState};
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::versions::stream_version;
use crate::format;
use crate::http::json::ApiError;
use crate::state::AppState;
use crate::ui::chart::sizes_chart;
use crate::ui::layout;
use crate::ui::login::CsrfForm;
use crate::ui::overview::{failure, health_badges, quota};
use crate::ui::session::{UiSession, csrf_refused};

/// The most versions (committed and trashed) read for one page; the newest are shown.
const MAX_VERSIONS_READ: usize = 10_000;

/// The most rows of the versions table.
const MAX_ROWS: usize = 1000;

/// The same answer for a collection that does not exist and one the user may not see, on the
/// page and for every action: the same status and the same page, which does not repeat the
/// name asked for.
fn not_open(session: &UiSession) -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        Some(session),
        "No such collection",
        "There is no collection of that name open to you.",
    )
}

/// The collection `raw` names, if the user may see it; else the answer of [`not_open`], so an
/// action tells no more than the page about which collections exist.
async fn visible(state: &AppState, session: &UiSession, raw: &str) -> Result<Collection, Response> {
    let Ok(id) = CollectionId::new(raw) else { return Err(not_open(session)) };
    match state.inner.engine.collection(&session.caller.actor, &id).await {
        Ok(c) => Ok(c),
        Err(e) if matches!(e.kind(), backup_core::ErrorKind::NotFound | backup_core::ErrorKind::PermissionDenied) => {
            Err(not_open(session))
        }
        Err(e) => Err(failure(session, &e)),
    }
}

/// What the user may do here: each decided by the engine's authorizer, as the API does.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    list: bool,
    download: bool,
    delete: bool,
    restore: bool,
}

async fn allowed(state: &AppState, session: &UiSession, collection: &Collection) -> Allowed {
    let may =
        |action| async move { state.inner.engine.allows(&session.caller.actor, collection, action).await.is_ok() };
    Allowed {
        list: may(Action::ListVersions).await,
        download: may(Action::Download).await,
        delete: may(Action::DeleteVersion).await,
        restore: may(Action::RestoreVersion).await,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    done: Option<String>,
    version: Option<u64>,
}

/// `GET /ui/collections/{id}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    session: UiSession,
    Path(raw): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let collection = match visible(&state, &session, &raw).await {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    let id = collection.id.clone();
    let engine = &state.inner.engine;
    let actor = &session.caller.actor;
    let assessment = match engine.health(actor, &id).await {
        Ok(a) => a,
        Err(e) => return failure(&session, &e),
    };
    let may = allowed(&state, &session, &collection).await;
    let (versions, decisions) = if may.list {
        let versions = match all_versions(&state, &session, &id).await {
            Ok(v) => v,
            Err(e) => return failure(&session, &e),
        };
        let decisions = match engine.retention_preview(actor, &id).await {
            Ok(d) => d.into_iter().map(|d| (d.number, d)).collect(),
            Err(e) => return failure(&session, &e),
        };
        (versions, decisions)
    } else {
        (Vec::new(), HashMap::new())
    };
    let activity = crate::ui::activity::recent(engine, actor, &id).await;
    let spec = &collection.spec;
    let committed: Vec<&Version> = versions.iter().filter(|v| v.state == VersionState::Committed).collect();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1:8080");
    let badge_path = format!("/ui/badge/{}.svg", id.as_str());
    let body = html! {
        p.crumbs { a href="/ui/" { "Collections" } " / " (id.as_str()) }
        h1 { (id.as_str()) }
        @if !spec.description.is_empty() { p.description { (spec.description) } }
        @if let Some(notice) = notice(&q) { p.notice role="status" { (notice) } }
        section.summary {
            div {
                h2 { "Health" }
                (health_badges(&assessment))
                p { img.badge-image src=(badge_path) alt=(format!("backup health of {}", id.as_str())); }
                details {
                    summary { "Badge for a README" }
                    code.snippet { "![backup](http://" (host) (badge_path) ")" }
                    p.muted { "A collection with a health code needs " code { "?code=…" } " after the address." }
                }
            }
            div {
                h2 { "Space" }
                (quota(assessment.committed_bytes, spec.limits.max_collection_size))
                p.muted {
                    (assessment.versions) " of " (spec.limits.max_versions) " versions kept; "
                    "at most " (format::bytes(spec.limits.max_version_size)) " each"
                }
            }
            div {
                h2 { "Retention" }
                p { (spec.retention.strategy) }
                @if !spec.retention.options.is_empty() {
                    p.muted {
                        @for (i, (k, v)) in spec.retention.options.iter().enumerate() {
                            @if i > 0 { ", " } (k) " " (v)
                        }
                    }
                }
                @if let Some(lock) = spec.lock {
                    p {
                        span.tag { (lock.mode) " lock" } " every version is locked for "
                        (humantime::format_duration(lock.min_retention.to_std().unwrap_or_default()))
                    }
                }
            }
        }
        @if may.list {
            h2 { "Sizes over time" }
            (sizes_chart(&committed))
            h2 { "Versions" }
            (versions_table(&id, &versions, &decisions, may, &session.csrf))
        } @else {
            p.muted { "You may not list this collection's versions." }
        }
        @if let Some(events) = &activity {
            h2 { "Recent activity" }
            (crate::ui::activity::events_table(events))
        }
    };
    layout::page(StatusCode::OK, id.as_str(), Some(&session), body)
}

/// What the last action did, from the redirect's query (numbers only: nothing a link could
/// inject).
fn notice(q: &PageQuery) -> Option<String> {
    let n = q.version?;
    let done = q.done.as_deref()?;
    if done == VersionAction::Delete.done() {
        Some(format!("Version {n} was deleted: it is in the trash, restorable for the trash retention."))
    } else if done == VersionAction::Restore.done() {
        Some(format!("Version {n} was restored."))
    } else {
        None
    }
}

/// Committed and trashed versions, newest first, at most [`MAX_ROWS`].
async fn all_versions(state: &AppState, session: &UiSession, id: &CollectionId) -> backup_core::Result<Vec<Version>> {
    let mut versions = Vec::new();
    let mut query = VersionQuery::first(1000).with_trashed();
    loop {
        let page = state.inner.engine.versions(&session.caller.actor, id, query).await?;
        versions.extend(page.items);
        match page.next {
            Some(n) if versions.len() < MAX_VERSIONS_READ => query = VersionQuery::first(1000).with_trashed().after(n),
            _ => break,
        }
    }
    versions.reverse();
    versions.truncate(MAX_ROWS);
    Ok(versions)
}

fn versions_table(
    id: &CollectionId,
    versions: &[Version],
    decisions: &HashMap<u64, RotationDecision>,
    may: Allowed,
    csrf: &str,
) -> Markup {
    let base = format!("/ui/collections/{}/versions", id.as_str());
    html! {
        @if versions.is_empty() {
            p.muted { "No versions yet." }
        } @else {
            table.versions {
                thead { tr {
                    th { "#" } th { "File" } th { "Size" } th { "Uploaded by" } th { "Received" } th { "State" }
                    th { "Next commit" } th { "" }
                } }
                tbody {
                    @for v in versions {
                        tr data-version=(v.number) data-state=(v.state.name()) {
                            td { (v.number) }
                            td.file { (v.filename) }
                            td { (format::bytes(v.size)) }
                            td {
                                (v.uploader.user)
                                @if let Some(k) = &v.uploader.access_key { span.muted { " (" (k) ")" } }
                            }
                            td { time datetime=(format::machine_time(v.created_at)) { (format::time(v.created_at)) } }
                            td { (state_cell(v)) }
                            td { (decision_cell(decisions.get(&v.number))) }
                            td.actions {
                                @if v.state == VersionState::Committed {
                                    @if may.download && v.quarantined.is_none() {
                                        a.button href=(format!("{base}/{}/download", v.number)) download=(v.filename) {
                                            "Download"
                                        }
                                    }
                                    @if may.delete && !v.held && v.protected_until.is_none() && v.lock.is_none() {
                                        form method="post" action=(format!("{base}/{}/delete", v.number)) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.danger type="submit" { "Delete" }
                                        }
                                    }
                                } @else if v.state == VersionState::Trashed && may.restore {
                                    form method="post" action=(format!("{base}/{}/restore", v.number)) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { "Restore" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_cell(v: &Version) -> Markup {
    html! {
        @match v.state {
            VersionState::Committed => span.state { "kept" },
            VersionState::Trashed => span.state.trashed title=(v.trash_reason.clone().unwrap_or_default()) {
                "in trash"
            },
            other => span.state { (other.name()) },
        }
        @if v.held { " " span.tag { "held" } }
        @if let Some(until) = v.protected_until {
            " " span.tag title=(format!("protected until {}", format::time(until))) { "protected" }
        }
        @if let Some(lock) = v.lock {
            " " span.tag title=(format!("no one may delete it before {}", format::time(lock.until))) {
                "locked (" (lock.mode) ") until " (format::time(lock.until))
            }
        }
        @if let Some(why) = &v.quarantined { " " span.tag.fail title=(why) { "quarantined" } }
    }
}

fn decision_cell(decision: Option<&RotationDecision>) -> Markup {
    html! {
        @match decision {
            None => span.muted { "—" },
            Some(d) => {
                @if d.mark == Mark::Keep { span.keep { "keeps" } } @else { span.evict { "removes" } }
                @if !d.reasons.is_empty() { div.muted.reasons { (d.reasons.join(", ")) } }
            }
        }
    }
}

/// `GET /ui/collections/{id}/versions/{n}/download`: the API's download, for this session,
/// with the pages' security headers (never stored, never sniffed, never embedded by another
/// site).
pub(crate) async fn download(
    State(state): State<AppState>,
    session: UiSession,
    Path((raw, number)): Path<(String, u64)>,
) -> Response {
    let collection = match visible(&state, &session, &raw).await {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    match stream_version(&state, &session.caller, &collection.id, VersionSelector::Number(number)).await {
        Ok(response) => layout::secure(response, "no-store"),
        Err(e) => layout::api_error_page(&session, e),
    }
}

/// What a version's form does.
#[derive(Debug, Clone, Copy)]
enum VersionAction {
    Delete,
    Restore,
}

impl VersionAction {
    /// The word the redirect's `done=` carries, which [`notice`] reads back.
    fn done(self) -> &'static str {
        match self {
            VersionAction::Delete => "deleted",
            VersionAction::Restore => "restored",
        }
    }
}

/// `POST /ui/collections/{id}/versions/{n}/delete`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    session: UiSession,
    Path((raw, number)): Path<(String, u64)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&state, &session, &raw, number, &form, VersionAction::Delete).await
}

/// `POST /ui/collections/{id}/versions/{n}/restore`.
pub(crate) async fn restore(
    State(state): State<AppState>,
    session: UiSession,
    Path((raw, number)): Path<(String, u64)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&state, &session, &raw, number, &form, VersionAction::Restore).await
}

/// A delete or a restore, after the CSRF check, then back to the collection's page.
async fn act(
    state: &AppState,
    session: &UiSession,
    raw: &str,
    number: u64,
    form: &CsrfForm,
    action: VersionAction,
) -> Response {
    if !session.csrf_matches(&form.csrf) {
        return csrf_refused(Some(session));
    }
    let id = match visible(state, session, raw).await {
        Ok(c) => c.id,
        Err(answer) => return answer,
    };
    let engine = &state.inner.engine;
    let actor = &session.caller.actor;
    let result = match action {
        VersionAction::Delete => engine.delete_version(actor, &id, number).await,
        VersionAction::Restore => engine.restore_version(actor, &id, number).await,
    };
    match result {
        Ok(_) => {
            layout::redirect_to(format!("/ui/collections/{}?done={}&version={number}", id.as_str(), action.done()))
        }
        Err(e) => layout::api_error_page(session, ApiError::from_core(&e, "you may not do this in this collection")),
    }
}
