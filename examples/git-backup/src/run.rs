//! One run: mirror, compare the refs with the last version's, bundle, upload. One repository
//! failing never stops the others; a failure is recorded and sent to the webhook.

use std::time::{Duration, Instant};

use backup_core::Metadata;
use chrono::Utc;
use serde_json::json;

use crate::config::{Config, Repository};
use crate::git;
use crate::state::{State, StoredVersion};
use crate::target::{Target, VersionInfo};

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
    Stored { version: StoredVersion, size: u64, refs: usize },
    Unchanged { number: u64 },
}

/// Why the refs cannot be skipped against the collection's newest version, or `None` when
/// they can: it is the version this tool stored last (same id and uploader), and it holds
/// the refs the mirror has now.
fn cannot_skip(previous: Option<&StoredVersion>, latest: Option<&VersionInfo>, digest: &str) -> Option<String> {
    let Some(previous) = previous else { return Some("no version stored by this tool yet".into()) };
    let Some(latest) = latest else { return Some("the collection has no version".into()) };
    if latest.id != previous.id || latest.user != previous.user {
        return Some(format!(
            "the newest version ({}, by {:?}) is not the one this tool stored last ({}, by {:?})",
            latest.number, latest.user, previous.number, previous.user
        ));
    }
    if previous.refs_sha256 != digest || latest.metadata.get(META_REFS_SHA256).map(String::as_str) != Some(digest) {
        return Some("the refs changed".into());
    }
    None
}

/// Backs one repository up. `previous` is the last version this tool stored for it.
pub(crate) async fn backup(
    target: &Target,
    config: &Config,
    repo: &Repository,
    previous: Option<&StoredVersion>,
    force: bool,
) -> Result<Outcome, String> {
    target.prepare(repo).await?;
    // Before any git work: a collection the destination does not have fails here.
    let latest = target.summary(&repo.collection).await?.latest;
    let token = match &repo.credentials_env {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|_| format!("credentials_env: {var} is not set"))?),
    };
    let credentials = token.as_deref().map(|token| git::Credentials { source: &repo.source, token });
    let started = Instant::now();
    let mirror = git::mirror(&repo.source, &config.cache_dir, &repo.name, credentials).await?;
    let refs = git::refs(&mirror).await?;
    if refs.count() == 0 {
        return Err(format!("{} has no refs: nothing to back up", repo.source));
    }
    let digest = refs.digest();
    let reason = if force { Some("--force".to_owned()) } else { cannot_skip(previous, latest.as_ref(), &digest) };
    let Some(reason) = reason else {
        // A skip must be proven: the mirror holds what the source itself advertises now. A
        // mirror that stopped following its source (fetching from itself, say) would
        // otherwise report "unchanged" for ever while no backup happens.
        let advertised = git::advertised_refs(&repo.source, credentials).await?;
        if advertised != refs.lines {
            return Err(format!(
                "not backed up: the mirror's refs differ from those {} advertises ({}); the mirror in {} does not follow its source",
                repo.source,
                describe_difference(&refs.lines, &advertised),
                mirror.display()
            ));
        }
        let number = latest.map_or(0, |l| l.number);
        tracing::info!(repository = %repo.name, version = number, "unchanged since version {number}: skipped");
        return Ok(Outcome::Unchanged { number });
    };
    tracing::debug!(repository = %repo.name, "storing a version: {reason}");
    let bundle = tempfile::Builder::new()
        .prefix(&format!(".{}.", repo.name))
        .suffix(".bundle")
        .tempfile_in(&config.cache_dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", config.cache_dir.display()))?;
    git::bundle(&mirror, bundle.path()).await?;
    let mut metadata = Metadata::new();
    metadata.insert(META_SOURCE.into(), repo.source.clone());
    metadata.insert(META_REFS_SHA256.into(), digest.clone());
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
    Ok(Outcome::Stored {
        version: StoredVersion { id: version.id, number: version.number, user: version.user, refs_sha256: digest },
        size: version.size,
        refs: refs.count(),
    })
}

/// How two sorted `OBJECT REFNAME` lists differ, in a few words: counts and the first ref.
fn describe_difference(mirror: &str, advertised: &str) -> String {
    let ours: std::collections::BTreeSet<&str> = mirror.lines().collect();
    let theirs: std::collections::BTreeSet<&str> = advertised.lines().collect();
    let missing: Vec<&str> = theirs.difference(&ours).copied().collect();
    let extra: Vec<&str> = ours.difference(&theirs).copied().collect();
    let name = |line: &str| line.split_once(' ').map_or(line, |(_, n)| n).to_owned();
    let first = missing.first().or(extra.first()).map(|l| format!(", first {}", name(l))).unwrap_or_default();
    format!("{} not in the mirror, {} only in the mirror{first}", missing.len(), extra.len())
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
    let previous = state.get(&repo.name).stored;
    let result = backup(target, config, repo, previous.as_ref(), force).await;
    let recorded = match &result {
        Ok(outcome) => {
            let (number, stored) = match outcome {
                Outcome::Stored { version, size, refs } => {
                    println!("{}: stored version {} ({size} bytes, {refs} refs)", repo.name, version.number);
                    (version.number, Some(version.clone()))
                }
                Outcome::Unchanged { number } => {
                    println!("{}: unchanged since version {number}, skipped", repo.name);
                    (*number, None)
                }
            };
            state.update(&repo.name, |s| {
                s.last_attempt = Some(started);
                s.last_success = Some(Utc::now());
                s.last_version = Some(number);
                s.failures = 0;
                if stored.is_some() {
                    s.stored = stored;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, user: &str, number: u64, digest: &str) -> VersionInfo {
        VersionInfo {
            id: id.into(),
            user: user.into(),
            number,
            size: 1,
            committed_at: None,
            metadata: [(META_REFS_SHA256.to_owned(), digest.to_owned())].into(),
        }
    }

    fn stored(id: &str, number: u64, digest: &str) -> StoredVersion {
        StoredVersion { id: id.into(), number, user: "git-backup".into(), refs_sha256: digest.into() }
    }

    #[test]
    fn only_the_version_this_tool_stored_last_is_a_reason_to_skip() {
        let ours = stored("a", 4, "d1");
        assert_eq!(cannot_skip(Some(&ours), Some(&info("a", "git-backup", 4, "d1")), "d1"), None);
        // The refs changed.
        assert!(cannot_skip(Some(&ours), Some(&info("a", "git-backup", 4, "d1")), "d2").is_some());
        // Someone uploaded after us, with our digest in its metadata: not ours, so stored anew.
        let forged = cannot_skip(Some(&ours), Some(&info("b", "uploader", 5, "d1")), "d1").unwrap();
        assert!(forged.contains("not the one this tool stored last"), "{forged}");
        // Same id reported with another uploader: refused too.
        assert!(cannot_skip(Some(&ours), Some(&info("a", "uploader", 4, "d1")), "d1").is_some());
        // Nothing stored yet (a new cache), or an empty collection.
        assert!(cannot_skip(None, Some(&info("a", "git-backup", 4, "d1")), "d1").is_some());
        assert!(cannot_skip(Some(&ours), None, "d1").is_some());
        // Our version's metadata no longer says what we stored (rewritten): not trusted.
        assert!(cannot_skip(Some(&ours), Some(&info("a", "git-backup", 4, "d0")), "d1").is_some());
    }

    #[test]
    fn a_difference_names_its_first_ref() {
        let text = describe_difference("1 refs/heads/a\n2 refs/heads/main\n", "3 refs/heads/main\n");
        assert_eq!(text, "1 not in the mirror, 2 only in the mirror, first refs/heads/main");
    }
}
