//! The OpenAPI description of every route, served at `/api/openapi.json`. The router is built
//! from the same table (see `app.rs`), so the two cannot drift apart.

use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::http::json::json_response;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    Bearer,
    HealthCode,
}

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) id: &'static str,
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) auth: Auth,
    /// The JSON request body's schema (a component), if it takes one.
    pub(crate) request: Option<&'static str>,
    /// What a success carries.
    pub(crate) response: Body,
    /// The success status and what it carries, in words.
    pub(crate) ok: &'static str,
}

/// What a success answer carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body {
    /// JSON of this schema (a component).
    Json(&'static str),
    /// A version's bytes.
    Bytes,
    /// Prometheus text.
    Text,
}

/// Every route the server serves.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        id: "login",
        method: "post",
        path: "/api/stable/auth/login",
        summary: "Log in with user or user$accessKey and a password; optionally a scope (operationsScope) or a one-time upload token (singleUse). Every refused login (unknown name, wrong password, deactivated user, address outside restrictByIP) answers 401 \"incorrect Username or Password\"",
        auth: Auth::None,
        request: Some("LoginRequest"),
        response: Body::Json("Login"),
        ok: "token, sessionId, expire",
    },
    Route {
        id: "refresh",
        method: "get",
        path: "/api/stable/auth/refresh_token",
        summary: "A new token with the same user, key and scope (registered, unlike backup-repository's)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Refreshed"),
        ok: "code, token, expire",
    },
    Route {
        id: "whoami",
        method: "get",
        path: "/api/stable/auth/whoami",
        summary: "The caller: e-mail, roles, session",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Whoami"),
        ok: "email, permissions, sessionId, grantedAccess",
    },
    Route {
        id: "user",
        method: "get",
        path: "/api/stable/auth/user/{userName}",
        summary: "A user's e-mail and roles (user managers, or the user itself)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("User"),
        ok: "email, permissions",
    },
    Route {
        id: "logout",
        method: "delete",
        path: "/api/stable/auth/logout",
        summary: "Revoke the current token, or ?sessionId= (own, or anyone's for a systemAdmin)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("LoggedOut"),
        ok: "message, sessionId",
    },
    Route {
        id: "tokens",
        method: "get",
        path: "/api/stable/auth/token",
        summary: "The newest 100 sessions of the caller, or of ?userName= (systemAdmin)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Tokens"),
        ok: "grantedAccesses",
    },
    Route {
        id: "collections",
        method: "get",
        path: "/api/stable/repository/collection",
        summary: "The collections the caller may see",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Collections"),
        ok: "collections",
    },
    Route {
        id: "upload",
        method: "post",
        path: "/api/alpha/repository/collection/{collectionId}/version",
        summary: "Upload a version: the raw body (any or no Content-Type, chunked or not) or the multipart field `file`; X-Backup-Meta-NAME headers (percent-encoded values) become the version's metadata; an Idempotency-Key header is kept with the version, and a retry with the same key by the same user gets that version (Idempotent-Replayed: true) without its body being read; 503 with data.outcome \"unknown\" when the commit's outcome could not be learned",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("OneVersion"),
        ok: "version",
    },
    Route {
        id: "download",
        method: "get",
        path: "/api/alpha/repository/collection/{collectionId}/version/{versionNum}",
        summary: "Download a version: latest, N or vN; verified while it streams",
        auth: Auth::Bearer,
        request: None,
        response: Body::Bytes,
        ok: "the bytes (application/octet-stream)",
    },
    Route {
        id: "versions",
        method: "get",
        path: "/api/stable/repository/collection/{collectionId}/version",
        summary: "Every committed version, by number; with ?idempotencyKey=KEY only the caller's version uploaded with that key (none or one)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Versions"),
        ok: "versions",
    },
    Route {
        id: "delete_version",
        method: "delete",
        path: "/api/stable/repository/collection/{collectionId}/version/{versionNum}",
        summary: "Delete a version (restorable within the trash retention); refused while a retention lock holds it; ?bypassGovernance=true lifts a governance lock for a caller with the governanceBypass role (audited)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("OneVersion"),
        ok: "version",
    },
    Route {
        id: "restore_version",
        method: "post",
        path: "/api/stable/repository/collection/{collectionId}/version/{versionNum}/restore",
        summary: "Restore a deleted or rotated-out version within the trash retention; with ?replica=NAME, a version the primary no longer has (purged) comes back from that replica's copy, checked against its digest, as a new version (metadata restored-from), within the replica's delay",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("OneVersion"),
        ok: "version",
    },
    Route {
        id: "protect_version",
        method: "put",
        path: "/api/stable/repository/collection/{collectionId}/version/{versionNum}/protection",
        summary: "Hold a version ({\"held\": true}), protect it until a time ({\"protectedUntil\": RFC 3339}), or release it ({\"held\": false, \"protectedUntil\": null}); collection managers",
        auth: Auth::Bearer,
        request: Some("ProtectionRequest"),
        response: Body::Json("OneVersion"),
        ok: "version",
    },
    Route {
        id: "lock_version",
        method: "put",
        path: "/api/stable/repository/collection/{collectionId}/version/{versionNum}/lock",
        summary: "Lengthen a version's retention lock ({\"until\": RFC 3339, \"mode\": \"compliance\"|\"governance\"}); a lock never shortens and compliance never becomes governance; collection managers",
        auth: Auth::Bearer,
        request: Some("LockRequest"),
        response: Body::Json("OneVersion"),
        ok: "version",
    },
    Route {
        id: "audit",
        method: "get",
        path: "/api/stable/audit",
        summary: "The audit log in order, ?collection=ID&after=SEQ&limit=N (1 to 1000, default 100): each event with its seq, time, actor, action, collection, version, detail and chain hash; next is the after of the following page (null at the end); a systemAdmin sees every event, a collection manager those of their collections, anyone else 403",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("AuditEvents"),
        ok: "events, next",
    },
    Route {
        id: "notifications",
        method: "get",
        path: "/api/stable/notifications",
        summary: "Each notification target (webhooks, e-mail) and its delivery state: the events after its place in the log (pending), delivered, dead-lettered (failedTotal and the newest deadLettered event numbers), the last error and its attempts, the instance holding its lease; a systemAdmin only",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Notifications"),
        ok: "head, targets",
    },
    Route {
        id: "replicas",
        method: "get",
        path: "/api/stable/repository/replicas",
        summary: "Each replica (another store receiving a copy of every committed version): versions and bytes not yet copied, the age of the oldest (lagSeconds), whether it is still catching up, copies made and found there, failed copies with their attempts and last error, deletions waiting for their delay, why it is unavailable; a systemAdmin only",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Replicas"),
        ok: "replicas",
    },
    Route {
        id: "verify",
        method: "post",
        path: "/api/stable/repository/collection/{collectionId}/verify",
        summary: "Read every committed version back and check its digest; damaged or missing ones are quarantined (listed, never served); collection managers, one verification at a time (429 with Retry-After while one runs)",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("Verification"),
        ok: "versions [{number, ok, error}]",
    },
    Route {
        id: "retention",
        method: "get",
        path: "/api/stable/repository/collection/{collectionId}/retention",
        summary: "Each committed version: kept or evicted at the next commit, with the reasons",
        auth: Auth::Bearer,
        request: None,
        response: Body::Json("RetentionPreview"),
        ok: "retention, maxBackupsCount, versions [{number, keep, reasons}]",
    },
    Route {
        id: "simulate_retention",
        method: "post",
        path: "/api/stable/retention/simulate",
        summary: "A policy over any versions: {\"policy\": {strategy, keepLast…keepYearly, keepWithin, timezone, mode, minKeep, maxVersions}, \"now\": RFC 3339, \"versions\": [{number, createdAt}]}; at most 100,000 versions (413 beyond). For callers who may read some collection's versions (backupDownloader, collectionManager or systemAdmin; 403 otherwise); one per user and two on the server at once until their answers are read (429 with Retry-After beyond); the answer streams",
        auth: Auth::Bearer,
        request: Some("SimulationRequest"),
        response: Body::Json("Simulation"),
        ok: "versions [{number, keep, reasons}]",
    },
    Route {
        id: "collection_health",
        method: "get",
        path: "/api/stable/repository/collection/{collectionId}/health",
        summary: "Backup window kept, soft and hard limits respected; ?code= or a raw Authorization header when the collection has a health secret",
        auth: Auth::None,
        request: None,
        response: Body::Json("Health"),
        ok: "health",
    },
    Route {
        id: "health",
        method: "get",
        path: "/health",
        summary: "The process is up",
        auth: Auth::None,
        request: None,
        response: Body::Json("Up"),
        ok: "msg",
    },
    Route {
        id: "ready",
        method: "get",
        path: "/ready",
        summary: "Catalog, storage and configuration work",
        auth: Auth::HealthCode,
        request: None,
        response: Body::Json("Health"),
        ok: "health",
    },
    Route {
        id: "metrics",
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics per collection",
        auth: Auth::HealthCode,
        request: None,
        response: Body::Text,
        ok: "text exposition format",
    },
    Route {
        id: "openapi",
        method: "get",
        path: "/api/openapi.json",
        summary: "This description",
        auth: Auth::None,
        request: None,
        response: Body::Json("OpenApi"),
        ok: "OpenAPI 3.1",
    },
];

