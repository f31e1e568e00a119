//! Manifests into the catalog, reloads, and the maintenance schedule.

use std::time::Duration;

use backup_core::{AuditEvent, Collection, Engine, ErrorKind};
use backup_policy::manifest::{self, Manifests};
use tokio::task::JoinHandle;

use crate::config::Args;
use crate::state::AppState;

/// Creates the manifests' collections in the catalog, and updates those whose spec changed.
/// Collections the manifests no longer name are kept (they hold backups); the policy then has
/// no ACL or window for them, so only global roles reach them.
pub(crate) async fn collections(engine: &Engine, manifests: &Manifests) -> backup_core::Result<()> {
    let catalog = engine.catalog();
    let now = backup_core::clock::to_micros(engine.clock().now());
    for def in &manifests.collections {
        let audit = |action: &str| {
            AuditEvent::new(now, "configuration", action).collection(&def.id).detail(def.file.display().to_string())
        };
        match catalog.get_collection(&def.id).await {
            Ok(current) if current.spec == def.spec => {}
            Ok(current) => {
                let mut updated = current.clone();
                updated.spec = def.spec.clone();
                updated.revision = current.revision + 1;
                updated.updated_at = now;
                catalog.update_collection(&updated, current.revision, &audit("collection.update")).await?;
                tracing::info!(collection = %def.id, "collection updated from its manifest");
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let c = Collection::new(def.id.clone(), def.spec.clone(), now);
                match catalog.create_collection(&c, &audit("collection.create")).await {
                    // Another instance created it meanwhile.
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    other => other?,
                }
                tracing::info!(collection = %def.id, "collection created from its manifest");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads and validates the manifests (on a blocking thread: it is file I/O).
pub(crate) async fn load_manifests(state: &AppState) -> Result<Manifests, String> {
    let (root, namespace) = (state.inner.config_root.clone(), state.inner.namespace.clone());
    tokio::task::spawn_blocking(move || manifest::load(&root, &namespace).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(format!("reading the manifests: {e}")))
}

/// Re-reads the manifests; on error the configuration in force stays.
async fn reload(state: &AppState) {
    let s = &state.inner;
    match load_manifests(state).await {
        Ok(m) => {
            s.directory.replace(m.policy_set());
            if let Err(e) = collections(&s.engine, &m).await {
                tracing::error!(error = %e, "applying the reloaded manifests failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "reloading the manifests failed; the previous configuration stays"),
    }
}

/// The background work, stopped when dropped or aborted.
#[derive(Debug)]
pub(crate) struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    pub(crate) fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the maintenance schedule (`recover()`, rate limiter clean-up) and the manifest
/// reloads (every interval, and on SIGHUP).
pub(crate) fn background(state: AppState, args: &Args) -> Background {
    let schedule = args.maintenance_schedule.clone();
    let mut tasks = Vec::new();
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        for next in schedule.upcoming(chrono::Utc) {
            let wait = (next - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            match st.engine().recover().await {
                Ok(report) if report.is_clean() => tracing::debug!(?report, "maintenance"),
                Ok(report) => tracing::warn!(?report, "maintenance left work for the next run"),
                Err(e) => tracing::error!(error = %e, "maintenance failed"),
            }
            st.rate_limits().retain_recent();
        }
    }));
    let interval = args.config_reload_interval;
    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let tick = async {
                if interval.is_zero() { std::future::pending::<()>().await } else { tokio::time::sleep(interval).await }
            };
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = tick => {},
                () = hup => tracing::info!("SIGHUP: reloading the manifests"),
            }
            reload(&st).await;
        }
    }));
    Background { tasks }
}
