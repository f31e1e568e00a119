//! Retention (ours): what the next commit would keep and why, a policy simulated over any
//! versions, and holds and protection deadlines on versions.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_core::catalog::protocol::ProtectionChange;
use backup_core::rotation::{Mark, RotationDecision, VersionSummary};
use backup_core::{CollectionSpec, Error, Limits, RetentionSpec, Timestamp, VersionId};
use backup_policy::{Asker, COLLECTION, Permission, Subject, decide};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api::model;
use crate::api::versions::{collection_id, number};
use crate::http::caller::Caller;
use crate::http::json::{ApiError, ok};
use crate::state::AppState;
use crate::state::MAX_SIMULATIONS;

/// The most versions one simulation takes.
pub(crate) const MAX_SIMULATED_VERSIONS: usize = 100_000;

/// The most bytes a simulation request may have: 100,000 versions with room to spare.
const MAX_SIMULATION_BYTES: usize = 16 << 20;

/// `max_versions` of a simulated policy that names none: more than any request holds, so
/// only the policy decides.
const UNLIMITED_VERSIONS: u32 = 1_000_000;

fn decisions_json(decisions: &[RotationDecision]) -> Vec<Value> {
    decisions
        .iter()
        .map(|d| json!({ "number": d.number, "keep": d.mark == Mark::Keep, "reasons": d.reasons }))
        .collect()
}

fn retention_json(r: &RetentionSpec) -> Value {
    json!({ "strategy": r.strategy, "options": r.options, "minKeep": r.min_keep })
}

