//! Manifests into the catalog, reloads, and the maintenance schedule.

use std::sync::Arc;
use std::time::Duration;

use backup_core::catalog::protocol::CollectionChange;
use backup_core::{Clock, Engine, ScrubOptions};
use backup_policy::manifest::Manifests;
use tokio::task::JoinHandle;

use crate::config::Args;
use crate::state::AppState;

/// Declares the manifests' collections through the engine (validated and audited): created if
/// missing, updated if their spec changed. Collections the manifests no longer name are kept
/// (they hold backups); the policy then has no ACL or window for them, so only global roles
/// reach them.
pub(crate) async fn collections(engine: &Engine, manifests: &Manifests) -> backup_policy::Result<()> {
    for change in manifests.declare_collections(engine).await? {
        match change {
            CollectionChange::Created(c) => tracing::info!(collection = %c.id, "collection created from its manifest"),
            CollectionChange::Updated(c) => tracing::info!(collection = %c.id, "collection updated from its manifest"),
            _ => {}
        }
    }
    Ok(())
}

/// Reads and validates the manifests (on a blocking thread: it is file I/O).
pub(crate) async fn load_manifests(state: &AppState) -> Result<Manifests, String> {
    state.inner.manifests.load_async().await
}

/// Re-reads the manifests and applies them (on error the configuration in force stays); returns what goes to the audit log (an action
/// and its detail): refusals and failures, and reloads asked for by SIGHUP. The periodic
/// re-read that changes nothing is not recorded (it would fill the log); what it changes in
/// collections is, by the engine.
async fn reload(
    state: &AppState,
    asked: bool,
    notifications: &crate::ops::notify::Notifications,
    replication: &crate::ops::replicate::Replication,
) -> Option<(&'static str, String)> {
    let s = &state.inner;
    match load_manifests(state).await {
        Ok(m) => {
            if let Err(e) = m.check_collections(&s.engine).await {
                tracing::error!(error = %e, "the reloaded manifests are refused; the previous configuration stays");
                return Some(("config.reload_refused", e.to_string()));
            }
            let targets = match notifications.with(&m) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "the reloaded manifests are refused; the previous configuration stays");
                    return Some(("config.reload_refused", e));
                }
            };
            if let Err(e) = replication.reload(&notifications.args, &m) {
                tracing::error!(error = %e, "the reloaded manifests are refused; the previous configuration stays");
                return Some(("config.reload_refused", e));
            }
            s.directory.replace(m.policy_set());
            notifications.notifier.sync(targets);
            if let Err(e) = collections(&s.engine, &m).await {
                tracing::error!(error = %e, "applying the reloaded manifests failed");
                return Some(("config.reload_failed", e.to_string()));
            }
            asked.then(|| ("config.reload", "reloaded on SIGHUP".to_owned()))
        }
        Err(e) => {
            tracing::error!(error = %e, "reloading the manifests failed; the previous configuration stays");
            Some(("config.reload_refused", e))
        }
    }
}

async fn record_reload(state: &AppState, action: &str, detail: String) {
    let engine = state.engine();
    let event = backup_core::AuditEvent::new(engine.clock().now(), "configuration", action).with_detail(detail);
    if let Err(e) = engine.record_audit(&event).await {
        tracing::warn!(error = %e, "the reload could not be written to the audit log");
    }
}

#[derive(Debug)]
pub(crate) struct Background {
    tasks: Vec<JoinHandle<()>>,
    notifications: Arc<crate::ops::notify::Notifications>,
    replication: Arc<crate::ops::replicate::Replication>,
}

impl Background {
    pub(crate) fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.notifications.notifier.stop();
        self.replication.stop();
    }
}

/// How old a readiness probe object must be before the maintenance deletes it: older than any
/// probe still running.
const PROBE_MAX_AGE: Duration = Duration::from_secs(300);

