//! [`Client`]: requests, answers read into errors, and the calls that are one request each
//! (login, logout, listings, delete, restore, health, retention, verify).

use std::fmt;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::error::{Error, Result, is_transient_status};
use crate::model::{Health, HealthCheck, LoginRequest, Session, Verification, Version};
use crate::retry::RetryPolicy;

/// A client of one backup server: cheap to clone (clones share the connection pool).
///
/// Build one with [`Client::builder`]. Requests that change nothing (listings, a download's
/// start, health) are tried again as [`ClientBuilder::with_attempts`](crate::ClientBuilder::with_attempts) says; the others are
/// sent once.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("retry", &self.retry)
            .finish()
    }
}

impl Client {
    pub(crate) fn from_parts(http: reqwest::Client, server: String, token: Option<String>, retry: RetryPolicy) -> Self {
        Client { http, server, token, retry }
    }

    /// The server's address, normalized (the [`TokenStore`](crate::TokenStore)'s key).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The token it sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// How many times an idempotent request is tried in all.
    pub fn attempts(&self) -> u32 {
        self.retry.attempts
    }

    /// The same client (same server, settings and connections) sending `token` instead.
    pub fn with_token(&self, token: Option<String>) -> Client {
        Client { token, ..self.clone() }
    }

    /// A request to `path` (starting with `/`), with the token if there is one.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request once; an error status becomes [`Error::Refused`].
    pub(crate) async fn send_once(&self, builder: RequestBuilder) -> Result<Response> {
        let response = builder.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    /// Sends an idempotent request by the retry policy; an error status becomes
    /// [`Error::Refused`].
    pub(crate) async fn send_idempotent(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let response = self.send_idempotent_raw(make).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(response).await)
    }

    /// As [`Client::send_idempotent`], but any final answer is returned, error statuses too
    /// (the health route explains a failed check in its body).
    async fn send_idempotent_raw(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        self.retry
            .run(|| async {
                let response = make().send().await?;
                if is_transient_status(response.status().as_u16()) {
                    return Err(refusal(response).await);
                }
                Ok(response)
            })
            .await
    }

