//! Notifications: each target reads the audit log from its own cursor in the catalog and
//! delivers the events it subscribes to, in order, at least once (a crash before the cursor
//! moves delivers again, with the same event id); instances sharing a catalog take turns by
//! the cursor's lease, so each event goes out once in the normal case.

use std::time::Duration;

use backup_core::audit::AuditEvent;
use backup_core::{CollectionId, Engine, ErrorKind, Timestamp};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// The cursor names of targets: a prefix, then the target's name.
const WEBHOOK_CURSOR: &str = "webhook:";
const EMAIL_CURSOR: &str = "email:";

/// A notification target as its cursor tells it: for the metrics, the dashboard and the API.
#[derive(Debug)]
pub(crate) struct TargetState {
    pub(crate) name: String,
    /// `webhook` or `email`.
    pub(crate) kind: &'static str,
    pub(crate) cursor: backup_core::audit::LogCursor,
    /// Events recorded after its place.
    pub(crate) pending: u64,
    pub(crate) delivery: Delivery,
}

/// Every target's state, with the log's head: one read of each.
///
/// # Errors
/// The catalog's.
pub(crate) async fn target_states(engine: &Engine) -> backup_core::Result<(u64, Vec<TargetState>)> {
    let head = engine.audit_head().await?.seq;
    let states = engine
        .log_cursors()
        .await?
        .into_iter()
        .filter_map(|c| {
            let (kind, name) = match c.name.strip_prefix(WEBHOOK_CURSOR) {
                Some(n) => ("webhook", n.to_owned()),
                None => ("email", c.name.strip_prefix(EMAIL_CURSOR)?.to_owned()),
            };
            let (pending, delivery) = (head.saturating_sub(c.seq), Delivery::of(&c.state));
            Some(TargetState { name, kind, cursor: c, pending, delivery })
        })
        .collect();
    Ok((head, states))
}

/// How many events one read takes.
const BATCH: usize = 100;
/// How many dead-lettered event numbers a target remembers.
const DEAD_KEPT: usize = 100;

/// A notification target: a webhook (one signed JSON POST per event) or an e-mail address
/// list (one message per event, alerts by default), with the events and collections it
/// receives.
///
/// ```
/// let hook = backup_server::Target::webhook("chat", "https://chat.example.org/hooks/backup")?
///     .with_secret(b"from a file".to_vec())
///     .with_actions(["alerts"]);
/// let mail = backup_server::Target::email("ops", "smtp://mail.example.org:25", "backups@example.org", &["ops@example.org"])?;
/// # let _ = (hook, mail);
/// # Ok::<(), String>(())
/// ```
#[derive(Clone)]
pub struct Target {
    /// Its name; its cursor is `webhook:<name>` or `email:<name>`.
    pub(crate) name: String,
    pub(crate) channel: Channel,
    /// The actions it receives (`window.missed`, or `alerts` for every alert); none: all.
    pub(crate) actions: Vec<String>,
    /// The collections whose events it receives; none: all (and those of no collection).
    pub(crate) collections: Vec<CollectionId>,
}

/// How a target's events go out.
#[derive(Clone)]
pub(crate) enum Channel {
    Webhook {
        url: reqwest::Url,
        secret: Option<Vec<u8>>,
    },
    Email {
        transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        /// The server's URL as given, for the log (its password hidden).
        shown: String,
        from: lettre::message::Mailbox,
        to: Vec<lettre::message::Mailbox>,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Target");
        d.field("name", &self.name);
        match &self.channel {
            Channel::Webhook { url, secret } => d.field("webhook", &url.as_str()).field("signed", &secret.is_some()),
            Channel::Email { shown, to, .. } => d.field("smtp", shown).field("to", &to.len()),
        };
        d.finish_non_exhaustive()
    }
}

impl Target {
    /// A webhook named `name` (its cursor in the catalog is `webhook:<name>`) that receives
    /// every event, unsigned.
    ///
    /// # Errors
    /// A URL that does not parse or is not http(s).
    pub fn webhook(name: &str, url: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("webhook {name}: {url:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("webhook {name}: {url} is not an http or https URL"));
        }
        let channel = Channel::Webhook { url, secret: None };
        Ok(Target { name: name.to_owned(), channel, actions: Vec::new(), collections: Vec::new() })
    }

