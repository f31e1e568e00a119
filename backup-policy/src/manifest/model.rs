//! The manifests' YAML shape: backup-repository's `BackupCollection`, `BackupUser` and
//! Kubernetes' `Secret`, field for field, plus a few optional fields of ours.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The common head of every manifest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Head {
    pub(crate) api_version: String,
    pub(crate) kind: String,
}

/// Kubernetes metadata: the name counts; labels, annotations and the fields the API server
/// adds are accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    pub(crate) name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) namespace: Option<String>,
    #[serde(flatten)]
    #[allow(dead_code)]
    pub(crate) other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// `{name, entry}`: an entry of a Secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretRef {
    pub(crate) name: String,
    pub(crate) entry: String,
}

/// A size as text (`1M`) or as a YAML number (bytes).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CollectionManifest {
    #[serde(rename = "apiVersion")]
    #[allow(dead_code)]
    pub(crate) api_version: String,
    #[allow(dead_code)]
    pub(crate) kind: String,
    pub(crate) metadata: Metadata,
    pub(crate) spec: CollectionSpecYaml,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CollectionSpecYaml {
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) filename_template: String,
    pub(crate) max_backups_count: u32,
    pub(crate) max_one_version_size: SizeValue,
    pub(crate) max_collection_size: SizeValue,
    #[serde(default)]
    pub(crate) windows: Vec<WindowYaml>,
    #[serde(default)]
    pub(crate) strategy_name: Option<String>,
    /// The strategy's options: backup-repository's `keepLastOlderNotMoreThan` and
    /// `maxOlderCopies` (for `fifo-plus-older`), `gfs`'s `keepLast` … `keepWithin`,
    /// `timezone`, `mode`, and `minKeep` for any strategy.
    #[serde(default)]
    pub(crate) strategy_spec: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    pub(crate) health_secret_ref: Option<SecretRef>,
    #[serde(default)]
    pub(crate) access_control: Vec<AclYaml>,
    // Ours: optional, backup-repository's behaviour when absent.
    /// The time zone of the windows (IANA name; UTC when absent).
    #[serde(default)]
    pub(crate) time_zone: Option<String>,
    /// `openpgp` (the default, backup-repository's check) or `none`.
    #[serde(default)]
    pub(crate) content_rule: Option<String>,
    /// `blake3` (default) or `sha256`.
    #[serde(default)]
    pub(crate) digest: Option<String>,
    /// How many versions may be held at once (half of `maxBackupsCount` when absent).
    #[serde(default)]
    pub(crate) max_held_versions: Option<u32>,
    /// The retention lock of every committed version: `mode` (`compliance` or `governance`)
    /// and `minRetention` (a duration, `30d`).
    #[serde(default)]
    pub(crate) lock: Option<LockYaml>,
    /// How the detectors judge the collection (ours): `windowGrace`, `staleAfter`,
    /// `refusedQuiet` (durations), `lighterThan`, `quotaNear` (percentages, `50%`),
    /// `lighterOf` (a count); each absent one keeps its default.
    #[serde(default)]
    pub(crate) alerts: Option<AlertsYaml>,
    /// Where the collection's events go (ours): a webhook (`webhook: URL`, `secretFrom`) or an
    /// e-mail address (`email: ADDRESS`, through the server's SMTP), each with the events it
    /// receives (`events`, default `[alerts]`).
    #[serde(default)]
    pub(crate) notify: Vec<NotifyYaml>,
    /// Stores that receive a copy of each of its versions (ours): `name`, `url` and
    /// `deleteAfter` (a duration: how long a version purged here stays there).
    #[serde(default)]
    pub(crate) replicas: Vec<ReplicaYaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ReplicaYaml {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) delete_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NotifyYaml {
    pub(crate) webhook: Option<String>,
    pub(crate) secret_from: Option<SecretRef>,
    pub(crate) email: Option<String>,
    pub(crate) events: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AlertsYaml {
    pub(crate) window_grace: Option<String>,
    pub(crate) stale_after: Option<String>,
    pub(crate) refused_quiet: Option<String>,
    pub(crate) lighter_than: Option<String>,
    pub(crate) lighter_of: Option<u32>,
    pub(crate) quota_near: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LockYaml {
    pub(crate) mode: String,
    pub(crate) min_retention: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowYaml {
    pub(crate) from: String,
    pub(crate) duration: String,
}

/// An ACL entry in either spelling: the Go code's `name` + `type: user`, or the CRD's and the
/// docs' `userName` (which backup-repository ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AclYaml {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) user_name: Option<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserManifest {
    #[serde(rename = "apiVersion")]
    #[allow(dead_code)]
    pub(crate) api_version: String,
    #[allow(dead_code)]
    pub(crate) kind: String,
    pub(crate) metadata: Metadata,
    pub(crate) spec: UserSpecYaml,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct UserSpecYaml {
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) password_from_ref: Option<SecretRef>,
    #[serde(default)]
    pub(crate) access_keys: Vec<AccessKeyYaml>,
    #[serde(default)]
    pub(crate) deactivated: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) organization: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) about: Option<String>,
    #[serde(default, rename = "restrictByIP")]
    pub(crate) restrict_by_ip: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AccessKeyYaml {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) password_from_ref: Option<SecretRef>,
    #[serde(default)]
    pub(crate) objects: Vec<ObjectYaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectYaml {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecretManifest {
    #[allow(dead_code)]
    pub(crate) api_version: String,
    #[allow(dead_code)]
    pub(crate) kind: String,
    pub(crate) metadata: Metadata,
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    pub(crate) kind_of_secret: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) immutable: Option<bool>,
    /// Read as written, not base64-decoded (backup-repository's behaviour, see its docs).
    #[serde(default)]
    pub(crate) data: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) string_data: BTreeMap<String, String>,
}
