//! Notifications: each target reads the audit log from its own cursor in the catalog and
//! delivers the events it subscribes to, in order, at least once (a crash before the cursor
//! moves delivers again, with the same event id); instances sharing a catalog take turns by
//! the cursor's lease, so each event goes out once in the normal case.

use std::time::Duration;

use backup_core::audit::AuditEvent;
use backup_core::{CollectionId, Engine, ErrorKind, Timestamp};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// How many events one read takes.
const BATCH: usize = 100;
/// How many dead-lettered event numbers a target remembers.
const DEAD_KEPT: usize = 100;

/// A webhook: one POST per event, signed with the target's secret.
#[derive(Clone)]
pub(crate) struct Webhook {
    /// Its name; its cursor is `webhook:<name>`.
    pub(crate) name: String,
    pub(crate) url: reqwest::Url,
    pub(crate) secret: Option<Vec<u8>>,
    /// The actions it receives (`window.missed`, or `alerts` for every alert); none: all.
    pub(crate) actions: Vec<String>,
    /// The collections whose events it receives; none: all (and those of no collection).
    pub(crate) collections: Vec<CollectionId>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub(crate) fn cursor(&self) -> String {
        format!("webhook:{}", self.name)
    }

    fn wants(&self, e: &AuditEvent) -> bool {
        let action = self.actions.is_empty()
            || self
                .actions
                .iter()
                .any(|a| a == &e.action || (a == "alerts" && backup_core::alerts::is_alert(&e.action)));
        let collection =
            self.collections.is_empty() || e.collection.as_ref().is_some_and(|c| self.collections.contains(c));
        action && collection
    }
}

/// How deliveries retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    /// The first pause after a failure; each next one doubles, up to `max`.
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    /// How long an event is retried (by the engine's clock) before it is dead-lettered.
    pub(crate) dead_after: Duration,
    /// How long one request may take.
    pub(crate) timeout: Duration,
    /// How often an idle target looks for new events.
    pub(crate) poll: Duration,
}

/// What a target keeps in its cursor between runs and instances.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Delivery {
    #[serde(default)]
    pub(crate) delivered_total: u64,
    #[serde(default)]
    pub(crate) failed_total: u64,
    /// Failed attempts at the event after the cursor.
    #[serde(default)]
    pub(crate) attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failing_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    /// The newest dead-lettered events (their sequence numbers).
    #[serde(default)]
    pub(crate) dead: Vec<u64>,
}

impl Delivery {
    pub(crate) fn of(state: &str) -> Self {
        serde_json::from_str(state).unwrap_or_default()
    }
}

/// The body of a webhook: the event as the audit route shows it, its id, and when it was
/// sent (inside what the signature covers, so that a captured request cannot be replayed as
/// new).
pub(crate) fn body(event: &AuditEvent, id: &str, sent_at: Timestamp) -> Vec<u8> {
    let mut v = crate::api::audit::event(event);
    v["id"] = serde_json::Value::from(id);
    v["timestamp"] = serde_json::Value::from(sent_at.to_string());
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub(crate) fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers `target`'s events until the task is aborted.
pub(crate) async fn deliver(engine: Engine, target: Webhook, owner: String, retry: Retry) {
    let client = match reqwest::Client::builder()
        .timeout(retry.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("backup-server/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target = %target.name, error = %e, "the webhook's client cannot be built");
            return;
        }
    };
    let repository = loop {
        match engine.open_repository().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "webhook: the repository cannot be read yet");
                tokio::time::sleep(retry.poll.max(Duration::from_secs(1))).await;
            }
        }
    };
    let mut pause = Duration::ZERO;
    loop {
        tokio::time::sleep(pause).await;
        pause = match round(&engine, &client, &target, &owner, &retry, &repository.to_string()).await {
            Ok(next) => next,
            Err(e) if e.kind() == ErrorKind::Conflict => retry.poll.max(Duration::from_secs(1)),
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "webhook delivery failed; retrying");
                retry.poll.max(Duration::from_secs(1))
            }
        };
    }
}

