//! The JSON Schemas (OpenAPI 3.1 components) of every request and answer body: the
//! envelopes, the refusals, and what each route's `data` holds. `tests/openapi.rs` validates
//! real answers against them.

use serde_json::{Value, json};

fn string() -> Value {
    json!({ "type": "string" })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn nullable(v: Value) -> Value {
    json!({ "oneOf": [v, { "type": "null" }] })
}

fn integer() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

/// An object with these required properties (and maybe others).
fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

/// `{"data": <data>, "status": true}`.
fn ok(data: Value) -> Value {
    object(&["data", "status"], json!({ "data": data, "status": { "const": true } }))
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Every component, by name.
pub(crate) fn components() -> Value {
    let version = object(
        &[
            "id",
            "collectionId",
            "versionNumber",
            "filename",
            "filesize",
            "uploadedBySessionId",
            "user",
            "digest",
            "held",
            "CreatedAt",
            "UpdatedAt",
        ],
        json!({
            "id": string(),
            "collectionId": string(),
            "versionNumber": { "type": "integer", "minimum": 1 },
            "filename": string(),
            "filesize": integer(),
            "uploadedBySessionId": string(),
            "user": string(),
            "digest": { "type": "string", "pattern": "^(blake3|sha256):[0-9a-f]{64}$" },
            "held": { "type": "boolean" },
            "protectedUntil": nullable(time()),
            "lockedUntil": nullable(time()),
            "lockMode": nullable(json!({ "enum": ["governance", "compliance"] })),
            "CreatedAt": time(),
            "UpdatedAt": time(),
            "DeletedAt": nullable(time()),
            "metadata": { "type": "object", "additionalProperties": string() },
        }),
    );
    let granted_access = object(
        &["id", "expiresAt", "deactivated", "user", "CreatedAt"],
        json!({
            "id": string(),
            "expiresAt": time(),
            "deactivated": { "type": "boolean" },
            "description": string(),
            "requesterIP": string(),
            "user": string(),
            "accessKeyName": string(),
            "CreatedAt": time(),
            "UpdatedAt": time(),
            "DeletedAt": { "type": "null" },
        }),
    );
    let check = object(
        &["name", "status", "statusText", "message"],
        json!({
            "name": string(),
            "status": { "type": "boolean" },
            "statusText": { "type": "string", "pattern": "^[A-Za-z]+=(true|false)$" },
            "message": string(),
        }),
    );
    let failed_copy = object(
        &["collection", "version", "attempts", "lastError", "since"],
        json!({
            "collection": string(), "version": integer(), "attempts": integer(), "lastError": string(), "since": string(),
        }),
    );
    let replica = object(
        &[
            "name",
            "location",
            "after",
            "pendingVersions",
            "pendingBytes",
            "oldestPending",
            "lagSeconds",
            "catchingUp",
            "copied",
            "copiedBytes",
            "alreadyThere",
            "deleted",
            "deletionsPending",
            "unavailable",
            "unavailableSince",
            "heldBy",
            "failed",
        ],
        json!({
            "name": string(), "location": string(), "after": nullable(integer()),
            "pendingVersions": integer(), "pendingBytes": integer(), "oldestPending": nullable(string()),
            "lagSeconds": integer(), "catchingUp": { "type": "boolean" }, "copied": integer(),
            "copiedBytes": integer(), "alreadyThere": integer(), "deleted": integer(),
            "deletionsPending": integer(), "unavailable": nullable(string()),
            "unavailableSince": nullable(string()), "heldBy": nullable(string()),
            "failed": { "type": "array", "items": failed_copy },
        }),
    );
    let decisions = json!({
        "type": "array",
        "items": object(&["number", "keep", "reasons"], json!({
            "number": integer(),
            "keep": { "type": "boolean" },
            "reasons": { "type": "array", "items": string() },
        })),
    });
    let collection = object(
        &["id", "filenameTemplate", "maxBackupsCount", "maxOneVersionSize", "maxCollectionSize", "strategyName"],
        json!({
            "id": string(),
            "description": string(),
            "filenameTemplate": string(),
            "maxBackupsCount": integer(),
            "maxOneVersionSize": integer(),
            "maxCollectionSize": integer(),
            "strategyName": string(),
            "strategySpec": { "type": "object" },
            "minKeep": integer(),
            "maxHeldVersions": integer(),
            "contentRule": string(),
            "digest": string(),
            "lock": nullable(object(&["mode", "minRetention", "minRetentionSeconds"], json!({
                "mode": { "enum": ["governance", "compliance"] },
                "minRetention": string(),
                "minRetentionSeconds": integer(),
            }))),
        }),
    );
    json!({
        "Error": object(&["data", "error", "status"], json!({
            "data": { "type": "object" },
            "error": string(),
            "status": { "const": false },
        })),
        "JwtError": object(&["code", "data", "message", "status"], json!({
            "code": { "type": "integer" },
            "data": { "type": "object" },
            "message": string(),
            "status": { "const": false },
        })),
        "Version": version,
        "GrantedAccess": granted_access,
        "Check": check,
        "Collection": collection,
        "LoginRequest": object(&["username", "password"], json!({
            "username": { "type": "string", "description": "user, or user$accessKey" },
            "password": string(),
            "operationsScope": { "type": "object", "description": "narrows the token (also its JSON text in a form)" },
            "singleUse": { "type": "boolean", "description": "a token for one upload" },
        })),
        "ProtectionRequest": json!({
            "type": "object",
            "additionalProperties": false,
            "properties": { "held": { "type": "boolean" }, "protectedUntil": nullable(time()) },
        }),
        "LockRequest": object(&["until"], json!({
            "until": time(),
            "mode": { "enum": ["governance", "compliance"], "description": "default: the version's mode, else the collection's, else governance" },
        })),
        "SimulationRequest": json!({
            "type": "object",
            "required": ["policy", "versions"],
            "additionalProperties": false,
            "properties": {
                "policy": { "type": "object" },
                "now": time(),
                "versions": { "type": "array", "maxItems": 100_000, "items": object(&["number", "createdAt"], json!({
                    "number": integer(), "createdAt": time(), "protected": { "type": "boolean" },
                })) },
            },
        }),
        "Login": ok(object(&["token", "sessionId", "expire", "msg"], json!({
            "token": string(), "sessionId": string(), "expire": time(), "msg": string(),
        }))),
        "Refreshed": object(&["code", "token", "expire"], json!({
            "code": { "const": 200 }, "token": string(), "expire": time(),
        })),
        "Whoami": ok(object(&["email", "permissions", "sessionId", "grantedAccess"], json!({
            "email": string(),
            "permissions": { "type": "array", "items": string() },
            "sessionId": string(),
            "grantedAccess": reference("GrantedAccess"),
        }))),
        "User": ok(object(&["email", "permissions"], json!({
            "email": string(), "permissions": { "type": "array", "items": string() },
        }))),
        "LoggedOut": ok(object(&["message", "sessionId"], json!({ "message": string(), "sessionId": string() }))),
        "Tokens": ok(object(&["grantedAccesses"], json!({
            "grantedAccesses": { "type": "array", "items": reference("GrantedAccess") },
        }))),
        "Collections": ok(object(&["collections"], json!({
            "collections": { "type": "array", "items": reference("Collection") },
        }))),
        "AuditEvents": ok(object(&["events", "next"], json!({
            "events": { "type": "array", "items": object(&["seq", "at", "actor", "action", "collection", "version", "detail", "hash"], json!({
                "seq": integer(), "at": time(), "actor": string(), "action": string(),
                "collection": nullable(string()), "version": nullable(integer()), "detail": string(),
                "hash": nullable(string()),
            })) },
            "next": nullable(integer()),
        }))),
        "Notifications": ok(object(&["head", "targets"], json!({
            "head": integer(),
            "targets": { "type": "array", "items": object(
                &["name", "kind", "after", "pending", "delivered", "failedTotal", "deadLettered", "attempts", "lastError", "heldBy"],
                json!({
                    "name": string(), "kind": { "enum": ["webhook", "email"] }, "after": integer(), "pending": integer(),
                    "delivered": integer(), "failedTotal": integer(),
                    "deadLettered": { "type": "array", "items": integer() }, "attempts": integer(),
                    "lastError": nullable(string()), "heldBy": nullable(string()),
                }),
            ) },
        }))),
        "Replicas": ok(object(&["replicas"], json!({ "replicas": { "type": "array", "items": replica } }))),
        "OneVersion": ok(object(&["version"], json!({ "version": reference("Version") }))),
        "Versions": ok(object(&["versions"], json!({ "versions": { "type": "array", "items": reference("Version") } }))),
        "Verification": ok(object(&["versions"], json!({
            "versions": { "type": "array", "items": object(&["number", "ok", "error"], json!({
                "number": integer(), "ok": { "type": "boolean" }, "error": nullable(string()),
            })) },
        }))),
        "RetentionPreview": ok(object(&["retention", "maxBackupsCount", "versions"], json!({
            "retention": object(&["strategy"], json!({ "strategy": string() })),
            "maxBackupsCount": integer(),
            "versions": decisions,
        }))),
        "Simulation": ok(object(&["versions"], json!({ "versions": decisions }))),
        "Health": object(&["data", "status"], json!({
            "data": object(&["health"], json!({
                "health": { "type": "array", "items": reference("Check") },
                "repository": nullable(string()),
            })),
            "status": { "type": "boolean" },
            "error": string(),
        })),
        "Up": ok(object(&["msg"], json!({ "msg": string() }))),
        "OpenApi": object(&["openapi", "paths", "components"], json!({ "openapi": { "const": "3.1.0" } })),
    })
}
