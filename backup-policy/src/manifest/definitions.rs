//! [`Definitions`]: users and collections given as values, next to manifests given as text,
//! and the rules every one of them passes however it was given.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use backup_core::CollectionId;
use backup_core::rotation::RotationStrategies;

use super::names::{access_key_refusal, user_name_refusal};
use super::yaml::{load_collection, load_secrets, load_user, stem};
use super::{CollectionDefinition, Document, DocumentKind, Errors, Manifests, code_file, spec_error};
use crate::error::Result;
use crate::identity::{AccessKey, COLLECTION, User};
use crate::openpgp::OpenPgpRule;
use crate::role::Role;

/// What defines the users and collections, before it is checked: manifests as text
/// ([`Document`]s) and users and collections as values, in any mix (an ACL of a collection
/// given as text may name a user given as a value, and the other way round).
///
/// [`Definitions::load`] checks them all with one set of rules, so a value is refused where
/// its manifest would be, with the same message: the file named is the one its manifest
/// would have under `<code>/` ([`code_file`]), the field is the manifest's.
///
/// ```
/// use backup_core::{CollectionSpec, Limits};
/// use backup_policy::manifest::{CollectionDefinition, Definitions};
/// use backup_policy::{AccessKey, Directory, Permission, Role, StoredPassword, User, roles_allow};
///
/// let definitions = Definitions::new()
///     .with_user(User::new("admin", StoredPassword::hash(b"a password")?).with_roles([Role::SystemAdmin]))
///     .with_user(User::new("ci", StoredPassword::Disabled).with_access_key(
///         AccessKey::new("pipeline", StoredPassword::hash(b"a key password")?)
///             .with_collection("db", [Role::BackupUploader]),
///     ))
///     .with_collection(
///         CollectionDefinition::new("db".parse()?, CollectionSpec::new("db-${version}.sql.gz", Limits::new(3, 1 << 20, 5 << 20)?))
///             .with_acl("ci", [Role::BackupDownloader]),
///     );
/// let manifests = definitions.load()?;
/// let directory = Directory::new(manifests.policy_set());
/// let ci = &directory.snapshot().users["ci"];
/// assert!(roles_allow(&ci.access_key("pipeline").unwrap().roles_on("collection", "db"), Permission::Upload));
///
/// // What a manifest may not say, a value may not either.
/// let e = Definitions::new()
///     .with_user(User::new("ci", StoredPassword::Disabled).with_access_key(
///         AccessKey::new("pipeline", StoredPassword::Disabled).with_collection("nb", [Role::BackupUploader]),
///     ))
///     .load()
///     .unwrap_err();
/// assert_eq!(
///     e.to_string(),
///     "<code>/backupusers/ci.yaml: spec.accessKeys[0].objects[0].name: no collection named \"nb\""
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Definitions {
    /// Manifests as text.
    pub documents: Vec<Document>,
    /// Users as values (each stands for a `BackupUser` manifest).
    pub users: Vec<User>,
    /// Collections as values (each stands for a `BackupCollection` manifest).
    pub collections: Vec<CollectionDefinition>,
}

impl Definitions {
    /// Nothing defined yet.
    pub fn new() -> Self {
        Definitions::default()
    }

    /// Adds a manifest as text.
    pub fn with_document(mut self, document: Document) -> Self {
        self.documents.push(document);
        self
    }

    /// Adds a user: a `BackupUser` manifest as a value.
    pub fn with_user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Adds a collection: a `BackupCollection` manifest as a value.
    pub fn with_collection(mut self, collection: CollectionDefinition) -> Self {
        self.collections.push(collection);
        self
    }

    /// Checks everything and returns the users and collections; the same definitions give
    /// the same result every time (a reload of values changes nothing).
    ///
    /// # Errors
    /// As [`super::load`]: [`crate::Error::Manifest`] for the first problem, naming file,
    /// field and reason; when there are several, [`backup_core::Error::InvalidInput`] listing
    /// them all, one a line.
    pub fn load(&self) -> Result<Manifests> {
        assemble(&self.documents, &self.users, &self.collections, Errors::default())
    }
}