    /// E-mail from `from` to each of `to` through the SMTP server at `smtp_url` (`smtp://host:25`,
    /// `smtp://host:587?tls=required`, `smtps://user:password@host`; TLS by rustls), one
    /// message per alert; [`Target::with_actions`] widens it.
    ///
    /// # Errors
    /// A URL or an address that does not parse; no recipient.
    pub fn email(name: &str, smtp_url: &str, from: &str, to: &[&str]) -> Result<Self, String> {
        let shown = match reqwest::Url::parse(smtp_url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("…"));
                }
                u.to_string()
            }
            Err(e) => return Err(format!("e-mail {name}: {smtp_url:?}: {e}")),
        };
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("e-mail {name}: {shown}: {e}"))?
            .build();
        let from = from.parse().map_err(|e| format!("e-mail {name}: from {from:?}: {e}"))?;
        let to = to
            .iter()
            .map(|a| a.parse().map_err(|e| format!("e-mail {name}: to {a:?}: {e}")))
            .collect::<Result<Vec<_>, String>>()?;
        if to.is_empty() {
            return Err(format!("e-mail {name}: no recipient"));
        }
        let channel = Channel::Email { transport, shown, from, to };
        Ok(Target { name: name.to_owned(), channel, actions: vec!["alerts".to_owned()], collections: Vec::new() })
    }

    /// Signs each request of a webhook with `secret` (`X-Backup-Signature`).
    pub fn with_secret(mut self, secret: Vec<u8>) -> Self {
        if let Channel::Webhook { secret: s, .. } = &mut self.channel {
            *s = Some(secret);
        }
        self
    }

    /// Only these actions (`alerts` stands for every alert); none: every event.
    pub fn with_actions<S: Into<String>>(mut self, actions: impl IntoIterator<Item = S>) -> Self {
        self.actions = actions.into_iter().map(Into::into).collect();
        self
    }

    /// Only the events of these collections.
    pub fn with_collections(mut self, collections: impl IntoIterator<Item = CollectionId>) -> Self {
        self.collections = collections.into_iter().collect();
        self
    }

    pub(crate) fn cursor(&self) -> String {
        match self.channel {
            Channel::Webhook { .. } => format!("{WEBHOOK_CURSOR}{}", self.name),
            Channel::Email { .. } => format!("{EMAIL_CURSOR}{}", self.name),
        }
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

/// How deliveries retry (the `--webhook-*` flags); the default is theirs.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Retry {
    /// The first pause after a failure; each next one doubles, up to `max`.
    pub min: Duration,
    /// The longest pause.
    pub max: Duration,
    /// How long an event is retried (by the engine's clock) before it is dead-lettered.
    pub dead_after: Duration,
    /// How long one request may take.
    pub timeout: Duration,
    /// How often an idle target looks for new events.
    pub poll: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            min: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            dead_after: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
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

/// Delivers `target`'s events until the task is aborted, as instance `owner`: what the server
/// runs for each target, for a program that runs the engine itself.
///
/// The cursor's place is written at most every 250 ms (and after each failure):
/// a crash delivers again what was sent since, with the same ids, rather than writing to the
/// catalog after every event. The lease is renewed when half of it has passed.
pub async fn deliver(engine: Engine, target: Target, owner: String, retry: Retry) {
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
            Ok(id) => break id.to_string(),
            Err(e) => {
                tracing::warn!(target = %target.name, error = %e, "webhook: the repository cannot be read yet");
                tokio::time::sleep(retry.poll.max(Duration::from_secs(1))).await;
            }
        }
    };
    let mut sender = Sender { engine, client, target, owner, retry, repository, held: None };
    loop {
        let pause = match sender.round().await {
            Ok(pause) => pause,
            Err(e) => {
                // Lost the lease, or the catalog failed: start again from what it holds.
                if e.kind() != ErrorKind::Conflict {
                    tracing::warn!(target = %sender.target.name, error = %e, "webhook delivery failed; retrying");
                }
                sender.held = None;
                sender.retry.poll.max(Duration::from_secs(1))
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// How long a target that caught up waits before it reads the log again.
const CATCH_UP_PAUSE: Duration = Duration::from_millis(100);

/// How often a delivering target writes its place at most.
const PERSIST_EVERY: Duration = Duration::from_millis(250);

/// A target's delivery loop.
struct Sender {
    engine: Engine,
    client: reqwest::Client,
    target: Target,
    owner: String,
    retry: Retry,
    repository: String,
    held: Option<Held>,
}

/// The cursor while this instance holds it.
struct Held {
    /// Where the catalog has it.
    persisted: u64,
    /// Where delivery is.
    at: u64,
    state: Delivery,
    renew_at: Timestamp,
    persisted_when: std::time::Instant,
}

impl Sender {
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.retry.timeout * 3 + Duration::from_secs(30)).unwrap_or(chrono::Duration::MAX)
    }

    /// Takes or renews the lease when due; a cursor another instance moved meanwhile is taken
    /// as the catalog has it.
    async fn hold(&mut self) -> backup_core::Result<()> {
        let now = Timestamp::from(self.engine.clock().now());
        if self.held.as_ref().is_some_and(|h| now < h.renew_at) {
            return Ok(());
        }
        let lease = self.lease();
        let cursor = self.engine.claim_log_cursor(&self.target.cursor(), &self.owner, now, now + lease).await?;
        let renew_at = now + lease / 2;
        match &mut self.held {
            Some(h) if h.persisted == cursor.seq => h.renew_at = renew_at,
            _ => {
                self.held = Some(Held {
                    persisted: cursor.seq,
                    at: cursor.seq,
                    state: Delivery::of(&cursor.state),
                    renew_at,
                    persisted_when: std::time::Instant::now(),
                });
            }
        }
        Ok(())
    }

    /// Writes the place and the state.
    async fn persist(&mut self) -> backup_core::Result<()> {
        let name = self.target.cursor();
        let Some(h) = &mut self.held else { return Ok(()) };
        let text = serde_json::to_string(&h.state).map_err(|e| backup_core::Error::internal(e.to_string()))?;
        self.engine.advance_log_cursor(&name, &self.owner, h.persisted, h.at, &text, Vec::new()).await?;
        h.persisted = h.at;
        h.persisted_when = std::time::Instant::now();
        Ok(())
    }

    /// Delivers what follows the cursor; returns the pause before the next round.
    async fn round(&mut self) -> backup_core::Result<Duration> {
        self.hold().await?;
        let at = self.held.as_ref().map_or(0, |h| h.at);
        let events = self.engine.read_audit(at, BATCH).await?;
        if events.is_empty() {
            if self.held.as_ref().is_some_and(|h| h.at != h.persisted) {
                self.persist().await?;
            }
            return Ok(self.retry.poll);
        }
        let mut pause = Duration::ZERO;
        for e in &events {
            if !self.target.wants(e) {
                self.advance_to(e.seq);
                continue;
            }
            // A slow receiver must not outlast the lease: renewed when half of it has passed.
            self.hold().await?;
            match self.send(e).await {
                Ok(()) => {
                    self.advance_to(e.seq);
                    if let Some(h) = &mut self.held {
                        h.state.delivered_total += 1;
                        h.state.attempts = 0;
                        h.state.failing_since = None;
                        h.state.last_error = None;
                    }
                }
                Err(reason) => {
                    pause = self.failed(e, reason);
                    self.persist().await?;
                    break;
                }
            }
        }
        let due = self.held.as_ref().is_some_and(|h| h.persisted_when.elapsed() >= PERSIST_EVERY);
        if due {
            self.persist().await?;
        }
        // A short batch caught up with the log: wait a little for more rather than read it
        // again at once (under a stream of uploads, one read and one round for every event
        // would cost the uploads more than the deliveries).
        if pause.is_zero() && events.len() < BATCH {
            pause = self.retry.poll.min(CATCH_UP_PAUSE);
        }
        Ok(pause)
    }

    fn advance_to(&mut self, seq: u64) {
        if let Some(h) = &mut self.held {
            h.at = seq;
        }
    }

    /// Records a failed attempt at `e`: a pause that doubles with each, or, once the event has
    /// failed for `dead_after`, its dead-lettering (the cursor passes it).
    fn failed(&mut self, e: &AuditEvent, reason: String) -> Duration {
        let now = Timestamp::from(self.engine.clock().now());
        let (name, retry) = (self.target.name.clone(), self.retry);
        let Some(h) = &mut self.held else { return retry.min };
        let since = *h.state.failing_since.get_or_insert(now);
        h.state.attempts += 1;
        tracing::warn!(target = %name, event = e.seq, attempts = h.state.attempts, "webhook delivery failed: {reason}");
        h.state.last_error = Some(reason);
        let dead_at = since + chrono::Duration::from_std(retry.dead_after).unwrap_or(chrono::Duration::MAX);
        if now >= dead_at {
            tracing::error!(target = %name, event = e.seq, "webhook: the event is dead-lettered after {} attempts", h.state.attempts);
            h.state.dead.push(e.seq);
            if h.state.dead.len() > DEAD_KEPT {
                h.state.dead.remove(0);
            }
            h.state.failed_total += 1;
            h.state.attempts = 0;
            h.state.failing_since = None;
            h.at = e.seq;
            return Duration::ZERO;
        }
        let doubled = retry.min.saturating_mul(1u32 << h.state.attempts.min(20).saturating_sub(1));
        doubled.min(retry.max)
    }

    /// Sends one event. A webhook's answer body is never read (a hostile receiver cannot
    /// feed us anything).
    async fn send(&self, e: &AuditEvent) -> Result<(), String> {
        let id = format!("{}:{}", self.repository, e.seq);
        match &self.target.channel {
            Channel::Webhook { url, secret } => {
                let body = body(e, &id, Timestamp::from(self.engine.clock().now()));
                let mut request = self
                    .client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Backup-Event-Id", &id);
                if let Some(secret) = secret {
                    request = request.header("X-Backup-Signature", signature(secret, &body));
                }
                match request.body(body).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("the receiver answered {}", r.status())),
                    Err(err) => Err(err.to_string()),
                }
            }
            Channel::Email { transport, from, to, .. } => {
                use lettre::AsyncTransport;
                let message = mail(e, &id, from, to).map_err(|err| format!("the message cannot be built: {err}"))?;
                tokio::time::timeout(self.retry.timeout, transport.send(message))
                    .await
                    .map_err(|_| format!("the SMTP server did not answer within {:?}", self.retry.timeout))?
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            }
        }
    }
}

