//! The commands that are one request each: login, logout, listings, delete, restore, health,
//! retention, verify.

use std::io::IsTerminal;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{CollectionArg, Health, Login, VersionArg};
use crate::client::{Client, read_json, segment};
use crate::download::check_selector;
use crate::error::{CliError, Result};
use crate::output::{Output, cell, size, table};
use crate::token_store::{StoredToken, TokenStore};

fn collection_path(collection: &str) -> String {
    format!("/api/stable/repository/collection/{}", segment(collection))
}

/// A `COLLECTION=ROLE[,ROLE…]` scope as backup-repository's `operationsScope`.
fn scope(raw: &[String]) -> Result<Option<Value>> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut elements = Vec::new();
    for s in raw {
        let Some((name, roles)) = s.split_once('=') else {
            return Err(CliError::usage(format!("--scope {s:?} is not COLLECTION=ROLE[,ROLE…]")));
        };
        let roles: Vec<&str> = roles.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
        if name.trim().is_empty() || roles.is_empty() {
            return Err(CliError::usage(format!("--scope {s:?} names no collection or no role")));
        }
        elements.push(json!({ "type": "collection", "name": name.trim(), "roles": roles }));
    }
    Ok(Some(json!({ "elements": elements })))
}

fn password(args: &Login) -> Result<String> {
    if args.password_stdin {
        return crate::read_stdin_line("password");
    }
    if let Ok(p) = std::env::var("BACKUP_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {}: ", args.username))
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")));
    }
    Err(CliError::usage("no password: give --password-stdin, set BACKUP_PASSWORD, or run on a terminal"))
}

/// `login`: stores the token for this server.
pub(crate) async fn login(client: &Client, out: Output, args: Login) -> Result<()> {
    // Flags are checked before a password is asked for.
    let scope = scope(&args.scopes)?;
    let password = password(&args)?;
    let mut body = json!({ "username": args.username, "password": password });
    if let Some(scope) = scope {
        body["operationsScope"] = scope;
    }
    // Never retried: each login is a session.
    let answer = client.call_json(Method::POST, "/api/stable/auth/login", Some(&body)).await?;
    let data = answer.get("data").cloned().unwrap_or(Value::Null);
    let Some(token) = data.get("token").and_then(Value::as_str) else {
        return Err(CliError::network(format!("the server's login answer has no token: {answer}")));
    };
    let stored = StoredToken {
        token: token.to_owned(),
        username: args.username.clone(),
        session_id: cell(&data, "sessionId"),
        expire: cell(&data, "expire"),
    };
    TokenStore::open()?.put(client.server(), stored.clone())?;
    out.confirm(
        &json!({ "server": client.server(), "username": stored.username, "sessionId": stored.session_id, "expire": stored.expire }),
        &format!("logged in to {} as {} until {}", client.server(), stored.username, stored.expire),
    );
    Ok(())
}

/// `logout`: revokes the token and forgets it; a token the server no longer accepts is
/// forgotten all the same.
pub(crate) async fn logout(client: &Client, out: Output) -> Result<()> {
    client.require_token()?;
    let revoked = match client.call_json(Method::DELETE, "/api/stable/auth/logout", None).await {
        Ok(_) => true,
        Err(CliError::Refused { status: 401, .. }) => false,
        Err(e) => return Err(e),
    };
    let forgotten = TokenStore::open()?.remove(client.server())?;
    out.confirm(
        &json!({ "server": client.server(), "revoked": revoked, "forgotten": forgotten }),
        &format!(
            "{} {}",
            if revoked { "logged out of" } else { "the token had already expired or been revoked at" },
            client.server()
        ),
    );
    Ok(())
}

/// `collections`.
pub(crate) async fn collections(client: &Client, out: Output) -> Result<()> {
    client.require_token()?;
    let answer = client.get_json("/api/stable/repository/collection").await?;
    let list = answer.pointer("/data/collections").and_then(Value::as_array).cloned().unwrap_or_default();
    out.result(&json!({ "collections": list }), || {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|c| {
                vec![
                    cell(c, "id"),
                    cell(c, "maxBackupsCount"),
                    cell(c, "maxOneVersionSize"),
                    cell(c, "maxCollectionSize"),
                    cell(c, "strategyName"),
                    cell(c, "description"),
                ]
            })
            .collect();
        table(&["ID", "MAX VERSIONS", "MAX VERSION", "MAX TOTAL", "RETENTION", "DESCRIPTION"], &rows);
    });
    Ok(())
}

fn version_row(v: &Value) -> Vec<String> {
    vec![
        cell(v, "versionNumber"),
        cell(v, "filename"),
        v.get("filesize").and_then(Value::as_u64).map_or("-".to_owned(), size),
        cell(v, "CreatedAt"),
        cell(v, "user"),
        if v.get("held") == Some(&Value::Bool(true)) { "held".to_owned() } else { String::new() },
    ]
}

const VERSION_HEADERS: [&str; 6] = ["VERSION", "FILE", "SIZE", "RECEIVED", "USER", "HOLD"];