/// `GET /api/stable/repository/collection/{collectionId}/retention`: for every committed
/// version, whether the next commit keeps it, and why, computed by the function the commit
/// runs.
pub(crate) async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
) -> Result<Response, ApiError> {
    const DENIED: &str = "not authorized to list versions";
    let id = collection_id(&collection)?;
    let engine = &state.inner.engine;
    let c = engine.collection(&caller.actor, &id).await.map_err(|e| ApiError::from_core(&e, DENIED))?;
    let decisions = engine.retention_preview(&caller.actor, &id).await.map_err(|e| ApiError::from_core(&e, DENIED))?;
    Ok(ok(json!({
        "retention": retention_json(&c.spec.retention),
        "maxBackupsCount": c.spec.limits.max_versions,
        "versions": decisions_json(&decisions),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Simulation {
    policy: Map<String, Value>,
    #[serde(default)]
    now: Option<Timestamp>,
    versions: Vec<SimulatedVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SimulatedVersion {
    number: u64,
    created_at: Timestamp,
    #[serde(default)]
    protected: bool,
}

/// The collection spec a policy object describes: `strategy` (default `gfs`), `minKeep`,
/// `maxVersions` (default: no limit that matters), and every other field an option of the
/// strategy, as text.
fn policy_spec(policy: &Map<String, Value>) -> Result<CollectionSpec, ApiError> {
    let field = |name: &str, why: &str| ApiError::bad_request(format!("policy.{name}: {why}"));
    let count = |name: &str, v: &Value| -> Result<u32, ApiError> {
        v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| field(name, "a count (0 or more)"))
    };
    let mut strategy = "gfs".to_owned();
    let mut max_versions = UNLIMITED_VERSIONS;
    let mut min_keep = 0;
    let mut options = Vec::new();
    for (name, value) in policy {
        match name.as_str() {
            "strategy" => strategy = value.as_str().ok_or_else(|| field(name, "a strategy name"))?.to_owned(),
            "maxVersions" => max_versions = count(name, value)?.max(1),
            "minKeep" => min_keep = count(name, value)?,
            _ => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(field(name, "a number or a text (10d, 36h, Europe/Warsaw)")),
                };
                options.push((name.clone(), text));
            }
        }
    }
    let mut retention = RetentionSpec::named(strategy).with_min_keep(min_keep);
    for (k, v) in options {
        retention = retention.with_option(k, v);
    }
    let limits = Limits::new(max_versions, 1, u64::from(max_versions))
        .map_err(|e| ApiError::bad_request(format!("policy.maxVersions: {e}")))?;
    Ok(CollectionSpec::new("simulated-${version}", limits).with_retention(retention))
}

/// What a refused simulation's `Retry-After` says, in seconds.
const SIMULATION_RETRY_AFTER_SECS: u64 = 5;

/// Decisions per chunk of a streamed answer (about 64 KiB of JSON).
const DECISIONS_PER_CHUNK: usize = 512;

/// Whether the caller may simulate: it holds a role that reads some collection's versions
/// (`backupDownloader` or `collectionManager` on a collection, through its token's key and
/// scope, or such a global role, `systemAdmin` included). An upload-only access key, a user
/// without roles, a one-time upload token may not: a simulation is CPU and memory for
/// whoever plans retention, not for every account.
fn may_simulate(state: &AppState, caller: &Caller) -> bool {
    let set = state.inner.directory.snapshot();
    let key = caller.token.access_key().and_then(|k| caller.user.access_key(k));
    let asker = Asker { user: &caller.user, access_key: key, scope: Some(caller.token.scope()) };
    decide(&asker, None, Permission::Download).is_ok()
        || set.collections.iter().any(|(id, policy)| {
            let subject = Subject { kind: COLLECTION, name: id.as_str(), acl: &policy.acl };
            decide(&asker, Some(&subject), Permission::Download).is_ok()
        })
}

/// `POST /api/stable/retention/simulate`: a policy over the given versions at `now` (default:
/// the server's time), each decision with its reasons. At most 100,000 versions (413
/// beyond). Only for callers who may read some collection's versions ([`may_simulate`]; 403
/// otherwise); at most [`MAX_SIMULATIONS_PER_USER`] per user and [`MAX_SIMULATIONS`] on the
/// server at once, until their answers are read (429 with `Retry-After` beyond, before the
/// body is read). The answer streams as it is written.
pub(crate) async fn simulate(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    if !may_simulate(&state, &caller) {
        return Err(ApiError::forbidden(
            "not authorized to simulate retention: it takes a role that reads some collection's versions \
             (backupDownloader, collectionManager or systemAdmin)",
        ));
    }
    let busy = |mut e: ApiError| {
        e.retry_after = Some(SIMULATION_RETRY_AFTER_SECS);
        e
    };
    let mine = state.inner.simulations_per_user.acquire(&caller.user.name).map_err(|_| {
        busy(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "a retention simulation of yours is running; try again when its answer is read",
        ))
    })?;
    let Ok(running) = state.inner.simulations.clone().try_acquire_owned() else {
        return Err(busy(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_SIMULATIONS} retention simulations are running; try again in a moment"),
        )));
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a simulation takes at most {MAX_SIMULATED_VERSIONS} versions ({} MiB of JSON)",
                MAX_SIMULATION_BYTES >> 20
            ),
        )
    };
    let body =
        axum::body::to_bytes(Body::new(request.into_body()), MAX_SIMULATION_BYTES).await.map_err(|_| too_large())?;
    let now = Timestamp::from(state.inner.engine.clock().now());
    let strategies = state.inner.engine.strategies().clone();
    // Parsing and planning 100,000 versions is CPU work: off the request threads.
    let decisions = tokio::task::spawn_blocking(move || plan_simulation(body, now, &strategies))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the simulation failed"))??;
    // The slots are held until the answer's last byte is sent or the client goes (a client
    // that stops reading is cut by the stall timeout).
    let mut response = Body::from_stream(simulation_answer(decisions, (mine, running))).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    Ok(response)
}

/// Parses a simulation request (dropped once parsed) and runs its policy.
fn plan_simulation(
    body: Bytes,
    now: Timestamp,
    strategies: &backup_core::rotation::RotationStrategies,
) -> Result<Vec<RotationDecision>, ApiError> {
    let sim: Simulation =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid simulation: {e}")))?;
    drop(body);
    if sim.versions.len() > MAX_SIMULATED_VERSIONS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a simulation takes at most {MAX_SIMULATED_VERSIONS} versions; this one has {}",
                sim.versions.len()
            ),
        ));
    }
    let spec = policy_spec(&sim.policy)?;
    let mut versions: Vec<VersionSummary> = sim
        .versions
        .iter()
        .map(|v| VersionSummary::new(VersionId::generate(), v.number, 0, v.created_at).with_protected(v.protected))
        .collect();
    let now = sim.now.unwrap_or(now);
    drop(sim);
    versions.sort_by_key(|v| v.number);
    if let Some(w) = versions.windows(2).find(|w| w[0].number == w[1].number) {
        return Err(ApiError::bad_request(format!("versions: number {} appears twice", w[0].number)));
    }
    strategies.plan(&spec, &versions, None, now).map_err(|e| match e {
        Error::InvalidSpec { field, reason } => ApiError::bad_request(format!("{}: {reason}", policy_field(field))),
        e => ApiError::from_core(&e, ""),
    })
}