/// Checks manifests and values together: each one alone, then what they say of each other
/// (names defined twice, ACLs naming users, access keys naming collections). `errors` holds
/// what was found before (files that could not be read).
pub(super) fn assemble(
    documents: &[Document],
    users: &[User],
    collections: &[CollectionDefinition],
    mut errors: Errors,
) -> Result<Manifests> {
    let of = |kind| documents.iter().filter(move |d| d.kind == kind);
    let secrets = load_secrets(of(DocumentKind::Secret), &mut errors);
    let mut given: Vec<(PathBuf, User)> = Vec::new();
    for doc in of(DocumentKind::User) {
        if let Some(u) = load_user(doc, &secrets, &mut errors) {
            given.push((doc.file.clone(), u));
        }
    }
    given.extend(users.iter().map(|u| (code_file(DocumentKind::User, &u.name), u.clone())));
    let mut checked_users: BTreeMap<String, User> = BTreeMap::new();
    let mut references = Vec::new();
    for (file, u) in given {
        let Some((u, refs)) = check_user(&file, u, &mut errors) else { continue };
        if checked_users.contains_key(&u.name) {
            errors.at(&file, "metadata.name", format!("user {} is defined twice", u.name));
            continue;
        }
        references.extend(refs);
        checked_users.insert(u.name.clone(), u);
    }
    // Every collection defined, valid or not: a broken collection is reported once, not
    // again by each access key that names it.
    let defined: BTreeSet<String> = of(DocumentKind::Collection)
        .map(|d| stem(&d.file))
        .chain(collections.iter().map(|c| c.id.as_str().to_owned()))
        .collect();
    let mut checked_collections: BTreeMap<CollectionId, CollectionDefinition> = BTreeMap::new();
    let mut add = |c: CollectionDefinition, errors: &mut Errors| {
        if checked_collections.contains_key(&c.id) {
            errors.at(&c.file, "metadata.name", format!("collection {} is defined twice", c.id));
        } else {
            checked_collections.insert(c.id.clone(), c);
        }
    };
    for doc in of(DocumentKind::Collection) {
        let before = errors.0.len();
        if let Some(c) = load_collection(doc, &secrets, &mut errors)
            && let Some(c) = check_collection(c, &checked_users, &mut errors)
            && errors.0.len() == before
        {
            add(c, &mut errors);
        }
    }
    for c in collections {
        if let Some(c) = check_collection(c.clone(), &checked_users, &mut errors) {
            add(c, &mut errors);
        }
    }
    for r in references {
        if !defined.contains(&r.collection) {
            errors.at(&r.file, r.field, format!("no collection named {:?}", r.collection));
        }
    }
    match errors.0.len() {
        0 => Ok(Manifests {
            collections: checked_collections.into_values().collect(),
            users: checked_users.into_values().collect(),
        }),
        1 => Err(errors.0.remove(0)),
        _ => Err(crate::Error::invalid("manifests", errors.0.iter().map(|e| format!("\n  {e}")).collect::<String>())),
    }
}

/// An access key's grant on a collection, checked once every collection is known.
#[derive(Debug)]
struct Reference {
    file: PathBuf,
    field: String,
    collection: String,
}

/// The rules of a user, however it was given: its name, its access keys' names, the kinds of
/// their objects. Roles given twice count once. Returns the user as it holds (refused keys
/// and objects left out) and the collections its keys name.
fn check_user(file: &Path, mut user: User, errors: &mut Errors) -> Option<(User, Vec<Reference>)> {
    if let Some(reason) = user_name_refusal(&user.name) {
        errors.at(file, "metadata.name", reason);
        return None;
    }
    dedup(&mut user.roles);
    let mut keys: Vec<AccessKey> = Vec::new();
    let mut references = Vec::new();
    for (i, mut key) in std::mem::take(&mut user.access_keys).into_iter().enumerate() {
        let field = format!("spec.accessKeys[{i}]");
        if let Some(reason) = access_key_refusal(&key.name, &keys) {
            errors.at(file, format!("{field}.name"), reason);
            continue;
        }
        let mut objects = Vec::new();
        for (j, mut o) in std::mem::take(&mut key.objects).into_iter().enumerate() {
            if o.kind != COLLECTION {
                errors.at(file, format!("{field}.objects[{j}].type"), format!("{:?} is not \"collection\"", o.kind));
                continue;
            }
            dedup(&mut o.roles);
            references.push(Reference {
                file: file.to_owned(),
                field: format!("{field}.objects[{j}].name"),
                collection: o.name.clone(),
            });
            objects.push(o);
        }
        key.objects = objects;
        keys.push(key);
    }
    user.access_keys = keys;
    Some((user, references))
}

/// The rules of a collection, however it was given: the ACL names users of `users`, the
/// content rule is one the server knows, the spec passes the engine's checks with the
/// strategies a manifest can name. Roles given twice count once.
fn check_collection(
    mut c: CollectionDefinition,
    users: &BTreeMap<String, User>,
    errors: &mut Errors,
) -> Option<CollectionDefinition> {
    let before = errors.0.len();
    let file = c.file.clone();
    let mut acl = Vec::new();
    for (i, mut entry) in std::mem::take(&mut c.policy.acl).into_iter().enumerate() {
        let field = format!("spec.accessControl[{i}].name");
        if entry.user.is_empty() {
            errors.at(&file, field, "the user is missing (name, or userName)");
        } else if !users.contains_key(&entry.user) {
            errors.at(&file, field, format!("no user named {:?}", entry.user));
        } else {
            dedup(&mut entry.roles);
            acl.push(entry);
        }
    }
    c.policy.acl = acl;
    if let Some(rule) = c.spec.content_rule.as_deref().filter(|r| *r != OpenPgpRule::NAME) {
        errors.at(&file, "spec.contentRule", format!("{rule:?} is not openpgp or none"));
    }
    // The built-in strategies are the ones a manifest can name.
    if let Err(e) = c.spec.validate().and_then(|()| RotationStrategies::default().validate(&c.spec)) {
        errors.0.push(spec_error(&file, e));
    }
    (errors.0.len() == before).then_some(c)
}

/// Keeps the first of each role.
fn dedup(roles: &mut Vec<Role>) {
    let mut seen = Vec::with_capacity(roles.len());
    roles.retain(|r| {
        let new = !seen.contains(r);
        seen.push(*r);
        new
    });
}