/// An event as an e-mail: the collection and the reason in the subject, every field in the
/// body, the event's id as the message's id (a retried delivery is the same message).
fn mail(
    e: &AuditEvent,
    id: &str,
    from: &lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
) -> Result<lettre::Message, lettre::error::Error> {
    let mut reason: String = e.detail.chars().take(120).collect();
    if reason.len() < e.detail.len() {
        reason.push('…');
    }
    let subject = match &e.collection {
        Some(c) => format!("[backup] {} {c}: {reason}", e.action),
        None => format!("[backup] {}: {reason}", e.action),
    };
    let mut text = format!(
        "{}\n\nevent:      {}\nat:         {}\nactor:      {}\naction:     {}\n",
        e.detail, e.seq, e.at, e.actor, e.action
    );
    if let Some(c) = &e.collection {
        text.push_str(&format!("collection: {c}\n"));
    }
    if let Some(v) = e.version {
        text.push_str(&format!("version:    {v}\n"));
    }
    if let Some(h) = &e.hash {
        text.push_str(&format!("hash:       {h}\n"));
    }
    let host = from.email.domain().to_owned();
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(format!("<{}@{host}>", id.replace(':', "."))))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for t in to {
        builder = builder.to(t.clone());
    }
    builder.body(text)
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
pub(crate) fn targets(args: &crate::config::Args, listening: &[std::net::SocketAddr]) -> Result<Vec<Target>, String> {
    let Some(url) = &args.webhook_url else { return email(args).map(|e| e.into_iter().collect()) };
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
    let mut targets = vec![Target {
        name: "default".to_owned(),
        channel: Channel::Webhook { url, secret },
        actions: Vec::new(),
        collections: Vec::new(),
    }];
    targets.extend(email(args)?);
    Ok(targets)
}

