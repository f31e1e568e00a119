//! The dashboard's view of the audit log: a collection's recent activity and alerts (for
//! those who may read its log), and the notification targets' delivery state (for those who
//! may read all of it).

use backup_core::audit::{AuditEvent, AuditQuery};
use backup_core::{Actor, CollectionId, Engine};
use maud::{Markup, html};

/// How many recent events a collection's page shows.
const RECENT: usize = 20;
/// How far back in the log the page looks for them.
const LOOK_BACK: u64 = 5000;

/// The newest events of `id` that `actor` may read, newest first; `None` when it may not.
pub(crate) async fn recent(engine: &Engine, actor: &Actor, id: &CollectionId) -> Option<Vec<AuditEvent>> {
    let head = engine.audit_head().await.ok()?.seq;
    let mut after = Some(head.saturating_sub(LOOK_BACK));
    let mut found = Vec::new();
    loop {
        let query = AuditQuery::new().with_collection(id.clone()).with_after(after).with_limit(1000);
        let page = engine.audit_events(actor, &query).await.ok()?;
        found.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let skip = found.len().saturating_sub(RECENT);
    let mut newest: Vec<AuditEvent> = found.into_iter().skip(skip).collect();
    newest.reverse();
    Some(newest)
}

/// A table of events, alerts marked.
pub(crate) fn events_table(events: &[AuditEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "Nothing recorded lately." }
        } @else {
            table.activity {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Version" } th { "Details" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (e.at.to_string()) }
                            td { (e.actor) }
                            td {
                                @if backup_core::alerts::is_alert(&e.action) { span.tag.fail { "alert" } " " }
                                code { (e.action) }
                            }
                            td { @if let Some(v) = e.version { (v) } }
                            td { (e.detail) }
                        }
                    }
                }
            }
        }
    }
}

/// The notification targets: how far behind the log each one is, what it gave up on, its last
/// error. `None` for a viewer who may not read the whole log.
pub(crate) async fn targets(engine: &Engine, actor: &Actor) -> Option<Markup> {
    engine.authorize_audit(actor, None).await.ok()?;
    let (_, rows) = crate::ops::notify::target_states(engine).await.ok()?;
    if rows.is_empty() {
        return None;
    }
    Some(html! {
        h2 { "Notifications" }
        table.targets {
            thead { tr {
                th { "Target" } th { "Kind" } th { "Behind the log" } th { "Delivered" } th { "Dead-lettered" } th { "Last error" }
            } }
            tbody {
                @for t in &rows {
                    @let d = &t.delivery;
                    tr {
                        td { (t.name) }
                        td { @if t.kind == "email" { "e-mail" } @else { (t.kind) } }
                        td { (t.pending) " events" }
                        td { (d.delivered_total) }
                        td {
                            @if d.failed_total > 0 {
                                strong.fail-text { (d.failed_total) }
                                " (events " (d.dead.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) ")"
                            } @else { "0" }
                        }
                        td { @if let Some(e) = &d.last_error { (e) " (" (d.attempts) " attempts)" } }
                    }
                }
            }
        }
    })
}

/// The replicas: how far behind the primary each one is, its failed copies, why it is
/// unavailable. `None` for a viewer who may not read the whole log (it names the stores).
pub(crate) async fn replicas(engine: &Engine, actor: &Actor) -> Option<Markup> {
    engine.authorize_audit(actor, None).await.ok()?;
    let rows = crate::api::replicas::statuses(engine).await.ok()?;
    if rows.is_empty() {
        return None;
    }
    Some(html! {
        h2 { "Replicas" }
        table.replicas {
            thead { tr {
                th { "Replica" } th { "Where" } th { "Behind" } th { "Copied" } th { "Failed copies" } th { "State" }
            } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.name) }
                        td { code { (r.location) } }
                        td {
                            (r.pending_versions) " versions (" (crate::format::bytes(r.pending_bytes)) ")"
                            @if r.lag_seconds > 0 { ", oldest " (r.lag_seconds) " s" }
                            @if r.catching_up { ", catching up" }
                        }
                        td { (r.copied) }
                        td {
                            @if r.failed.is_empty() { "0" } @else {
                                strong.fail-text { (r.failed.len()) }
                                @for f in r.failed.iter().take(3) {
                                    br; (f.collection.as_str()) " v" (f.number) ": " (f.last_error) " (" (f.attempts) " attempts)"
                                }
                            }
                        }
                        td {
                            @if let Some(u) = &r.unavailable { strong.fail-text { "unavailable" } ": " (u) }
                            @else { "up to date" @if r.deletions_pending > 0 { ", " (r.deletions_pending) " deletions waiting for their delay" } }
                        }
                    }
                }
            }
        }
    })
}
