//! Configuration as code: backup-repository's manifests (`BackupCollection`, `BackupUser`,
//! `Secret`) read from its filesystem layout, validated when loaded with the file and field
//! named.
//!
//! The layout is backup-repository's filesystem provider's:
//!
//! ```text
//! <root>/<namespace>/backups.riotkit.org/v1alpha1/backupcollections/<name>.yaml
//! <root>/<namespace>/backups.riotkit.org/v1alpha1/backupusers/<name>.yaml
//! <root>/<namespace>/v1/secrets/<name>.yaml
//! ```
//!
//! (`backups.riotkit.org/v1/…` is read as well.) Secret values are used as written (not
//! base64-decoded), as backup-repository does: a password entry holds the output of
//! `--encode-password`, a health secret the hex SHA-256 of the code.
//!
//! Beyond backup-repository, these are refused at load instead of failing at upload time or
//! silently: an unknown strategy, negative extra space, a template without `${version}`, an
//! invalid crontab or duration, an unknown role, a secret reference that does not resolve, an
//! ACL or access key naming a user or collection that does not exist. Optional fields of
//! ours: `spec.timeZone` (windows), `spec.contentRule` (`openpgp`, the default, or `none`),
//! `spec.digest` (`blake3` or `sha256`).
//!
//! Code can give the same as values instead of text: [`Definitions`] takes
//! [`crate::User`]s and [`CollectionDefinition`]s built with their constructors, mixed with
//! manifests as text if need be, and checks them with the same rules: a value a manifest
//! could not say is refused with the manifest's field and reason, the file being the one its
//! manifest would have under `<code>/` ([`code_file`]).

mod definitions;
mod model;
mod names;
mod yaml;

use std::path::{Path, PathBuf};

use backup_core::{CollectionId, CollectionSpec};

use crate::directory::{CollectionPolicy, PolicySet};
use crate::error::{Error, Result};
use crate::identity::{AclEntry, User};
use crate::role::Role;
use crate::window::BackupWindow;

pub use definitions::Definitions;

/// The API group of backup-repository's kinds.
pub const API_GROUP: &str = "backups.riotkit.org";

/// Versions of the API group read.
pub const API_VERSIONS: [&str; 2] = ["v1alpha1", "v1"];

/// The largest manifest file read, in bytes.
pub const MAX_FILE: u64 = 1 << 20;

/// A collection as its manifest defines it: the core's spec and the policy part.
///
/// Built as a value with [`CollectionDefinition::new`] and the `with_*` setters, it is
/// checked by [`Definitions::load`] as its manifest would be.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionDefinition {
    /// The id (`metadata.name`).
    pub id: CollectionId,
    /// For the engine.
    pub spec: CollectionSpec,
    /// For the authorizer.
    pub policy: CollectionPolicy,
    /// The file it came from: named in errors, and the origin of the engine's audit event
    /// when it is declared.
    pub file: PathBuf,
    /// Where its events go (`spec.notify`).
    pub notify: Vec<NotifyRule>,
    /// The replicas only this collection's versions are copied to (`spec.replicas`), beside
    /// the server's own.
    pub replicas: Vec<ReplicaRule>,
}

/// One entry of a collection's `spec.replicas`: another store that receives a copy of each of
/// its versions (see `backup_core::replica`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaRule {
    /// Its name (collections naming the same replica must give the same URL).
    pub name: String,
    /// The store's URL (`file:///…`, `s3://…`, `az://…`, `gs://…`); credentials from the
    /// environment or the URL's query.
    pub url: String,
    /// How long a version purged from the primary stays there (`deleteAfter`); the trash
    /// retention when absent.
    pub delete_after: Option<std::time::Duration>,
}

/// One entry of a collection's `spec.notify`: where its events go, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyRule {
    /// How.
    pub channel: NotifyChannel,
    /// The actions sent (`alerts` stands for every alert): `[alerts]` unless the manifest
    /// says otherwise.
    pub events: Vec<String>,
}

/// A webhook or an e-mail address.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyChannel {
    /// One signed POST per event.
    Webhook {
        /// Its http(s) URL.
        url: String,
        /// The signing secret (`secretFrom`), if any.
        secret: Option<String>,
    },
    /// One message per event, through the server's SMTP.
    Email {
        /// The recipient.
        to: String,
    },
}

impl std::fmt::Debug for NotifyChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyChannel::Webhook { url, secret } => {
                f.debug_struct("Webhook").field("url", url).field("signed", &secret.is_some()).finish()
            }
            NotifyChannel::Email { to } => f.debug_struct("Email").field("to", to).finish(),
        }
    }
}

