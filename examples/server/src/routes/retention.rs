//! Retention (ours): what the next commit would keep and why, a policy simulated over any
//! versions, and holds and protection deadlines on versions.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use backup_core::protocol::ProtectionChange;
use backup_core::rotation::{Mark, RotationDecision, VersionSummary};
use backup_core::{CollectionSpec, Error, Limits, RetentionSpec, Timestamp, VersionId, VersionSelector};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::caller::Caller;
use crate::json::{ApiError, ok};
use crate::model;
use crate::routes::versions::{collection_id, selector};
use crate::state::AppState;

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

/// `POST /api/stable/retention/simulate`, for any authenticated caller: a policy over the
/// given versions at `now` (default: the server's time), each decision with its reasons.
/// At most 100,000 versions (413 beyond).
pub(crate) async fn simulate(
    State(state): State<AppState>,
    _caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
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
    versions.sort_by_key(|v| v.number);
    if let Some(w) = versions.windows(2).find(|w| w[0].number == w[1].number) {
        return Err(ApiError::bad_request(format!("versions: number {} appears twice", w[0].number)));
    }
    let now = sim.now.unwrap_or_else(|| Timestamp::from(state.inner.engine.clock().now()));
    let strategies = state.inner.engine.strategies().clone();
    // A plan of 100,000 versions is CPU work: off the request threads.
    let planned = tokio::task::spawn_blocking(move || strategies.plan(&spec, &versions, None, now))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the simulation failed"))?;
    let decisions = planned.map_err(|e| match e {
        Error::InvalidSpec { field, reason } => ApiError::bad_request(format!("{}: {reason}", policy_field(field))),
        e => ApiError::from_core(&e, ""),
    })?;
    Ok(ok(json!({ "versions": decisions_json(&decisions) })))
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
    let VersionSelector::Number(n) = selector(&version)? else {
        return Err(ApiError::bad_request("name the version to protect by its number"));
    };
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

/// `POST /api/stable/repository/collection/{collectionId}/verify`: reads every committed
/// version back now and checks its size and digest, recording the result (a damaged or
/// missing one is quarantined). Collection managers; one verification at a time on a server
/// (429 while one runs).
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
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "a verification is running; try again when it ends"));
    };
    let checks = engine.verify_collection(&caller.actor, &id).await.map_err(|e| ApiError::from_core(&e, DENIED))?;
    state.inner.metrics.checked(checks.iter());
    let versions: Vec<Value> =
        checks.iter().map(|c| json!({ "number": c.number, "ok": c.ok, "error": c.error })).collect();
    Ok(ok(json!({ "versions": versions })))
}