/// One round: claims the cursor, delivers what follows it, moves it; returns the pause before
/// the next round.
async fn round(
    engine: &Engine,
    client: &reqwest::Client,
    target: &Webhook,
    owner: &str,
    retry: &Retry,
    repository: &str,
) -> backup_core::Result<Duration> {
    let name = target.cursor();
    let lease =
        chrono::Duration::from_std(retry.timeout * 3 + Duration::from_secs(30)).unwrap_or(chrono::Duration::MAX);
    let claimed_at = engine.clock().now();
    let cursor = engine.claim_log_cursor(&name, owner, claimed_at.into(), Timestamp::from(claimed_at) + lease).await?;
    let mut state = Delivery::of(&cursor.state);
    let events = engine.read_audit(cursor.seq, BATCH).await?;
    if events.is_empty() {
        return Ok(retry.poll);
    }
    let (from, mut at) = (cursor.seq, cursor.seq);
    let mut pause = Duration::ZERO;
    for e in &events {
        if !target.wants(e) {
            at = e.seq;
            continue;
        }
        let id = format!("{repository}:{}", e.seq);
        let sent_at = Timestamp::from(engine.clock().now());
        let body = body(e, &id, sent_at);
        let mut request = client
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Backup-Event-Id", &id);
        if let Some(secret) = &target.secret {
            request = request.header("X-Backup-Signature", signature(secret, &body));
        }
        // The answer's body is never read: a hostile receiver cannot feed us anything.
        let outcome = match request.body(body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the receiver answered {}", r.status())),
            Err(err) => Err(format!("{err}")),
        };
        match outcome {
            Ok(()) => {
                at = e.seq;
                state.delivered_total += 1;
                state.attempts = 0;
                state.failing_since = None;
                state.last_error = None;
            }
            Err(reason) => {
                let now = Timestamp::from(engine.clock().now());
                let since = *state.failing_since.get_or_insert(now);
                state.attempts += 1;
                tracing::warn!(target = %target.name, event = %id, attempts = state.attempts, "webhook delivery failed: {reason}");
                state.last_error = Some(reason);
                let dead_at = since + chrono::Duration::from_std(retry.dead_after).unwrap_or(chrono::Duration::MAX);
                if now >= dead_at {
                    tracing::error!(target = %target.name, event = %id, "webhook: the event is dead-lettered after {} attempts", state.attempts);
                    state.dead.push(e.seq);
                    if state.dead.len() > DEAD_KEPT {
                        state.dead.remove(0);
                    }
                    state.failed_total += 1;
                    state.attempts = 0;
                    state.failing_since = None;
                    at = e.seq;
                    continue;
                }
                let exp = retry.min.saturating_mul(1u32 << state.attempts.min(20).saturating_sub(1));
                pause = exp.min(retry.max);
                break;
            }
        }
    }
    let state_text = serde_json::to_string(&state).map_err(|e| backup_core::Error::internal(e.to_string()))?;
    engine.advance_log_cursor(&name, owner, from, at, &state_text, Vec::new()).await?;
    Ok(pause)
}

/// Why a webhook URL cannot be a target: not http(s), or the server itself (its own
/// listening address: every event would make another).
pub(crate) fn check_url(url: &reqwest::Url, listening: &[std::net::SocketAddr]) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{url}: a webhook is an http or https URL"));
    }
    let port = url.port_or_known_default();
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified() || listening.iter().any(|a| a.ip() == ip));
    if local && listening.iter().any(|a| Some(a.port()) == port) {
        return Err(format!("{url} points back at this server, which would notify itself of every notification"));
    }
    Ok(())
}

/// The targets the command line names (`--webhook-url`, `--webhook-secret-file`), checked
/// against where the server listens.
///
/// # Errors
/// A line naming the flag: an unreadable secret file, a URL that is not http(s) or that
/// points back at this server.
pub(crate) fn targets(args: &crate::config::Args, listening: &[std::net::SocketAddr]) -> Result<Vec<Webhook>, String> {
    let Some(url) = &args.webhook_url else { return Ok(Vec::new()) };
    let url = reqwest::Url::parse(url).map_err(|e| format!("--webhook-url {url:?}: {e}"))?;
    check_url(&url, listening).map_err(|e| format!("--webhook-url: {e}"))?;
    let secret = match &args.webhook_secret_file {
        None => None,
        Some(file) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("--webhook-secret-file {}: {e}", file.display()))?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(format!("--webhook-secret-file {}: the file is empty", file.display()));
            }
            Some(secret.as_bytes().to_vec())
        }
    };
    Ok(vec![Webhook { name: "default".to_owned(), url, secret, actions: Vec::new(), collections: Vec::new() }])
}

impl Retry {
    /// From the command line.
    pub(crate) fn of(args: &crate::config::Args) -> Self {
        Retry {
            min: args.webhook_retry_min.max(Duration::from_millis(10)),
            max: args.webhook_retry_max.max(args.webhook_retry_min),
            dead_after: args.webhook_dead_after,
            timeout: args.webhook_timeout.max(Duration::from_millis(100)),
            poll: args.notify_poll.max(Duration::from_millis(10)),
        }
    }
}

/// Runs the detectors every `every`, as `owner`.
pub(crate) async fn detect(engine: Engine, owner: String, every: Duration) {
    loop {
        match engine.run_detectors(&owner).await {
            Ok(run) => {
                for a in &run.alerts {
                    tracing::warn!(action = %a.action, collection = ?a.collection.as_ref().map(|c| c.as_str()), "alert: {}", a.detail);
                }
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => tracing::warn!(error = %e, "the detectors failed; they run again"),
        }
        tokio::time::sleep(every).await;
    }
}