impl CollectionDefinition {
    /// A collection given as a value: `spec` for the engine as it is (unlike a manifest's,
    /// it has a content rule only when it names one, as
    /// `spec.with_content_rule(OpenPgpRule::NAME)`), uploads at any time, no one on its ACL,
    /// no health code, and [`code_file`] as its file.
    pub fn new(id: CollectionId, spec: CollectionSpec) -> Self {
        let file = code_file(DocumentKind::Collection, id.as_str());
        CollectionDefinition {
            id,
            spec,
            policy: CollectionPolicy::default(),
            file,
            notify: Vec::new(),
            replicas: Vec::new(),
        }
    }

    /// Gives `user` these roles on the collection (`spec.accessControl`).
    pub fn with_acl(mut self, user: impl Into<String>, roles: impl IntoIterator<Item = Role>) -> Self {
        self.policy.acl.push(AclEntry { user: user.into(), roles: roles.into_iter().collect() });
        self
    }

    /// Adds a backup window (`spec.windows`): once a collection has one, uploads outside all
    /// of them need `uploadsAnytime`.
    pub fn with_window(mut self, window: BackupWindow) -> Self {
        self.policy.windows.push(window);
        self
    }

    /// Opens the collection's health endpoint to the code whose SHA-256 this is
    /// (`spec.healthSecretRef`).
    pub fn with_health_code_sha256(mut self, digest: [u8; 32]) -> Self {
        self.policy.health_code_sha256 = Some(digest);
        self
    }

    /// Names another file as its origin, in errors and audit events.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = file.into();
        self
    }
}

/// Everything loaded from a namespace.
#[derive(Debug, Clone)]
pub struct Manifests {
    /// Collections, ordered by id.
    pub collections: Vec<CollectionDefinition>,
    /// Users, ordered by name.
    pub users: Vec<User>,
}

impl Manifests {
    /// The users and policies, for a [`crate::Directory`].
    pub fn policy_set(&self) -> PolicySet {
        PolicySet {
            users: self.users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
            collections: self.collections.iter().map(|c| (c.id.clone(), c.policy.clone())).collect(),
        }
    }

