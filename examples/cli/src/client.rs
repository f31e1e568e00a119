//! The HTTP client: the server's address, the token, answers read into errors, and retries
//! with backoff for idempotent requests only.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::error::{CliError, Result};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may stay silent while an answer is read (the server cuts its own
/// slow transfers well before).
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// A server's address, as the token store keys it: `scheme://host[:port][/path]`, without a
/// trailing slash.
pub(crate) fn normalize_server(raw: &str) -> Result<String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        CliError::usage(format!("--server {raw:?} is not a URL ({e}); for example http://127.0.0.1:8080"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(CliError::usage(format!("--server {raw:?} is not an http:// or https:// address")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::usage(format!("--server {raw:?} has a query or fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A client of one server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    attempts: u32,
}

impl Client {
    /// A client of `server` (normalized) sending `token`, trying idempotent requests up to
    /// `attempts` times.
    pub(crate) fn new(server: String, token: Option<String>, attempts: u32) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("backup-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client { http, server, token, attempts })
    }

    /// The server's address.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// How many times an idempotent request is tried.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A request to `path` (starting with `/`), with the token if there is one.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// The token, or an error that says how to get one.
    pub(crate) fn require_token(&self) -> Result<()> {
        match self.token {
            Some(_) => Ok(()),
            None => Err(CliError::usage(format!(
                "not logged in to {}: run `backup-cli login --username USER`, or set BACKUP_TOKEN",
                self.server
            ))),
        }
    }

    /// Sends a request once; an error status becomes [`CliError::Refused`] with the
    /// server's reason.
    pub(crate) async fn send_once(&self, builder: RequestBuilder) -> Result<Response> {
        let response = builder.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    /// Sends an idempotent request, again after a growing pause while the network fails or
    /// the server says it is busy (never for uploads, deletions or logins: a lost answer
    /// does not mean the request was not carried out).
    pub(crate) async fn send_idempotent(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let response = self.send_idempotent_raw(make).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    /// As [`Client::send_idempotent`], but any final answer is returned, error statuses too
    /// (the health route explains a failed check in its body).
    pub(crate) async fn send_idempotent_raw(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(300))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let attempt = || async {
            let response = make().send().await?;
            if matches!(response.status().as_u16(), 429 | 502 | 503 | 504) {
                return Err(refusal(response).await);
            }
            Ok(response)
        };
        attempt
            .retry(backoff)
            .when(CliError::is_transient)
            .notify(|e, pause| eprintln!("note: {e}; trying again in {pause:.1?}"))
            .await
    }

    /// `GET path` as JSON, retried.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.send_idempotent(|| self.request(Method::GET, path)).await?;
        read_json(response).await
    }

    /// A request with an optional JSON body, sent once, its JSON answer.
    pub(crate) async fn call_json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut builder = self.request(method, path);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        read_json(self.send_once(builder).await?).await
    }
}

/// A successful answer's JSON.
pub(crate) async fn read_json(response: Response) -> Result<Value> {
    let bytes = response.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CliError::network(format!("the server's answer is not JSON ({e}); is --server the backup server?"))
    })
}

/// An error answer as a refusal with the server's reason: backup-repository's envelope
/// carries it in `error` (handlers) or `message` (the token check).
pub(crate) async fn refusal(response: Response) -> CliError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let reason = ["error", "message"]
                .iter()
                .find_map(|k| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned))?;
            // The content rule's refusal says what is wrong in `data.reason`.
            match v.pointer("/data/reason").and_then(Value::as_str) {
                Some(detail) => Some(format!("{reason} ({detail})")),
                None => Some(reason),
            }
        })
        .unwrap_or_else(|| {
            let text = text.trim();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("no reason given").to_owned()
            } else {
                text.chars().take(300).collect()
            }
        });
    CliError::Refused { status: status.as_u16(), message }
}

/// Percent-encodes one path segment (a collection id or version from the command line).
pub(crate) fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>().replace('+', "%20")
}