/// `list`.
pub(crate) async fn list(client: &Client, out: Output, args: CollectionArg) -> Result<()> {
    client.require_token()?;
    let answer = client.get_json(&format!("{}/version", collection_path(&args.collection))).await?;
    let versions = answer.pointer("/data/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    out.result(&json!({ "versions": versions }), || {
        let rows: Vec<Vec<String>> = versions.iter().map(version_row).collect();
        table(&VERSION_HEADERS, &rows);
    });
    Ok(())
}

/// `delete` and `restore`: one request each, never repeated (a lost answer may hide a
/// deletion that happened).
pub(crate) async fn change_version(client: &Client, out: Output, args: VersionArg, restore: bool) -> Result<()> {
    client.require_token()?;
    check_selector(&args.version)?;
    let base = format!("{}/version/{}", collection_path(&args.collection), segment(&args.version));
    let answer = if restore {
        client.call_json(Method::POST, &format!("{base}/restore"), None).await?
    } else {
        client.call_json(Method::DELETE, &base, None).await?
    };
    let version = answer.pointer("/data/version").cloned().unwrap_or(Value::Null);
    out.confirm(
        &json!({ "version": version }),
        &format!(
            "{} version {} of {}",
            if restore { "restored" } else { "deleted" },
            cell(&version, "versionNumber"),
            args.collection
        ),
    );
    Ok(())
}

/// `health`: the checks; exits 1 when one fails.
pub(crate) async fn health(client: &Client, out: Output, args: Health) -> Result<()> {
    let mut path = format!("{}/health", collection_path(&args.collection));
    if let Some(code) = &args.code {
        path = format!("{path}?code={}", segment(code));
    }
    // The route takes no token: the collection's health secret, if any, is the key.
    let anonymous = Client::new(client.server().to_owned(), None, client.attempts())?;
    let response = anonymous.send_idempotent_raw(|| anonymous.request(Method::GET, &path)).await?;
    let status = response.status();
    let body: Value = read_json(response).await?;
    let Some(checks) = body.pointer("/data/health").and_then(Value::as_array).cloned() else {
        let message = body.get("error").and_then(Value::as_str).unwrap_or("no checks in the answer").to_owned();
        return Err(CliError::Refused { status: status.as_u16(), message });
    };
    let healthy = status.is_success() && checks.iter().all(|c| c.get("status") == Some(&Value::Bool(true)));
    out.result(&json!({ "collection": args.collection, "healthy": healthy, "checks": checks }), || {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                let ok = c.get("status") == Some(&Value::Bool(true));
                vec![cell(c, "name"), (if ok { "ok" } else { "FAILED" }).to_owned(), cell(c, "message")]
            })
            .collect();
        table(&["CHECK", "STATUS", "MESSAGE"], &rows);
    });
    if healthy {
        Ok(())
    } else {
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c.get("status") != Some(&Value::Bool(true)))
            .map(|c| format!("{}: {}", cell(c, "name"), cell(c, "message")))
            .collect();
        Err(CliError::Refused { status: status.as_u16(), message: format!("unhealthy: {}", failed.join("; ")) })
    }
}

/// `retention`: the preview of the next rotation.
pub(crate) async fn retention(client: &Client, out: Output, args: CollectionArg) -> Result<()> {
    client.require_token()?;
    let answer = client.get_json(&format!("{}/retention", collection_path(&args.collection))).await?;
    let data = answer.get("data").cloned().unwrap_or(Value::Null);
    out.result(&data, || {
        let versions = data.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|v| {
                let keep = v.get("keep") == Some(&Value::Bool(true));
                let reasons: Vec<String> = v
                    .get("reasons")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                vec![cell(v, "number"), (if keep { "keep" } else { "evict" }).to_owned(), reasons.join(", ")]
            })
            .collect();
        println!("retention: {}", data.pointer("/retention/strategy").and_then(Value::as_str).unwrap_or("-"));
        table(&["VERSION", "DECISION", "REASONS"], &rows);
    });
    Ok(())
}

/// `verify`: the server reads every version back. Exits 4 when one is damaged.
pub(crate) async fn verify(client: &Client, out: Output, args: CollectionArg) -> Result<()> {
    client.require_token()?;
    // The server reads the whole collection before it answers: minutes for a large one.
    let waiting = out.waiting(&format!("the server is reading {} back", args.collection));
    let answer = client.call_json(Method::POST, &format!("{}/verify", collection_path(&args.collection)), None).await;
    waiting.finish_and_clear();
    let answer = answer?;
    let versions = answer.pointer("/data/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    out.result(&json!({ "versions": versions }), || {
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|v| {
                let ok = v.get("ok") == Some(&Value::Bool(true));
                vec![cell(v, "number"), (if ok { "ok" } else { "DAMAGED" }).to_owned(), cell(v, "error")]
            })
            .collect();
        table(&["VERSION", "STATUS", "ERROR"], &rows);
    });
    let damaged: Vec<String> =
        versions.iter().filter(|v| v.get("ok") != Some(&Value::Bool(true))).map(|v| cell(v, "number")).collect();
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(CliError::integrity(format!("damaged and quarantined on the server: version {}", damaged.join(", "))))
    }
}