/// The targets collections' manifests name (`spec.notify`): `<collection>-<n>`, each for its
/// collection's events only.
///
/// # Errors
/// A line naming the collection's file and entry: a URL that does not parse or points back at
/// this server, an e-mail without the server's `--smtp-url` and `--smtp-from`.
pub(crate) fn manifest_targets(
    args: &crate::config::Args,
    listening: &[std::net::SocketAddr],
    manifests: &backup_policy::manifest::Manifests,
) -> Result<Vec<Target>, String> {
    use backup_policy::manifest::NotifyChannel;
    let mut out = Vec::new();
    for c in &manifests.collections {
        for (i, rule) in c.notify.iter().enumerate() {
            let name = format!("{}-{i}", c.id);
            let at = |e: String| format!("{}: spec.notify[{i}]: {e}", c.file.display());
            let target = match &rule.channel {
                NotifyChannel::Webhook { url, secret } => {
                    let mut t = Target::webhook(&name, url).map_err(at)?;
                    if let Channel::Webhook { url, .. } = &t.channel {
                        check_url(url, listening).map_err(at)?;
                    }
                    if let Some(secret) = secret {
                        t = t.with_secret(secret.as_bytes().to_vec());
                    }
                    t
                }
                NotifyChannel::Email { to } => {
                    let (Some(url), Some(from)) = (&args.smtp_url, &args.smtp_from) else {
                        return Err(at("an e-mail target needs the server's --smtp-url and --smtp-from".to_owned()));
                    };
                    Target::email(&name, url, from, &[to.as_str()]).map_err(at)?
                }
                _ => return Err(at("a kind of target this build does not know".to_owned())),
            };
            out.push(target.with_actions(rule.events.clone()).with_collections([c.id.clone()]));
        }
    }
    Ok(out)
}

