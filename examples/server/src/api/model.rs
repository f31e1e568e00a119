//! backup-repository's JSON shapes of versions, sessions and collections.

use backup_core::{Collection, Session, Timestamp, Version};
use chrono::SecondsFormat;
use serde_json::{Value, json};

fn time(t: Timestamp) -> String {
    t.to_datetime().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// An `UploadedVersion`: its fields, with the capitalised timestamps Go gave them (plus the
/// digest, ours).
pub(crate) fn version(v: &Version) -> Value {
    json!({
        "id": v.id.to_string(),
        "collectionId": v.collection.as_str(),
        "versionNumber": v.number,
        "filename": v.filename,
        "filesize": v.size,
        "uploadedBySessionId": v.uploader.session.as_ref().map(|s| s.as_str()).unwrap_or_default(),
        "user": v.uploader.user,
        "digest": v.digest.to_string(),
        "held": v.held,
        "protectedUntil": v.protected_until.map(time),
        "lockedUntil": v.lock.map(|l| time(l.until)),
        "lockMode": v.lock.map(|l| l.mode.name()),
        "CreatedAt": time(v.created_at),
        "UpdatedAt": time(v.trashed_at.unwrap_or(v.committed_at)),
        "DeletedAt": v.trashed_at.map(time),
        "metadata": v.metadata,
    })
}

/// A `GrantedAccess`: a session as backup-repository shows it.
pub(crate) fn granted_access(s: &Session) -> Value {
    json!({
        "id": s.id.as_str(),
        "expiresAt": time(s.expires_at),
        "deactivated": s.revoked_at.is_some(),
        "description": s.description,
        "requesterIP": s.requester_addr.clone().unwrap_or_default(),
        "user": s.user,
        "accessKeyName": s.access_key.clone().unwrap_or_default(),
        "CreatedAt": time(s.issued_at),
        "UpdatedAt": time(s.revoked_at.unwrap_or(s.issued_at)),
        "DeletedAt": Value::Null,
    })
}

/// A collection, in the manifest's field names.
pub(crate) fn collection(c: &Collection) -> Value {
    let l = &c.spec.limits;
    json!({
        "id": c.id.as_str(),
        "description": c.spec.description,
        "filenameTemplate": c.spec.filename_template.as_str(),
        "maxBackupsCount": l.max_versions,
        "maxOneVersionSize": l.max_version_size,
        "maxCollectionSize": l.max_collection_size,
        "strategyName": c.spec.retention.strategy,
        "strategySpec": c.spec.retention.options,
        "minKeep": c.spec.retention.min_keep,
        "maxHeldVersions": c.spec.held_cap(),
        "contentRule": c.spec.content_rule.clone().unwrap_or_else(|| "none".into()),
        "digest": c.spec.digest.name(),
        "lock": c.spec.lock.map(|l| json!({
            "mode": l.mode.name(),
            "minRetention": humantime::format_duration(l.min_retention.to_std().unwrap_or_default()).to_string(),
            "minRetentionSeconds": l.min_retention.num_seconds(),
        })),
    })
}