/// One decision as the answer shows it (keys in Gin's sorted order).
#[derive(Serialize)]
struct DecisionJson<'a> {
    keep: bool,
    number: u64,
    reasons: &'a [String],
}

/// The answer `{"data": {"versions": [...]}, "status": true}`, pretty-printed as every other
/// answer, written [`DECISIONS_PER_CHUNK`] decisions at a time as the client reads; `held`
/// lives until the last chunk is taken or the stream is dropped.
fn simulation_answer<H: Send + 'static>(
    decisions: Vec<RotationDecision>,
    held: H,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let total = decisions.len();
    let mut decisions = decisions.into_iter().enumerate().peekable();
    let mut started = false;
    let mut held = Some(held);
    futures::stream::iter(std::iter::from_fn(move || {
        held.as_ref()?;
        let mut out = Vec::with_capacity(64 * 1024);
        if !started {
            started = true;
            out.extend_from_slice(b"{\n    \"data\": {\n        \"versions\": [");
        }
        for _ in 0..DECISIONS_PER_CHUNK {
            let Some((i, d)) = decisions.next() else { break };
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            let item = DecisionJson { keep: d.mark == Mark::Keep, number: d.number, reasons: &d.reasons };
            let mut text = Vec::with_capacity(256);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            if item.serialize(&mut serde_json::Serializer::with_formatter(&mut text, formatter)).is_err() {
                text = b"{}".to_vec();
            }
            for (n, line) in text.split(|b| *b == b'\n').enumerate() {
                if n > 0 {
                    out.push(b'\n');
                }
                out.extend_from_slice(b"            ");
                out.extend_from_slice(line);
            }
        }
        if decisions.peek().is_none() {
            if total > 0 {
                out.extend_from_slice(b"\n        ");
            }
            out.extend_from_slice(b"]\n    },\n    \"status\": true\n}");
            held = None;
        }
        Some(Ok(Bytes::from(out)))
    }))
}