/// The delivery tasks of the targets in force: those of the command line and of the
/// manifests, brought in line with each reload (a changed target restarts; its cursor, kept by
/// name, does not).
#[derive(Debug)]
pub(crate) struct Notifier {
    engine: Engine,
    owner: String,
    retry: Retry,
    running: std::sync::Mutex<std::collections::HashMap<String, (tokio::task::JoinHandle<()>, String)>>,
}

impl Notifier {
    pub(crate) fn new(engine: Engine, owner: String, retry: Retry) -> Self {
        Notifier { engine, owner, retry, running: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    /// Runs exactly `targets`: starts the new and changed ones, stops the others.
    pub(crate) fn sync(&self, targets: Vec<Target>) {
        let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let wanted: std::collections::HashMap<String, (Target, String)> =
            targets.into_iter().map(|t| (t.cursor(), (t.fingerprint(), t))).map(|(k, (f, t))| (k, (t, f))).collect();
        // Two targets of one name would share a cursor: the manifests' names never collide
        // with the command line's (`default`, `email`), and theirs are `<collection>-<n>`.
        running.retain(|name, (task, fingerprint)| {
            let keep = wanted.get(name).is_some_and(|(_, f)| f == fingerprint);
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, (target, fingerprint)) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(name) {
                let task = tokio::spawn(deliver(self.engine.clone(), target, self.owner.clone(), self.retry));
                slot.insert((task, fingerprint));
            }
        }
    }

    /// Stops every delivery.
    pub(crate) fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, (task, _)) in running.drain() {
            task.abort();
        }
    }
}

/// The notification targets of a running server: the command line's, fixed, and the
/// manifests', following reloads.
#[derive(Debug)]
pub(crate) struct Notifications {
    pub(crate) notifier: Notifier,
    cli: Vec<Target>,
    pub(crate) args: crate::config::Args,
    listening: Vec<std::net::SocketAddr>,
}

impl Notifications {
    /// Checks every target (the command line's and those of `manifests`).
    ///
    /// # Errors
    /// As [`targets`] and [`manifest_targets`].
    pub(crate) fn new(
        engine: Engine,
        args: &crate::config::Args,
        listening: &[std::net::SocketAddr],
        manifests: &backup_policy::manifest::Manifests,
    ) -> Result<(Self, Vec<Target>), String> {
        let cli = targets(args, listening)?;
        let mut all = cli.clone();
        all.extend(manifest_targets(args, listening, manifests)?);
        let owner = args.instance_name()?;
        let notifier = Notifier::new(engine, owner, Retry::of(args));
        Ok((Notifications { notifier, cli, args: args.clone(), listening: listening.to_vec() }, all))
    }

    /// The targets with `manifests` in force.
    ///
    /// # Errors
    /// As [`manifest_targets`].
    pub(crate) fn with(&self, manifests: &backup_policy::manifest::Manifests) -> Result<Vec<Target>, String> {
        let mut all = self.cli.clone();
        all.extend(manifest_targets(&self.args, &self.listening, manifests)?);
        Ok(all)
    }
}

impl Target {
    /// What makes two targets the same: a change restarts the delivery (secrets by digest).
    fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let channel = match &self.channel {
            Channel::Webhook { url, secret } => {
                format!("{url} {}", secret.as_ref().map(|s| hex::encode(sha2::Sha256::digest(s))).unwrap_or_default())
            }
            Channel::Email { shown, from, to, .. } => format!("{shown} {from} {to:?}"),
        };
        format!("{channel} {:?} {:?}", self.actions, self.collections)
    }
}

/// The e-mail target the command line names (`--smtp-url`, `--smtp-from`, `--smtp-to`): every
/// alert.
fn email(args: &crate::config::Args) -> Result<Option<Target>, String> {
    let Some(url) = args.smtp_url.as_ref().filter(|_| !args.smtp_to.is_empty()) else { return Ok(None) };
    let from = args.smtp_from.as_deref().ok_or("--smtp-url needs --smtp-from")?;
    let to: Vec<&str> = args.smtp_to.iter().map(String::as_str).collect();
    Target::email("email", url, from, &to).map(Some).map_err(|e| format!("--smtp-url: {e}"))
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
