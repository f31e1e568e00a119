//! One run: mirror, compare the refs with the last version's, bundle, upload. One repository
//! failing never stops the others; a failure is recorded and sent to the webhook.

use std::time::{Duration, Instant};

use backup_core::Metadata;
use chrono::Utc;
use serde_json::json;

use crate::config::{Config, Repository};
use crate::git;
use crate::state::State;
use crate::target::Target;

/// The metadata names a version of a repository carries.
pub(crate) const META_SOURCE: &str = "git.source";
pub(crate) const META_HEAD: &str = "git.head";
pub(crate) const META_REFS: &str = "git.refs";
pub(crate) const META_REFS_SHA256: &str = "git.refs-sha256";
pub(crate) const META_REFS_COUNT: &str = "git.refs-count";

/// The most bytes of refs recorded in full in the metadata (the bundle holds them all; the
/// digest and the count are always recorded).
const MAX_REFS_TEXT: usize = 48 * 1024;

/// What a run did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Stored { number: u64, size: u64, refs: usize },
    Unchanged { number: u64 },
}

/// Backs one repository up.
pub(crate) async fn backup(
    target: &Target,
    config: &Config,
    repo: &Repository,
    force: bool,
) -> Result<Outcome, String> {
    target.prepare(repo).await?;
    // Before any git work: a collection the destination does not have fails here.
    let latest = target.summary(&repo.collection).await?.latest;
    let credentials = match &repo.credentials_env {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|_| format!("credentials_env: {var} is not set"))?),
    };
    let started = Instant::now();
    let mirror = git::mirror(&repo.source, &config.cache_dir, &repo.name, credentials.as_deref()).await?;
    let refs = git::refs(&mirror).await?;
    if refs.count() == 0 {
        return Err(format!("{} has no refs: nothing to back up", repo.source));
    }
    let digest = refs.digest();
    if !force
        && let Some(latest) = &latest
        && latest.metadata.get(META_REFS_SHA256) == Some(&digest)
    {
        tracing::info!(repository = %repo.name, version = latest.number, "unchanged since version {}: skipped", latest.number);
        return Ok(Outcome::Unchanged { number: latest.number });
    }
    let bundle = tempfile::Builder::new()
        .prefix(&format!(".{}.", repo.name))
        .suffix(".bundle")
        .tempfile_in(&config.cache_dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", config.cache_dir.display()))?;
    git::bundle(&mirror, bundle.path()).await?;
    let mut metadata = Metadata::new();
    metadata.insert(META_SOURCE.into(), repo.source.clone());
    metadata.insert(META_REFS_SHA256.into(), digest);
    metadata.insert(META_REFS_COUNT.into(), refs.count().to_string());
    if let Some(head) = &refs.head {
        metadata.insert(META_HEAD.into(), head.clone());
    }
    if refs.lines.len() <= MAX_REFS_TEXT {
        metadata.insert(META_REFS.into(), refs.lines.clone());
    }
    let version = target.upload(&repo.collection, bundle.path(), metadata).await?;
    tracing::info!(
        repository = %repo.name,
        version = version.number,
        bytes = version.size,
        refs = refs.count(),
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "stored version {}", version.number
    );
    Ok(Outcome::Stored { number: version.number, size: version.size, refs: refs.count() })
}

/// Runs `repos` one after the other, recording each outcome; whether all succeeded.
pub(crate) async fn run_all(
    target: &Target,
    config: &Config,
    state: &mut State,
    repos: &[Repository],
    force: bool,
) -> bool {
    let mut all_ok = true;
    for repo in repos {
        all_ok &= run_one(target, config, state, repo, force).await;
    }
    all_ok
}

/// Runs one repository and records the outcome; whether it succeeded.
pub(crate) async fn run_one(
    target: &Target,
    config: &Config,
    state: &mut State,
    repo: &Repository,
    force: bool,
) -> bool {
    let started = Utc::now();
    let result = backup(target, config, repo, force).await;
    let recorded = match &result {
        Ok(outcome) => {
            let number = match outcome {
                Outcome::Stored { number, size, refs } => {
                    println!("{}: stored version {number} ({size} bytes, {refs} refs)", repo.name);
                    *number
                }
                Outcome::Unchanged { number } => {
                    println!("{}: unchanged since version {number}, skipped", repo.name);
                    *number
                }
            };
            state.update(&repo.name, |s| {
                s.last_attempt = Some(started);
                s.last_success = Some(Utc::now());
                s.last_version = Some(number);
                s.failures = 0;
            })
        }
        Err(reason) => {
            tracing::error!(repository = %repo.name, "backup failed: {reason}");
            eprintln!("{}: failed: {reason}", repo.name);
            notify(config, repo, reason).await;
            state.update(&repo.name, |s| {
                s.last_attempt = Some(started);
                s.last_failure = Some(Utc::now());
                s.last_error = Some(reason.clone());
                s.failures = s.failures.saturating_add(1);
            })
        }
    };
    if let Err(e) = recorded {
        tracing::error!("cannot record the outcome: {e}");
    }
    result.is_ok()
}

/// Tells the webhook about a failure (best effort: its own failure is logged).
async fn notify(config: &Config, repo: &Repository, reason: &str) {
    let Some(url) = &config.webhook else { return };
    let body = json!({
        "event": "backup.failed",
        "repository": repo.name,
        "collection": repo.collection.as_str(),
        "error": reason,
        "at": Utc::now().to_rfc3339(),
    });
    let sent = reqwest::Client::new().post(url).timeout(Duration::from_secs(10)).json(&body).send().await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!("the webhook answered {}", r.status()),
        Err(e) => tracing::warn!("the webhook failed: {e}"),
    }
}