/// The route with this id.
pub(crate) fn path(id: &str) -> &'static str {
    ROUTES.iter().find(|r| r.id == id).map(|r| r.path).unwrap_or_else(|| panic!("no route {id}"))
}

pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let success = match r.response {
            Body::Json(schema) => json!({
                "description": r.ok,
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } },
            }),
            Body::Bytes => json!({
                "description": r.ok,
                "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } },
            }),
            Body::Text => {
                json!({ "description": r.ok, "content": { "text/plain": { "schema": { "type": "string" } } } })
            }
        };
        let refusal = |what: &str| {
            json!({
                "description": what,
                "content": { "application/json": { "schema": { "oneOf": [
                    { "$ref": "#/components/schemas/Error" },
                    { "$ref": "#/components/schemas/JwtError" },
                ] } } },
            })
        };
        let mut op = json!({
            "operationId": r.id,
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": success,
                "4XX": refusal("refused: {\"data\": {}, \"error\": \"…\", \"status\": false}; authentication refusals in the JWT form {\"code\", \"message\"}"),
                "5XX": refusal("a backend failed (or, for health routes, a check failed: the Health body)"),
            },
        });
        if let Some(schema) = r.request {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } },
            });
        }
        match r.auth {
            Auth::Bearer => op["security"] = json!([{ "bearer": [] }]),
            Auth::HealthCode => op["security"] = json!([{ "healthCode": [] }, {}]),
            Auth::None => {}
        }
        paths
            .entry(r.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(r.method.to_owned(), op));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "backup-repository compatible API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of riotkit-org's backup-repository, served by the backup engine's example server.",
        },
        "paths": paths,
        "components": {
            "schemas": super::schemas::components(),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "healthCode": { "type": "apiKey", "in": "header", "name": "Authorization" },
            },
        },
    })
}

/// `GET /api/openapi.json`.
pub(crate) async fn serve() -> Response {
    json_response(axum::http::StatusCode::OK, &document())
}