/// The policy field behind a spec field the engine names.
fn policy_field(core: &str) -> &'static str {
    match core {
        "retention.strategy" => "policy.strategy",
        "retention.min_keep" => "policy.minKeep",
        "limits.max_versions" => "policy.maxVersions",
        _ => "policy",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProtectionBody {
    #[serde(default)]
    held: Option<bool>,
    /// Absent: unchanged; `null`: lifted; a time: protected until then.
    #[serde(default, deserialize_with = "present")]
    protected_until: Option<Option<Timestamp>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`, told apart from an absent
/// one (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Timestamp>>, D::Error> {
    Option::<Timestamp>::deserialize(d).map(Some)
}

/// `PUT /api/stable/repository/collection/{collectionId}/version/{versionNum}/protection`:
/// `{"held": true}` (a legal hold, no expiry), `{"protectedUntil": RFC 3339}`, or their
/// release (`{"held": false, "protectedUntil": null}`). Collection managers only; the number
/// of held versions is capped per collection (`maxHeldVersions`).
pub(crate) async fn protect(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    const DENIED: &str = "not authorized to protect versions of this collection";
    let id = collection_id(&collection)?;
    let n = number(&version, "protect")?;
    let b: ProtectionBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid protection: {e}")))?;
    let mut change = ProtectionChange::default();
    if let Some(held) = b.held {
        change = change.with_held(held);
    }
    if let Some(until) = b.protected_until {
        change = change.with_protected_until(until);
    }
    if change.is_empty() {
        return Err(ApiError::bad_request("invalid protection: set held, protectedUntil, or both"));
    }
    let v = state
        .inner
        .engine
        .protect_version(&caller.actor, &id, n, change)
        .await
        .map_err(|e| ApiError::from_core(&e, DENIED))?;
    Ok(ok(json!({ "version": model::version(&v) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockBody {
    until: Timestamp,
    #[serde(default)]
    mode: Option<backup_core::LockMode>,
}

/// `PUT /api/stable/repository/collection/{collectionId}/version/{versionNum}/lock`:
/// `{"until": RFC 3339}` lengthens the version's retention lock (or locks a version committed
/// without one), `"mode"` optionally making it compliance. A lock never shortens and never
/// weakens (400 saying so). Collection managers.
pub(crate) async fn lock(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    const DENIED: &str = "not authorized to lock versions of this collection";
    let id = collection_id(&collection)?;
    let n = number(&version, "lock")?;
    let b: LockBody = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid lock: {e}")))?;
    let v = state
        .inner
        .engine
        .lock_version(&caller.actor, &id, n, b.mode, b.until)
        .await
        .map_err(|e| ApiError::from_core(&e, DENIED))?;
    Ok(ok(json!({ "version": model::version(&v) })))
}

/// What the `Retry-After` of a verification refused while another runs says, in seconds (a
/// verification reads a whole collection: minutes, typically).
const VERIFY_RETRY_AFTER_SECS: u64 = 60;

/// `POST /api/stable/repository/collection/{collectionId}/verify`: reads every committed
/// version back now and checks its size and digest, recording the result (a damaged or
/// missing one is quarantined). Collection managers; one verification at a time on a server
/// (429 with `Retry-After` while one runs).
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
) -> Result<Response, ApiError> {
    const DENIED: &str = "not authorized to verify this collection";
    let id = collection_id(&collection)?;
    let engine = &state.inner.engine;
    engine
        .check_access(&caller.actor, &id, backup_core::Action::VerifyVersions)
        .await
        .map_err(|e| ApiError::from_core(&e, DENIED))?;
    let Ok(_running) = state.inner.verifying.clone().try_acquire_owned() else {
        let mut busy =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "a verification is running; try again when it ends");
        busy.retry_after = Some(VERIFY_RETRY_AFTER_SECS);
        return Err(busy);
    };
    let progress = crate::ops::progress::LogProgress::new("verify", state.inner.progress_interval);
    let checks = engine
        .verify_collection_with(&caller.actor, &id, Some(std::sync::Arc::new(progress)))
        .await
        .map_err(|e| ApiError::from_core(&e, DENIED))?;
    state.inner.metrics.checked(checks.iter());
    let versions: Vec<Value> =
        checks.iter().map(|c| json!({ "number": c.number, "ok": c.ok, "error": c.error })).collect();
    Ok(ok(json!({ "versions": versions })))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;
    use crate::ServerConfig;
    use crate::testing::{send, text};

    /// A verification refused while another runs says when to come back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_verification_refused_while_another_runs_says_when_to_retry() {
        let config = ServerConfig::for_tests().user("admin", "a password", &["systemAdmin"]).collection(
            "db",
            2,
            "1M",
            "2M",
            &[("admin", &["collectionManager"])],
        );
        let state = crate::build_from(&config).await.unwrap();
        let user = state.inner.directory.snapshot().users["admin"].clone();
        let request = backup_policy::TokenRequest::login().from_addr("127.0.0.1".to_owned());
        let token = state.inner.tokens.issue(&user, None, request).await.unwrap().token;
        let verify = || {
            Request::post("/api/stable/repository/collection/db/verify")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap()
        };
        let running = state.inner.verifying.clone().try_acquire_owned().unwrap();
        let refused = send(&state, verify()).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], VERIFY_RETRY_AFTER_SECS.to_string());
        assert!(text(refused).await.contains("a verification is running"));
        drop(running);
        assert_eq!(send(&state, verify()).await.status(), StatusCode::OK);
    }

    /// A verification logs its progress on the server (issue 24 §5.6): when it starts and
    /// ends, and every `--progress-interval` between.
    #[tokio::test]
    async fn a_verification_logs_its_progress() {
        let config = ServerConfig::for_tests().user("admin", "a password", &["systemAdmin"]).collection(
            "db",
            2,
            "1M",
            "2M",
            &[("admin", &["collectionManager"])],
        );
        let state = crate::build_from(&config).await.unwrap();
        let (admin, id) = (backup_core::Actor::user("admin"), "db".parse().unwrap());
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"a version"))]);
        state.engine().upload(&admin, &id, body).await.unwrap();
        let user = state.inner.directory.snapshot().users["admin"].clone();
        let request = backup_policy::TokenRequest::login().from_addr("127.0.0.1".to_owned());
        let token = state.inner.tokens.issue(&user, None, request).await.unwrap().token;
        let (lines, _guard) = crate::testing::progress_lines();
        let verify = Request::post("/api/stable/repository/collection/db/verify")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&state, verify).await.status(), StatusCode::OK);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.first().map(String::as_str), Some("verify: verifying db: 0 of 1 (0%), 0 B of 9 B"));
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("verify: verifying db: 1 of 1 (100%), 9 B of 9 B") && last.contains("done in"),
            "{last}"
        );
    }
}