/// Deletes the readiness probe objects that their probes did not (see
/// [`crate::ops::probes::sweep_probes`]).
async fn sweep_probes(state: &AppState) {
    let Ok(age) = chrono::Duration::from_std(PROBE_MAX_AGE) else { return };
    let engine = state.engine();
    match crate::ops::probes::sweep_probes(engine.store(), engine.clock().now() - age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "maintenance: readiness probe objects left behind deleted"),
        Err(e) => tracing::warn!(error = %e, "maintenance: the readiness probe objects could not be listed"),
    }
}

/// Starts the maintenance schedule (`recover()`, readiness probes left behind, rate limiter
/// clean-up) and the manifest
/// reloads (every interval, and on SIGHUP).
pub(crate) fn background(
    state: AppState,
    args: &Args,
    notifications: crate::ops::notify::Notifications,
    targets: Vec<crate::ops::notify::Target>,
    replication: Arc<crate::ops::replicate::Replication>,
) -> Background {
    let mut tasks = Vec::new();
    notifications.notifier.sync(targets);
    let notifications = Arc::new(notifications);
    // Instance names are checked at start; one that cannot be read here leaves the detectors
    // to the other instances.
    if let Ok(owner) = args.instance_name()
        && !args.detector_interval.is_zero()
    {
        tasks.push(tokio::spawn(crate::ops::notify::detect(state.engine().clone(), owner, args.detector_interval)));
    }
    let st = state.clone();
    let clock = state.engine().clock().clone();
    tasks.push(on_schedule(clock.clone(), args.maintenance_schedule.clone(), move || {
        let st = st.clone();
        async move {
            match st.engine().recover().await {
                Ok(report) => log_recovery(&report, "maintenance"),
                Err(e) => tracing::error!(error = %e, "maintenance failed"),
            }
            sweep_probes(&st).await;
            crate::ops::audit::maintain(st.engine()).await;
            st.rate_limits().retain_recent();
            let space = st.clone();
            let _ = tokio::task::spawn_blocking(move || space.inner.space.restore()).await;
        }
    }));
    if let Some(schedule) = args.scrub_schedule.0.clone() {
        let options = ScrubOptions::sample(args.scrub_sample).throttle(args.scrub_rate);
        let st = state.clone();
        tasks.push(on_schedule(clock.clone(), schedule, move || {
            let st = st.clone();
            async move { scrub(&st, &options).await }
        }));
    }
    if let Some(schedule) = args.catalog_snapshot_schedule.0.clone() {
        let keep = args.catalog_snapshots_kept as usize;
        let st = state.clone();
        tasks.push(on_schedule(clock.clone(), schedule, move || {
            let st = st.clone();
            async move { snapshot(&st, keep).await }
        }));
    }
    let interval = args.config_reload_interval;
    let st = state.clone();
    let reloading = notifications.clone();
    let replicas = replication.clone();
    tasks.push(tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last: Option<(&'static str, String)> = None;
        let reloaded = reloading;
        loop {
            let tick = async {
                if interval.is_zero() { std::future::pending::<()>().await } else { clock.sleep(interval).await }
            };
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let asked = tokio::select! {
                () = tick => false,
                () = hup => {
                    tracing::info!("SIGHUP: reloading the manifests");
                    true
                }
            };
            // The same refusal every interval is recorded once, until something changes.
            let outcome = reload(&st, asked, &reloaded, &replicas).await;
            if outcome != last
                && let Some((action, detail)) = outcome.clone()
            {
                record_reload(&st, action, detail).await;
            }
            last = if asked { None } else { outcome };
        }
    }));
    Background { tasks, notifications, replication }
}

/// The longest a schedule sleeps before it looks at the wall clock again: a step of the clock
/// (an NTP correction, a suspended machine) delays a run by at most this.
const SCHEDULE_RECHECK: Duration = Duration::from_secs(60);

/// Runs `work` at every time of `schedule` on `clock`, one run at a time, until aborted.
fn on_schedule<F, Fut>(clock: Arc<dyn Clock>, schedule: croner::Cron, work: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        // The next time after the previous one (never the same one twice, even if a run
        // ended within its second), or after now when a run took past its next time.
        let mut after = clock.now();
        while let Ok(next) = schedule.find_next_occurrence(&after, false) {
            while let Ok(left) = (next - clock.now()).to_std()
                && !left.is_zero()
            {
                clock.sleep(left.min(SCHEDULE_RECHECK)).await;
            }
            work().await;
            after = next.max(clock.now());
        }
    })
}

