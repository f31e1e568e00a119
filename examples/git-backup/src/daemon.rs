//! `daemon`: runs each repository on its schedule until SIGTERM or Ctrl-C. A run that fell
//! due while the daemon was down runs once at start; a failed run is tried again with a
//! growing pause (one minute, doubling, at most an hour) unless its schedule comes first.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::run::run_one;
use crate::state::State;
use crate::target::Target;

/// The pause before trying a failed repository again.
fn backoff(failures: u32) -> chrono::Duration {
    let minutes = 1i64 << failures.saturating_sub(1).min(6);
    chrono::Duration::minutes(minutes.min(60))
}

/// When each repository runs first: now if a scheduled time passed since its last attempt
/// (the daemon was down), else its next scheduled time.
fn first_runs(config: &Config, state: &State, now: DateTime<Utc>) -> Vec<Option<DateTime<Utc>>> {
    config
        .repositories
        .iter()
        .map(|r| {
            let missed = state
                .get(&r.name)
                .last_attempt
                .and_then(|last| r.schedule.next_after(last))
                .is_some_and(|due| due <= now);
            if missed {
                tracing::info!(repository = %r.name, "a run was due while the daemon was down: running now");
                Some(now)
            } else {
                r.schedule.next_after(now)
            }
        })
        .collect()
}

/// Runs the schedules until a stop signal; the run in progress when it comes finishes first.
pub(crate) async fn run(target: &Target, config: &Config, state: &mut State) -> Result<(), String> {
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let signal = stop_signal().await;
        tracing::info!("{signal}: stopping after the run in progress");
        let _ = stop_tx.send(true);
    });
    let mut due = first_runs(config, state, Utc::now());
    for (r, when) in config.repositories.iter().zip(&due) {
        match when {
            Some(t) => tracing::info!(repository = %r.name, schedule = %r.schedule.text, "next run at {t}"),
            None => tracing::warn!(repository = %r.name, schedule = %r.schedule.text, "the schedule never fires"),
        }
    }
    loop {
        let Some((i, when)) = due.iter().enumerate().filter_map(|(i, t)| t.map(|t| (i, t))).min_by_key(|(_, t)| *t)
        else {
            tracing::warn!("no schedule fires any more");
            let _ = stop.changed().await;
            return Ok(());
        };
        let wait = (when - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
        let repo = &config.repositories[i];
        let ok = run_one(target, config, state, repo, false).await;
        let now = Utc::now();
        let scheduled = repo.schedule.next_after(now);
        due[i] = if ok {
            scheduled
        } else {
            let retry = now + backoff(state.get(&repo.name).failures);
            Some(scheduled.map_or(retry, |s| s.min(retry)))
        };
        if *stop.borrow() {
            return Ok(());
        }
    }
}

/// Waits for SIGTERM or Ctrl-C; which one came.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        return tokio::select! {
            Ok(()) = tokio::signal::ctrl_c() => "interrupted",
            Some(()) = term.recv() => "terminated",
            else => futures::future::pending::<&'static str>().await,
        };
    }
    if tokio::signal::ctrl_c().await.is_err() {
        futures::future::pending::<()>().await;
    }
    "interrupted"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_an_hour() {
        let minutes: Vec<i64> = [1, 2, 3, 4, 7, 30].iter().map(|&n| backoff(n).num_minutes()).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 60, 60]);
    }

    #[test]
    fn a_run_missed_while_down_is_due_at_once() {
        let config = Config::parse("schedule = \"0 3 * * *\"\n[[repository]]\nname = \"a\"\nsource = \".\"\n[[repository]]\nname = \"b\"\nsource = \".\"\n", std::path::Path::new("/")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::load(dir.path()).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        // a last ran two days ago: today's 03:00 was missed. b ran after today's 03:00.
        state.update("a", |s| s.last_attempt = Some(now - chrono::Duration::days(2))).unwrap();
        state.update("b", |s| s.last_attempt = Some(now - chrono::Duration::hours(1))).unwrap();
        let due = first_runs(&config, &state, now);
        assert_eq!(due[0], Some(now));
        assert_eq!(due[1].unwrap().to_rfc3339(), "2026-12-02T03:00:00+00:00");
    }
}
