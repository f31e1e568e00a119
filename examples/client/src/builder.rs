//! [`ClientBuilder`]: the server's address, the token, the attempts and the timeouts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// How long connecting may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may stay silent while an answer is read, by default (the server cuts
/// its own slow transfers well before).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// How many times an idempotent request is tried in all, by default.
pub const DEFAULT_ATTEMPTS: u32 = 4;

/// A server's address as [`Client::server`] and the [`TokenStore`](crate::TokenStore) key it:
/// `scheme://host[:port][/path]`, without a trailing slash.
///
/// ```
/// assert_eq!(backup_client::normalize_server_url(" http://127.0.0.1:8080/ ")?, "http://127.0.0.1:8080");
/// assert!(backup_client::normalize_server_url("ftp://example.org").is_err());
/// # Ok::<(), backup_client::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] (naming the address) for text that is not an `http://` or
/// `https://` URL with a host, or one with a query or fragment.
pub fn normalize_server_url(raw: &str) -> Result<String> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| Error::invalid(format!("{raw:?} is not a URL ({e}); for example http://127.0.0.1:8080")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::invalid(format!("{raw:?} is not an http:// or https:// address")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(format!("{raw:?} has a query or fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Builds a [`Client`]: `new()` or `from_env()`, `with_*` setters, `build()`.
///
/// ```
/// use std::time::Duration;
///
/// let client = backup_client::Client::builder()
///     .with_server("http://127.0.0.1:8080")
///     .with_token("eyJ…")
///     .with_attempts(6)
///     .with_connect_timeout(Duration::from_secs(3))
///     .with_retry_notifier(|error, pause| eprintln!("note: {error}; trying again in {pause:.1?}"))
///     .build()?;
/// assert_eq!(client.server(), "http://127.0.0.1:8080");
/// # Ok::<(), backup_client::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    server: Option<String>,
    token: Option<String>,
    attempts: u32,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: String,
    retry: RetryPolicy,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("attempts", &self.attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder::new()
    }
}

/// Where a [`Client`] starts (here, beside what it builds, so that the client's module does not
/// depend on its builder's).
impl Client {
    /// A builder: server, token, attempts, timeouts.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }
}

impl ClientBuilder {
    /// No server yet, no token, [`DEFAULT_ATTEMPTS`], [`DEFAULT_CONNECT_TIMEOUT`],
    /// [`DEFAULT_READ_TIMEOUT`], the user agent `backup-client/VERSION`.
    pub fn new() -> Self {
        ClientBuilder {
            server: None,
            token: None,
            attempts: DEFAULT_ATTEMPTS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            user_agent: concat!("backup-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy { attempts: DEFAULT_ATTEMPTS, notify: None },
        }
    }

    /// As [`ClientBuilder::new`], with the server from `BACKUP_SERVER` and the token from
    /// `BACKUP_TOKEN` when they are set and not empty.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut builder = ClientBuilder::new();
        builder.server = var("BACKUP_SERVER");
        builder.token = var("BACKUP_TOKEN");
        builder
    }

    /// The server's address, such as `http://127.0.0.1:8080` (checked by
    /// [`ClientBuilder::build`] with [`normalize_server_url`]).
    pub fn with_server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// The bearer token every request but [`Client::login`] and [`Client::health`] sends.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How many times an idempotent request (a listing, a download's start, a health check)
    /// is tried in all while the network fails or the server answers 429, 502, 503 or 504.
    /// Uploads, deletions, restores, verifications and logins are sent once whatever this
    /// says. At least 1.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// How long connecting may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server may stay silent while an answer (or a download) is read.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Called before each pause between two tries of an idempotent request, with the error
    /// and the pause (the library itself prints nothing).
    pub fn with_retry_notifier(mut self, notify: impl Fn(&Error, Duration) + Send + Sync + 'static) -> Self {
        self.retry.notify = Some(Arc::new(notify));
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a missing or malformed server address or zero attempts;
    /// [`Error::Local`] when the HTTP client cannot be set up (no TLS roots, say).
    pub fn build(self) -> Result<Client> {
        let raw = self.server.as_deref().ok_or_else(|| Error::invalid("no server address given"))?;
        let server = normalize_server_url(raw)?;
        if self.attempts == 0 {
            return Err(Error::invalid("attempts: at least 1 (the first try counts)"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .user_agent(self.user_agent)
            .build()
            .map_err(|e| Error::Local { message: format!("cannot set up the HTTP client: {e}"), source: None })?;
        let retry = RetryPolicy { attempts: self.attempts, ..self.retry };
        Ok(Client::from_parts(http, server, self.token, retry))
    }
}