/// Logs what `recover()` did; unknown objects and failures as warnings, one line each.
pub(crate) fn log_recovery(report: &backup_core::RecoveryReport, when: &'static str) {
    for w in report.warnings() {
        tracing::warn!("{when}: {w}");
    }
    if report.released_own_uploads > 0 {
        tracing::warn!(
            released_own_uploads = report.released_own_uploads,
            "{when}: released the uploads a previous run of this instance left unfinished (it stopped without finishing them)"
        );
    }
    if *report == backup_core::RecoveryReport::default() {
        tracing::debug!(?report, "{when}");
    } else {
        tracing::info!(?report, "{when}");
    }
}

/// Runs a scrub; logs what it found, counts it in the metrics.
pub(crate) async fn scrub(state: &AppState, options: &ScrubOptions) {
    match state.engine().scrub(options).await {
        Ok(report) => {
            state.inner.metrics.scrubbed(&report);
            for d in &report.damaged {
                tracing::error!(collection = %d.collection, version = d.number, reason = d.error.as_deref().unwrap_or_default(),
                    "scrub: the version is damaged and quarantined");
            }
            for f in &report.failures {
                tracing::warn!("scrub: {f}");
            }
            tracing::info!(
                resumed = report.resumed,
                checked = report.checked,
                bytes = report.bytes,
                intact = report.intact,
                damaged = report.damaged.len(),
                released = report.released,
                descriptions_written = report.descriptions_written,
                "scrub finished"
            );
        }
        Err(e) => tracing::error!(error = %e, "scrub failed"),
    }
}

/// Exports the catalog into the storage, keeping the newest `keep` snapshots.
pub(crate) async fn snapshot(state: &AppState, keep: usize) {
    match backup_store::snapshot::take_scheduled_of(state.engine(), keep).await {
        Ok(s) => tracing::info!(key = %s.key, records = s.summary.records, bytes = s.summary.bytes,
            removed = s.removed.len(), "catalog snapshot taken"),
        Err(e) => tracing::error!(error = %e, "catalog snapshot failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use backup_core::ManualClock;
    use chrono::TimeZone;

    use super::*;

    /// The schedules run on the engine's clock: a test moves it and the run that came due
    /// happens, without a real wait; a wall step back does not run anything twice.
    #[tokio::test]
    async fn schedules_run_when_the_clock_reaches_their_time() {
        let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap()));
        let runs = Arc::new(AtomicU32::new(0));
        let (tx, mut ran) = tokio::sync::mpsc::unbounded_channel();
        let every_five_minutes = crate::config::Args::defaults().maintenance_schedule; // 0 */5 * * * *
        let counted = runs.clone();
        let task = on_schedule(clock.clone(), every_five_minutes, move || {
            let (runs, tx) = (counted.clone(), tx.clone());
            async move {
                let _ = tx.send(runs.fetch_add(1, Ordering::SeqCst) + 1);
            }
        });
        // 00:05:00 is the first time: nothing before it.
        clock.advance(chrono::Duration::minutes(4));
        tokio::task::yield_now().await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        clock.advance(chrono::Duration::seconds(31));
        assert_eq!(next_run(&mut ran).await, 1);
        // Ten minutes at once: the run that came due, then the next time after it.
        clock.advance(chrono::Duration::minutes(10));
        assert_eq!(next_run(&mut ran).await, 2);
        clock.advance(chrono::Duration::minutes(5));
        assert_eq!(next_run(&mut ran).await, 3);
        task.abort();
    }

    /// The number of the next run, which must come without a real wait.
    async fn next_run(ran: &mut tokio::sync::mpsc::UnboundedReceiver<u32>) -> u32 {
        tokio::time::timeout(Duration::from_secs(10), ran.recv()).await.expect("a run came due").expect("a run")
    }
}
