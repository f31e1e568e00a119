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

mod model;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{CollectionId, CollectionSpec};

use crate::directory::{CollectionPolicy, PolicySet};
use crate::error::{Error, Result};
use crate::identity::User;
use yaml::{load_collection, load_secrets, load_user, stem};

/// The API group of backup-repository's kinds.
pub const API_GROUP: &str = "backups.riotkit.org";

/// Versions of the API group read.
pub const API_VERSIONS: [&str; 2] = ["v1alpha1", "v1"];

/// The largest manifest file read, in bytes.
pub const MAX_FILE: u64 = 1 << 20;

/// A collection as its manifest defines it: the core's spec and the policy part.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionDefinition {
    /// The id (`metadata.name`).
    pub id: CollectionId,
    /// For the engine.
    pub spec: CollectionSpec,
    /// For the authorizer.
    pub policy: CollectionPolicy,
    /// The file it came from.
    pub file: PathBuf,
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
    ) -> Result<Vec<backup_core::protocol::CollectionChange>> {
        let mut changes = Vec::with_capacity(self.collections.len());
        for c in &self.collections {
            let origin = c.file.display().to_string();
            match engine.declare_collection(&c.id, c.spec.clone(), &origin).await {
                Ok(change) => changes.push(change),
                Err(backup_core::Error::InvalidSpec { field, reason }) => {
                    return Err(Error::Manifest { file: c.file.clone(), field: manifest_field(field), reason });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(changes)
    }
}

/// Collects every error of a load, so one run reports them all.
#[derive(Debug, Default)]
struct Errors(Vec<Error>);

impl Errors {
    fn at(&mut self, file: &Path, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Error::Manifest { file: file.to_owned(), field: field.into(), reason: reason.into() });
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

/// One manifest file's text, for [`load_documents`].
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
    load_into(&documents, errors)
}

/// Validates manifests given as text (for tests, fuzzing, or another source than folders).
///
/// # Errors
/// As [`load`].
pub fn load_documents(documents: &[Document]) -> Result<Manifests> {
    load_into(documents, Errors::default())
}

fn read_text(file: &Path) -> std::io::Result<String> {
    if std::fs::metadata(file)?.len() > MAX_FILE {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE} bytes")));
    }
    std::fs::read_to_string(file)
}

fn load_into(documents: &[Document], mut errors: Errors) -> Result<Manifests> {
    let of = |kind| documents.iter().filter(move |d| d.kind == kind);
    let secrets = load_secrets(of(DocumentKind::Secret), &mut errors);
    let mut users: BTreeMap<String, User> = BTreeMap::new();
    let mut user_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for doc in of(DocumentKind::User) {
        if let Some(u) = load_user(doc, &secrets, &mut errors) {
            if users.contains_key(&u.name) {
                errors.at(&doc.file, "metadata.name", format!("user {} is defined twice", u.name));
            } else {
                user_files.insert(u.name.clone(), doc.file.clone());
                users.insert(u.name.clone(), u);
            }
        }
    }
    // Every collection a file defines, valid or not: a broken collection is reported once, not
    // again by each access key that names it.
    let defined: Vec<String> = of(DocumentKind::Collection).map(|d| stem(&d.file)).collect();
    let mut collections: BTreeMap<CollectionId, CollectionDefinition> = BTreeMap::new();
    for doc in of(DocumentKind::Collection) {
        if let Some(c) = load_collection(doc, &secrets, &users, &mut errors) {
            if collections.contains_key(&c.id) {
                errors.at(&doc.file, "metadata.name", format!("collection {} is defined twice", c.id));
            } else {
                collections.insert(c.id.clone(), c);
            }
        }
    }
    // Access keys may only name collections that exist.
    for u in users.values() {
        for (i, k) in u.access_keys.iter().enumerate() {
            for (j, o) in k.objects.iter().enumerate() {
                if !defined.contains(&o.name) {
                    errors.at(
                        &user_files[&u.name],
                        format!("spec.accessKeys[{i}].objects[{j}].name"),
                        format!("no collection named {:?}", o.name),
                    );
                }
            }
        }
    }
    match errors.0.len() {
        0 => Ok(Manifests { collections: collections.into_values().collect(), users: users.into_values().collect() }),
        1 => Err(errors.0.remove(0)),
        _ => Err(Error::invalid("manifests", errors.0.iter().map(|e| format!("\n  {e}")).collect::<String>())),
    }
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

/// The manifest field behind a field of the core's spec.
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
