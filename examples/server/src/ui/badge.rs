//! `GET /ui/badge/{collection}.svg[?code=…]`: a README badge that says whether a collection
//! is healthy, and nothing more than its health route would tell the same visitor.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use backup_core::{Action, CollectionId};
use maud::{Markup, html};

use crate::api::health::{CodeQuery, code_opens};
use crate::state::AppState;
use crate::ui::layout;
use crate::ui::session::MaybeSession;

/// What a badge says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Healthy,
    Failing,
    /// Not known to this visitor: the collection does not exist, or its health needs a code
    /// that was not given (answered alike, so the badge tells no one that a collection
    /// exists).
    Unknown,
}

impl Health {
    fn text(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Failing => "failing",
            Health::Unknown => "unknown",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Health::Healthy => "#1a7f37",
            Health::Failing => "#cf222e",
            Health::Unknown => "#6e7781",
        }
    }
}

/// `GET /ui/badge/{collection}.svg`: open as the collection's health route is (no code for a
/// collection without a health secret, else `?code=`), and to a dashboard session that may
/// read the collection.
pub(crate) async fn badge(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    Path(file): Path<String>,
    Query(q): Query<CodeQuery>,
) -> Response {
    let id = file.strip_suffix(".svg").and_then(|name| CollectionId::new(name).ok());
    let mut personal = false;
    let health = match id {
        None => Health::Unknown,
        Some(id) => {
            let by_session = match &session {
                Some(s) => state.inner.engine.check_access(&s.caller.actor, &id, Action::ReadCollection).await.is_ok(),
                None => false,
            };
            personal = by_session;
            let opens = || by_session || code_opens(&state, &id, q.code.as_deref().unwrap_or_default());
            match state.inner.engine.health_if(&id, |_| opens()).await {
                Ok(Some(a)) if a.healthy() => Health::Healthy,
                Ok(Some(_)) => Health::Failing,
                Ok(None) => Health::Unknown,
                Err(e) if e.kind() == backup_core::ErrorKind::NotFound => Health::Unknown,
                Err(e) => {
                    tracing::error!(error = %e, "badge: the collection's health could not be read");
                    Health::Unknown
                }
            }
        }
    };
    let mut response = badge_svg("backup", health).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    // An answer a session opened is that user's: no shared cache keeps it. Others are
    // revalidated at each view, so a README shows today's health.
    layout::secure(response, if personal { "private, no-store" } else { "no-cache" })
}

/// The width a text takes in the badge's 11 px sans-serif, generously (`textLength` then fits
/// it exactly).
fn text_width(text: &str) -> u32 {
    u32::try_from(text.chars().count()).unwrap_or(u32::MAX / 8).saturating_mul(7).saturating_add(12)
}

/// A flat badge: `label` on grey, the health on its color.
pub(crate) fn badge_svg(label: &str, health: Health) -> Markup {
    let value = health.text();
    let (lw, vw) = (text_width(label), text_width(value));
    let width = lw + vw;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height="20" role="img"
            aria-label=(format!("{label}: {value}")) {
            title { (label) ": " (value) }
            rect width=(lw) height="20" fill="#555" {}
            rect x=(lw) width=(vw) height="20" fill=(health.color()) {}
            g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" {
                text x=(lw / 2) y="14" textLength=(lw - 12) { (label) }
                text x=(lw + vw / 2) y="14" textLength=(vw - 12) { (value) }
            }
        }
    }
}
