//! What the API answers, as typed records that keep the server's JSON as it came (so a
//! program that shows it, like `backup-cli --json`, passes it on unchanged).

use std::fmt;
use std::str::FromStr;

use backup_core::{Digest, Metadata};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A committed version, as the server lists it (backup-repository's `UploadedVersion` plus
/// the digest, metadata and hold of this workspace's server).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Version {
    /// The version's unique id (a later upload never has the same one).
    pub id: String,
    /// Its number in the collection (`versionNumber`).
    pub number: u64,
    /// The file name the collection's template gave it.
    pub filename: String,
    /// Its size in bytes (`filesize`).
    pub size: u64,
    /// The user who uploaded it (empty when the server does not say).
    pub user: String,
    /// Its digest, when the server gives one (backup-repository does not).
    pub digest: Option<Digest>,
    /// When the server received it (`CreatedAt`; never a client's clock).
    pub created_at: Option<DateTime<Utc>>,
    /// Its metadata (`X-Backup-Meta-*` at upload; names in lower case).
    pub metadata: Metadata,
    /// Whether it is held (kept by retention until released).
    pub held: bool,
    json: Value,
}

impl Version {
    /// Reads one from the server's JSON.
    ///
    /// # Errors
    /// [`Error::Protocol`] when `versionNumber` or `filesize` is missing, or a field present
    /// has the wrong form.
    pub fn from_json(json: Value) -> Result<Version> {
        let bad = |field: &str| Error::protocol(format!("the server's version has no valid {field}: {json}"));
        let text = |field: &str| json.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let number = json.get("versionNumber").and_then(Value::as_u64).ok_or_else(|| bad("versionNumber"))?;
        let size = json.get("filesize").and_then(Value::as_u64).ok_or_else(|| bad("filesize"))?;
        let digest = match json.get("digest") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(Digest::from_str(s).map_err(|_| bad("digest"))?),
            Some(_) => return Err(bad("digest")),
        };
        let created_at = match json.get("CreatedAt") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(DateTime::parse_from_rfc3339(s).map_err(|_| bad("CreatedAt"))?.with_timezone(&Utc))
            }
            Some(_) => return Err(bad("CreatedAt")),
        };
        let metadata = match json.get("metadata") {
            None | Some(Value::Null) => Metadata::new(),
            Some(m) => serde_json::from_value(m.clone()).map_err(|_| bad("metadata"))?,
        };
        Ok(Version {
            id: text("id"),
            number,
            filename: text("filename"),
            size,
            user: text("user"),
            digest,
            created_at,
            metadata,
            held: json.get("held") == Some(&Value::Bool(true)),
            json,
        })
    }

    /// The server's JSON of this version, as it came.
    pub fn json(&self) -> &Value {
        &self.json
    }
}

/// A logged-in session: what [`Client::login`](crate::Client::login) returns and the
/// [`TokenStore`](crate::TokenStore) keeps per server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// Who logged in (`user`, or `user$accessKey`).
    pub username: String,
    /// The session's id (the server lists and revokes sessions by it).
    #[serde(default)]
    pub session_id: String,
    /// When the token expires, as the server wrote it.
    #[serde(default)]
    pub expire: String,
}

impl Session {
    /// A session from its parts (a token obtained elsewhere, say).
    pub fn new(token: impl Into<String>, username: impl Into<String>) -> Self {
        Session { token: token.into(), username: username.into(), session_id: String::new(), expire: String::new() }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &"…")
            .field("username", &self.username)
            .field("session_id", &self.session_id)
            .field("expire", &self.expire)
            .finish()
    }
}

/// A login: a user (or `user$accessKey`), its password, and optionally a narrower scope.
///
/// ```
/// let login = backup_client::LoginRequest::new("ci$uploader", "secret").scope("db", ["backupUploader"]);
/// # let _ = login;
/// ```
#[derive(Clone)]
pub struct LoginRequest {
    username: String,
    password: String,
    scopes: Vec<(String, Vec<String>)>,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"…")
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl LoginRequest {
    /// A login as `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        LoginRequest { username: username.into(), password: password.into(), scopes: Vec::new() }
    }

    /// Narrows the token to `roles` on `collection` (backup-repository's `operationsScope`);
    /// may be given for several collections.
    pub fn scope(mut self, collection: impl Into<String>, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes.push((collection.into(), roles.into_iter().map(Into::into).collect()));
        self
    }

    /// Who logs in.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = serde_json::json!({ "username": self.username, "password": self.password });
        if !self.scopes.is_empty() {
            let elements: Vec<Value> = self
                .scopes
                .iter()
                .map(|(name, roles)| serde_json::json!({ "type": "collection", "name": name, "roles": roles }))
                .collect();
            body["operationsScope"] = serde_json::json!({ "elements": elements });
        }
        body
    }
}

/// A collection's health: the checks the server ran and the status it answered with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Health {
    /// The HTTP status (backup-repository answers 500 when a check fails).
    pub status: u16,
    /// Each check.
    pub checks: Vec<HealthCheck>,
}

impl Health {
    /// Whether the status is a success and every check passed.
    pub fn is_healthy(&self) -> bool {
        (200..300).contains(&self.status) && self.checks.iter().all(|c| c.ok)
    }
}

/// One check of a [`Health`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HealthCheck {
    /// The validator's name (`BackupWindowValidator`, …).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// `OK`, or why it failed.
    pub message: String,
    json: Value,
}

impl HealthCheck {
    pub(crate) fn from_json(json: Value) -> Self {
        let text = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        HealthCheck {
            name: text("name"),
            ok: json.get("status") == Some(&Value::Bool(true)),
            message: text("message"),
            json,
        }
    }

    /// The server's JSON of this check, as it came.
    pub fn json(&self) -> &Value {
        &self.json
    }
}

/// What the server found when it read one version back ([`Client::verify`](crate::Client::verify)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verification {
    /// The version's number.
    pub number: u64,
    /// Whether its bytes match its digest.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    json: Value,
}

impl Verification {
    pub(crate) fn from_json(json: Value) -> Self {
        Verification {
            number: json.get("number").and_then(Value::as_u64).unwrap_or_default(),
            ok: json.get("ok") == Some(&Value::Bool(true)),
            error: json.get("error").and_then(Value::as_str).map(str::to_owned),
            json,
        }
    }

    /// The server's JSON of this result, as it came.
    pub fn json(&self) -> &Value {
        &self.json
    }
}
