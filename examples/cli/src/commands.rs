//! The commands that are one request each: login, logout, listings, delete, restore, health,
//! retention, verify.

use std::io::IsTerminal;

use backup_client::{Client, LoginRequest};
use serde_json::{Value, json};

use crate::cli::{CollectionArg, Health, Login, VersionArg};
use crate::error::{CliError, Result};
use crate::output::{Output, cell, size, table};
use crate::{require_token, token_store};

/// `COLLECTION=ROLE[,ROLE…]` scopes, checked.
fn scopes(raw: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let mut scopes = Vec::new();
    for s in raw {
        let Some((name, roles)) = s.split_once('=') else {
            return Err(CliError::usage(format!("--scope {s:?} is not COLLECTION=ROLE[,ROLE…]")));
        };
        let roles: Vec<&str> = roles.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
        if name.trim().is_empty() || roles.is_empty() {
            return Err(CliError::usage(format!("--scope {s:?} names no collection or no role")));
        }
        scopes.push((name.trim().to_owned(), roles.into_iter().map(str::to_owned).collect()));
    }
    Ok(scopes)
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
    let scopes = scopes(&args.scopes)?;
    let mut request = LoginRequest::new(&args.username, password(&args)?);
    for (collection, roles) in scopes {
        request = request.scope(collection, roles);
    }
    // Never retried: each login is a session.
    let session = client.login(&request).await?;
    token_store()?.put(client.server(), &session)?;
    out.confirm(
        &json!({ "server": client.server(), "username": session.username, "sessionId": session.session_id, "expire": session.expire }),
        &format!("logged in to {} as {} until {}", client.server(), session.username, session.expire),
    );
    Ok(())
}

/// `logout`: revokes the token and forgets it; a token the server no longer accepts is
/// forgotten all the same.
pub(crate) async fn logout(client: &Client, out: Output) -> Result<()> {
    require_token(client)?;
    let revoked = match client.logout().await.map_err(CliError::from) {
        Ok(()) => true,
        Err(CliError::Refused { status: 401, .. }) => false,
        Err(e) => return Err(e),
    };
    let forgotten = token_store()?.remove(client.server())?;
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
    require_token(client)?;
    let list = client.collections().await?;
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
        match (v.get("lockMode").and_then(Value::as_str), v.get("lockedUntil").and_then(Value::as_str)) {
            (Some(mode), Some(until)) => format!("{mode} until {until}"),
            _ => String::new(),
        },
    ]
}

const VERSION_HEADERS: [&str; 7] = ["VERSION", "FILE", "SIZE", "RECEIVED", "USER", "HOLD", "LOCK"];

/// `list`.
pub(crate) async fn list(client: &Client, out: Output, args: CollectionArg) -> Result<()> {
    require_token(client)?;
    let versions: Vec<Value> = client.versions(&args.collection).await?.iter().map(|v| v.json().clone()).collect();
    out.result(&json!({ "versions": versions }), || {
        let rows: Vec<Vec<String>> = versions.iter().map(version_row).collect();
        table(&VERSION_HEADERS, &rows);
    });
    Ok(())
}

const AUDIT_HEADERS: [&str; 7] = ["SEQ", "AT", "ACTOR", "ACTION", "COLLECTION", "VERSION", "DETAIL"];

fn audit_row(e: &Value) -> Vec<String> {
    ["seq", "at", "actor", "action", "collection", "version", "detail"].iter().map(|k| cell(e, k)).collect()
}

/// `audit`: the log, a page at a time to its end; with `--follow`, then every new event as it
/// comes (a row each, or a JSON line each with `--json`), until interrupted.
pub(crate) async fn audit(client: &Client, out: Output, args: crate::cli::Audit) -> Result<()> {
    require_token(client)?;
    let collection = args.collection.as_deref();
    let mut after = args.after;
    let mut all = Vec::new();
    loop {
        let (events, next) = client.audit(collection, after, 1000).await?;
        if let Some(last) = events.last().and_then(|e| e.get("seq")).and_then(Value::as_u64) {
            after = Some(last);
        }
        if args.follow {
            print_events(&out, &events);
        } else {
            all.extend(events);
        }
        match next {
            // The server scans a bounded part of the log per call: go on from where it stopped.
            Some(n) => after = Some(n.max(after.unwrap_or(0))),
            None if args.follow => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
            None => break,
        }
    }
    out.result(&json!({ "events": all }), || table(&AUDIT_HEADERS, &all.iter().map(audit_row).collect::<Vec<_>>()));
    Ok(())
}

/// Events as `--follow` prints them: a JSON line or a row each, flushed at once.
fn print_events(out: &Output, events: &[Value]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for e in events {
        let line = if out.json { e.to_string() } else { audit_row(e).join("  ") };
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
}

/// `delete` and `restore`: one request each, never repeated (a lost answer may hide a
/// deletion that happened).
pub(crate) async fn change_version(client: &Client, out: Output, args: VersionArg, restore: bool) -> Result<()> {
    require_token(client)?;
    backup_client::check_version_selector(&args.version)?;
    let version = if restore {
        client.restore_version(&args.collection, &args.version).await?
    } else {
        client.delete_version(&args.collection, &args.version).await?
    };
    out.confirm(
        &json!({ "version": version.json() }),
        &format!("{} version {} of {}", if restore { "restored" } else { "deleted" }, version.number, args.collection),
    );
    Ok(())
}

/// `health`: the checks; exits 1 when one fails.
pub(crate) async fn health(client: &Client, out: Output, args: Health) -> Result<()> {
    // The route takes no token: the collection's health secret, if any, is the key.
    let health = client.health(&args.collection, args.code.as_deref()).await?;
    let checks: Vec<Value> = health.checks.iter().map(|c| c.json().clone()).collect();
    let healthy = health.is_healthy();
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
        Err(CliError::Refused { status: health.status, message: format!("unhealthy: {}", failed.join("; ")) })
    }
}

/// `retention`: the preview of the next rotation.
pub(crate) async fn retention(client: &Client, out: Output, args: CollectionArg) -> Result<()> {
    require_token(client)?;
    let data = client.retention(&args.collection).await?;
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
    require_token(client)?;
    // The server reads the whole collection before it answers: minutes for a large one.
    let waiting = out.waiting(&format!("the server is reading {} back", args.collection));
    let checked = client.verify(&args.collection).await;
    waiting.finish_and_clear();
    let checked = checked?;
    let versions: Vec<Value> = checked.iter().map(|v| v.json().clone()).collect();
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
    let damaged: Vec<String> = checked.iter().filter(|v| !v.ok).map(|v| cell(v.json(), "number")).collect();
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(CliError::integrity(format!("damaged and quarantined on the server: version {}", damaged.join(", "))))
    }
}