    /// `GET path` as JSON, by the retry policy.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.send_idempotent(|| self.request(Method::GET, path)).await?;
        self.read_json(response).await
    }

    /// A request with an optional JSON body, sent once; its JSON answer.
    async fn call_json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut builder = self.request(method, path);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = self.send_once(builder).await?;
        self.read_json(response).await
    }

    /// A successful answer's JSON.
    pub(crate) async fn read_json(&self, response: Response) -> Result<Value> {
        let bytes = response.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::protocol(format!("the server's answer is not JSON ({e}); is {} the backup server?", self.server))
        })
    }

    /// Logs in (sent once: each login is a session of its own).
    ///
    /// # Errors
    /// [`Error::Refused`] for a wrong password, an unknown user, a login from an address the
    /// user may not log in from, a scope the user does not have; [`Error::Network`];
    /// [`Error::Protocol`] when the answer has no token.
    pub async fn login(&self, request: &LoginRequest) -> Result<Session> {
        let answer = self.call_json(Method::POST, "/api/stable/auth/login", Some(&request.body())).await?;
        let data = answer.get("data").cloned().unwrap_or(Value::Null);
        let Some(token) = data.get("token").and_then(Value::as_str) else {
            return Err(Error::protocol(format!("the server's login answer has no token: {answer}")));
        };
        let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(Session {
            token: token.to_owned(),
            username: request.username().to_owned(),
            session_id: text("sessionId"),
            expire: text("expire"),
        })
    }

    /// Revokes this client's token on the server (sent once).
    ///
    /// # Errors
    /// [`Error::Refused`] (401 when the token had expired or was revoked already);
    /// [`Error::Network`].
    pub async fn logout(&self) -> Result<()> {
        self.call_json(Method::DELETE, "/api/stable/auth/logout", None).await.map(|_| ())
    }

    /// The collections the caller may see, as the server describes them (`id`,
    /// `maxBackupsCount`, `strategyName`, …).
    ///
    /// # Errors
    /// [`Error::Refused`], [`Error::Network`] (after the retries), [`Error::Protocol`].
    pub async fn collections(&self) -> Result<Vec<Value>> {
        let answer = self.get_json("/api/stable/repository/collection").await?;
        Ok(answer.pointer("/data/collections").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// A page of the audit log (`GET /api/stable/audit`): the events after `after` (of
    /// `collection`, if given), at most `limit` (1 to 1000), and the `after` of the next page
    /// (`None` at the end).
    ///
    /// # Errors
    /// [`Error::Refused`] (403 for a caller who manages no collection), [`Error::Network`]
    /// (after the retries), [`Error::Protocol`].
    pub async fn audit(
        &self,
        collection: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<u64>)> {
        let mut path = format!("/api/stable/audit?limit={limit}");
        if let Some(c) = collection {
            path.push_str(&format!("&collection={}", segment(c)));
        }
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let answer = self.get_json(&path).await?;
        let events = answer
            .pointer("/data/events")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| Error::Protocol { message: format!("the audit answer has no events: {answer}") })?;
        Ok((events, answer.pointer("/data/next").and_then(Value::as_u64)))
    }

    /// Every committed version of `collection`, by number.
    ///
    /// # Errors
    /// [`Error::Refused`] (404 for an unknown collection, 403 without the right to list),
    /// [`Error::Network`] (after the retries), [`Error::Protocol`].
    pub async fn versions(&self, collection: &str) -> Result<Vec<Version>> {
        let answer = self.get_json(&format!("{}/version", collection_path(collection))).await?;
        versions_in(&answer)
    }

    /// The version the caller uploaded into `collection` with this idempotency key, if any
    /// (`GET …/version?idempotencyKey=KEY`). Only a version that carries the key in its
    /// metadata is taken: a server that ignores the query (backup-repository lists every
    /// version) is not mistaken for an answer.
    ///
    /// # Errors
    /// As [`Client::versions`].
    pub async fn version_by_idempotency_key(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        let path = format!(
            "{}/version?idempotencyKey={}",
            collection_path(collection),
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
        );
        let answer = self.get_json(&path).await?;
        Ok(versions_in(&answer)?
            .into_iter()
            .find(|v| v.metadata.get(backup_core::IDEMPOTENCY_KEY).is_some_and(|k| k == key)))
    }

    /// Deletes a version (restorable within the server's trash retention); sent once, as a
    /// lost answer may hide a deletion that happened.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a selector that is not `latest`, `N` or `vN`;
    /// [`Error::Refused`], [`Error::Network`], [`Error::Protocol`].
    pub async fn delete_version(&self, collection: &str, selector: impl fmt::Display) -> Result<Version> {
        let path = version_path(collection, &selector.to_string())?;
        let answer = self.call_json(Method::DELETE, &path, None).await?;
        version_in(&answer)
    }

    /// Restores a deleted version; sent once.
    ///
    /// # Errors
    /// As [`Client::delete_version`].
    pub async fn restore_version(&self, collection: &str, selector: impl fmt::Display) -> Result<Version> {
        let path = version_path(collection, &selector.to_string())?;
        let answer = self.call_json(Method::POST, &format!("{path}/restore"), None).await?;
        version_in(&answer)
    }

    /// A collection's health checks (backup window, limits, integrity). The route takes no
    /// token: the collection's health secret, if it has one, is `code`. A failed check is
    /// not an error: see [`Health::is_healthy`].
    ///
    /// # Errors
    /// [`Error::Refused`] when the answer has no checks (an unknown collection, a wrong
    /// code); [`Error::Network`] (after the retries); [`Error::Protocol`].
    pub async fn health(&self, collection: &str, code: Option<&str>) -> Result<Health> {
        let mut path = format!("{}/health", collection_path(collection));
        if let Some(code) = code {
            path = format!("{path}?code={}", segment(code));
        }
        let anonymous = self.with_token(None);
        let response = anonymous.send_idempotent_raw(|| anonymous.request(Method::GET, &path)).await?;
        let status = response.status().as_u16();
        let body = self.read_json(response).await?;
        let Some(checks) = body.pointer("/data/health").and_then(Value::as_array) else {
            let message = body.get("error").and_then(Value::as_str).unwrap_or("no checks in the answer").to_owned();
            return Err(Error::Refused { status, message });
        };
        Ok(Health { status, checks: checks.iter().cloned().map(HealthCheck::from_json).collect() })
    }

    /// What the next rotation keeps and evicts, with the reasons, as the server describes it
    /// (`data` of `GET …/retention`).
    ///
    /// # Errors
    /// [`Error::Refused`], [`Error::Network`] (after the retries), [`Error::Protocol`].
    pub async fn retention(&self, collection: &str) -> Result<Value> {
        let answer = self.get_json(&format!("{}/retention", collection_path(collection))).await?;
        Ok(answer.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Has the server read every version of `collection` back and check its digest (sent
    /// once: it is costly, and the server runs one at a time). A damaged version is not an
    /// error: see [`Verification::ok`].
    ///
    /// # Errors
    /// [`Error::Refused`] (429 while another verification runs), [`Error::Network`],
    /// [`Error::Protocol`].
    pub async fn verify(&self, collection: &str) -> Result<Vec<Verification>> {
        let answer = self.call_json(Method::POST, &format!("{}/verify", collection_path(collection)), None).await?;
        let versions = answer.pointer("/data/versions").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(versions.into_iter().map(Verification::from_json).collect())
    }
}

/// `data.version` of an answer.
pub(crate) fn version_in(answer: &Value) -> Result<Version> {
    match answer.pointer("/data/version") {
        Some(v) => Version::from_json(v.clone()),
        None => Err(Error::protocol(format!("the server's answer has no version: {answer}"))),
    }
}

/// `data.versions` of an answer.
fn versions_in(answer: &Value) -> Result<Vec<Version>> {
    let list = answer.pointer("/data/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    list.into_iter().map(Version::from_json).collect()
}

/// An error answer as a refusal with the server's reason: backup-repository's envelope
/// carries it in `error` (handlers) or `message` (the token check).
pub(crate) async fn refusal(response: Response) -> Error {
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
    Error::Refused { status: status.as_u16(), message }
}

/// `/api/stable/repository/collection/ID`.
pub(crate) fn collection_path(collection: &str) -> String {
    format!("/api/stable/repository/collection/{}", segment(collection))
}

/// `…/collection/ID/version/SELECTOR`, the selector checked.
fn version_path(collection: &str, selector: &str) -> Result<String> {
    check_selector(selector)?;
    Ok(format!("{}/version/{}", collection_path(collection), segment(selector)))
}

/// Checks `latest`, `N` or `vN` before asking the server.
pub(crate) fn check_selector(raw: &str) -> Result<()> {
    let number = raw.strip_prefix('v').unwrap_or(raw);
    if raw == "latest" || (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{raw:?} is not a version: give latest, N or vN")))
    }
}

/// Percent-encodes one path segment (a collection id or a version).
pub(crate) fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>().replace('+', "%20")
}