    /// Declares every collection of the manifests in `engine` through
    /// [`backup_core::Engine::declare_collection`]: created if missing, updated if its spec
    /// changed, audited with its file as the origin. Collections the manifests no longer name
    /// are kept (they hold backups).
    ///
    /// # Errors
    /// The first collection the engine refuses, with its file named.
    pub async fn declare_collections(
        &self,
        engine: &backup_core::Engine,
    ) -> Result<Vec<backup_core::catalog::protocol::CollectionChange>> {
        self.check_collections(engine).await?;
        let mut changes = Vec::with_capacity(self.collections.len());
        for c in &self.collections {
            let origin = c.file.display().to_string();
            match engine.declare_collection(&c.id, c.spec.clone(), &origin).await {
                Ok(change) => changes.push(change),
                Err(e @ backup_core::Error::InvalidSpec { .. }) => return Err(spec_error(&c.file, e)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(changes)
    }
}

impl Manifests {
    /// Whether the engine would accept every collection as these manifests declare it, without
    /// changing anything: a reload applies all of them or none, so one that would weaken a
    /// compliance lock policy stops the whole reload and the running configuration stays.
    ///
    /// # Errors
    /// [`Error::Manifest`] naming the file and field of the first collection refused; catalog
    /// errors.
    pub async fn check_collections(&self, engine: &backup_core::Engine) -> Result<()> {
        let mut first = None;
        for c in &self.collections {
            match engine.check_declaration(&c.id, &c.spec).await {
                Ok(()) => {}
                Err(e @ backup_core::Error::InvalidSpec { .. }) => {
                    first.get_or_insert(spec_error(&c.file, e));
                }
                Err(e @ backup_core::Error::Locked { .. }) => {
                    first.get_or_insert(Error::Manifest {
                        file: c.file.clone(),
                        field: "spec.lock".to_owned(),
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Collects every error of a load, so one run reports them all.
#[derive(Debug, Default)]
struct Errors(Vec<Error>);

impl Errors {
    fn at(&mut self, file: &Path, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Error::Manifest { file: file.to_owned(), field: field.into(), reason: reason.into() });
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// What a manifest file defines, by the folder it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// `…/backupcollections/`.
    Collection,
    /// `…/backupusers/`.
    User,
    /// `…/v1/secrets/`.
    Secret,
}

/// The file a user or collection given by code says it comes from, in errors and audit
/// events: the one its manifest would have, under `<code>/`
/// (`<code>/backupusers/alice.yaml`, `<code>/backupcollections/db.yaml`,
/// `<code>/secrets/passwords.yaml`).
pub fn code_file(kind: DocumentKind, name: &str) -> PathBuf {
    let folder = match kind {
        DocumentKind::User => "backupusers",
        DocumentKind::Collection => "backupcollections",
        DocumentKind::Secret => "secrets",
    };
    PathBuf::from(format!("<code>/{folder}/{name}.yaml"))
}

/// One manifest file's text, for [`load_documents`] and [`Definitions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its path (named in errors; its stem must equal `metadata.name`).
    pub file: PathBuf,
    /// What its folder says it defines.
    pub kind: DocumentKind,
    /// The YAML.
    pub text: String,
}

/// Loads and validates every manifest of `namespace` under `root`.
///
/// ```
/// use std::path::Path;
///
/// let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server/config");
/// let loaded = backup_policy::manifest::load(&root, "backup-repository")?;
/// assert_eq!(loaded.collections[0].id.as_str(), "iwa-ait");
/// assert_eq!(loaded.users.len(), 3);
/// # Ok::<(), backup_policy::Error>(())
/// ```
///
/// # Errors
/// [`Error::Manifest`] for the first problem, naming file, field and reason; when there are
/// several, [`backup_core::Error::InvalidInput`] listing them all, one a line.
pub fn load(root: &Path, namespace: &str) -> Result<Manifests> {
    let base = root.join(namespace);
    if !base.is_dir() {
        return Err(Error::Manifest { file: base, field: String::new(), reason: "no such folder".into() });
    }
    let mut errors = Errors::default();
    let mut folders = vec![(base.join("v1/secrets"), DocumentKind::Secret)];
    for version in API_VERSIONS {
        let group = base.join(API_GROUP).join(version);
        folders.push((group.join("backupusers"), DocumentKind::User));
        folders.push((group.join("backupcollections"), DocumentKind::Collection));
    }
    let mut documents = Vec::new();
    for (folder, kind) in folders {
        for file in yaml_files(&folder, &mut errors) {
            match read_text(&file) {
                Ok(text) => documents.push(Document { file, kind, text }),
                Err(e) => errors.at(&file, "", format!("cannot read: {e}")),
            }
        }
    }
    definitions::assemble(&documents, &[], &[], errors)
}

/// Validates manifests given as text (for tests, fuzzing, or another source than folders);
/// [`Definitions`] takes values as well.
///
/// # Errors
/// As [`load`].
pub fn load_documents(documents: &[Document]) -> Result<Manifests> {
    definitions::assemble(documents, &[], &[], Errors::default())
}

fn read_text(file: &Path) -> std::io::Result<String> {
    if std::fs::metadata(file)?.len() > MAX_FILE {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE} bytes")));
    }
    std::fs::read_to_string(file)
}

/// The `.yaml`/`.yml` files of a folder, sorted; a missing folder has none.
fn yaml_files(dir: &Path, errors: &mut Errors) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.at(dir, "", format!("cannot read the folder: {e}"));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

/// Core's refusal of a collection's spec ([`backup_core::Error::InvalidSpec`]) as the
/// refusal of its manifest in `file`, with the field as the manifest names it
/// (`limits.max_versions` is `spec.maxBackupsCount`); any other error of core is reported
/// for `spec` as a whole. For code that builds a spec, or its [`backup_core::Limits`], from
/// a manifest's values.
///
/// ```
/// use std::path::Path;
///
/// let e = backup_core::Limits::new(0, 1 << 20, 5 << 20).unwrap_err();
/// let e = backup_policy::manifest::spec_error(Path::new("<code>/backupcollections/db.yaml"), e);
/// assert_eq!(e.to_string(), "<code>/backupcollections/db.yaml: spec.maxBackupsCount: must be at least 1");
/// ```
pub fn spec_error(file: &Path, e: backup_core::Error) -> Error {
    let (field, reason) = match e {
        backup_core::Error::InvalidSpec { field, reason } => (manifest_field(field), reason),
        other => ("spec".to_owned(), other.to_string()),
    };
    Error::Manifest { file: file.to_owned(), field, reason }
}

/// The manifest field of a spec field core names; an unknown one is shown as core names it.
fn manifest_field(core: &str) -> String {
    match core {
        "filename_template" => "spec.filenameTemplate",
        "limits.max_versions" => "spec.maxBackupsCount",
        "limits.max_version_size" => "spec.maxOneVersionSize",
        "limits.max_collection_size" => "spec.maxCollectionSize",
        "limits" => "spec.maxBackupsCount × spec.maxOneVersionSize",
        "description" => "spec.description",
        "content_rule" => "spec.contentRule",
        "retention.strategy" => "spec.strategyName",
        "retention.options" => "spec.strategySpec",
        "retention.min_keep" => "spec.strategySpec.minKeep",
        "max_held_versions" => "spec.maxHeldVersions",
        "digest" => "spec.digest",
        other => return format!("spec ({other})"),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::manifest_field;

    #[test]
    fn every_spec_field_has_its_manifest_name_and_none_is_misnamed() {
        assert_eq!(manifest_field("limits.max_collection_size"), "spec.maxCollectionSize");
        assert_eq!(manifest_field("retention.options"), "spec.strategySpec");
        assert_eq!(manifest_field("content_rule"), "spec.contentRule");
        assert_eq!(manifest_field("something.new"), "spec (something.new)", "an unknown field keeps its own name");
    }
}
