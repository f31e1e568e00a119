//! Users and collections given as values are what the same manifests give, decide alike, and
//! are refused where the manifests are, with the same file, field and reason.

use std::path::PathBuf;

use backup_core::{CollectionSpec, Limits, RetentionSpec};
use backup_policy::manifest::{CollectionDefinition, Definitions, Document, DocumentKind, Manifests, code_file};
use backup_policy::{
    AccessKey, Asker, Directory, Error, ObjectGrant, Permission, Role, StoredPassword, Subject, User, decide,
};

/// A user and a collection as manifests, with `password` (a PHC string) for the user and
/// for its access key.
fn as_text(password: &str) -> Definitions {
    Definitions::new().with_document(user_yaml(password)).with_document(collection_yaml(""))
}

fn user_yaml(password: &str) -> Document {
    document(
        DocumentKind::User,
        "ci",
        &format!(
            "apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: ci
spec:
    email: ci@example.org
    password: \"{password}\"
    roles: [userManager]
    restrictByIP: [10.0.0.0/8, 192.168.1.7]
    accessKeys:
        - name: pipeline
          password: \"{password}\"
          objects:
              - name: db
                type: collection
                roles: [backupUploader]
"
        ),
    )
}

/// The collection's manifest; `extra` goes at the end of its spec.
fn collection_yaml(extra: &str) -> Document {
    document(
        DocumentKind::Collection,
        "db",
        &format!(
            "apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: db
spec:
    description: The database
    filenameTemplate: db-${{version}}.sql.gz
    maxBackupsCount: 3
    maxOneVersionSize: 1M
    maxCollectionSize: 5M
    strategyName: fifo
    contentRule: none
    windows:
        - from: \"0 2 * * *\"
          duration: 1h
    timeZone: Europe/Warsaw
    accessControl:
        - name: ci
          type: user
          roles: [backupDownloader]
{extra}"
        ),
    )
}

fn document(kind: DocumentKind, name: &str, text: &str) -> Document {
    Document { file: code_file(kind, name), kind, text: text.to_owned() }
}

/// The same user and collection as values.
fn as_values(password: &StoredPassword) -> Definitions {
    Definitions::new().with_user(user(password)).with_collection(collection())
}

fn user(password: &StoredPassword) -> User {
    User::new("ci", password.clone())
        .with_email("ci@example.org")
        .with_roles([Role::UserManager])
        .with_restrict_by_ip(["10.0.0.0/8".parse().unwrap(), "192.168.1.7/32".parse().unwrap()])
        .with_access_key(AccessKey::new("pipeline", password.clone()).with_collection("db", [Role::BackupUploader]))
}

fn collection() -> CollectionDefinition {
    let spec = CollectionSpec::new("db-${version}.sql.gz", Limits::new(3, 1 << 20, 5 << 20).unwrap())
        .with_description("The database")
        .with_retention(RetentionSpec::named("fifo"));
    CollectionDefinition::new("db".parse().unwrap(), spec)
        .with_window(backup_policy::BackupWindow::parse("0 2 * * *", "1h", Some("Europe/Warsaw")).unwrap())
        .with_acl("ci", [Role::BackupDownloader])
}

fn hashed() -> (StoredPassword, String) {
    let password = StoredPassword::hash(b"a password").unwrap();
    let phc = password.to_phc().unwrap();
    (password, phc)
}

#[test]
fn values_load_as_their_manifests_do() {
    let (password, phc) = hashed();
    let text = as_text(&phc).load().unwrap();
    let values = as_values(&password).load().unwrap();
    assert_eq!(values.users, text.users);
    assert_eq!(values.collections, text.collections, "the same spec, policy and file");
    assert_eq!(values.collections[0].file, PathBuf::from("<code>/backupcollections/db.yaml"));
}

/// Every permission, for the user and for its access key, globally and on the collection.
fn decisions(m: &Manifests) -> Vec<Result<(), String>> {
    let set = m.policy_set();
    let user = &set.users["ci"];
    let db = &set.collections[&"db".parse().unwrap()];
    let subject = Subject { kind: "collection", name: "db", acl: &db.acl };
    let mut out = Vec::new();
    for access_key in [None, user.access_key("pipeline")] {
        let asker = Asker { user, access_key, scope: None };
        for permission in Permission::ALL {
            out.push(decide(&asker, None, permission));
            out.push(decide(&asker, Some(&subject), permission));
        }
    }
    out
}

#[tokio::test]
async fn values_decide_and_log_in_as_their_manifests_do() {
    let (password, phc) = hashed();
    let text = as_text(&phc).load().unwrap();
    let values = as_values(&password).load().unwrap();
    let decided = decisions(&values);
    assert_eq!(decided, decisions(&text));
    assert!(decided.iter().any(Result::is_ok) && decided.iter().any(Result::is_err), "{decided:?}");
    let when = chrono::DateTime::parse_from_rfc3339("2026-03-02T02:30:00+01:00").unwrap().to_utc();
    assert_eq!(
        backup_policy::any_open(&values.collections[0].policy.windows, when),
        backup_policy::any_open(&text.collections[0].policy.windows, when)
    );
    for m in [&values, &text] {
        let directory = Directory::new(m.policy_set());
        let inside = Some("10.1.2.3".parse().unwrap());
        let who = directory.authenticate(&"ci$pipeline".parse().unwrap(), "a password", inside).await.unwrap();
        assert_eq!(who.access_key.as_deref(), Some("pipeline"));
        let outside = Some("192.168.1.8".parse().unwrap());
        let e = directory.authenticate(&"ci".parse().unwrap(), "a password", outside).await.unwrap_err();
        assert_eq!(e.kind(), backup_policy::ErrorKind::PermissionDenied, "{e}");
    }
}

#[test]
fn values_and_manifests_name_each_other() {
    let (password, phc) = hashed();
    // A collection as text whose ACL names a user given as a value, whose key names it back.
    let m = Definitions::new().with_user(user(&password)).with_document(collection_yaml("")).load().unwrap();
    assert_eq!((m.users.len(), m.collections.len()), (1, 1));
    let m = Definitions::new().with_document(user_yaml(&phc)).with_collection(collection()).load().unwrap();
    assert_eq!(m.collections[0].policy.acl[0].user, "ci");
    // The same user both ways is defined twice.
    let e = as_text(&phc).with_user(user(&password)).load().unwrap_err();
    assert_eq!(e.to_string(), "<code>/backupusers/ci.yaml: metadata.name: user ci is defined twice");
    // Loading again gives the same.
    let definitions = as_values(&password);
    assert_eq!(definitions.load().unwrap().users, definitions.load().unwrap().users);
}

/// The one error of `definitions`.
fn refusal(definitions: &Definitions) -> (PathBuf, String, String) {
    match definitions.load() {
        Err(Error::Manifest { file, field, reason }) => (file, field, reason),
        Err(other) => panic!("more than one error: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn a_bad_value_is_refused_as_its_manifest_is() {
    let (password, phc) = hashed();
    let key = |name: &str| AccessKey::new(name, password.clone()).with_collection("db", [Role::BackupUploader]);
    let with_user = |u: User| Definitions::new().with_user(u).with_collection(collection());
    let with_user_text = |from: &str, to: &str| {
        let mut u = user_yaml(&phc);
        assert!(u.text.contains(from), "{from}");
        u.text = u.text.replacen(from, to, 1);
        Definitions::new().with_document(u).with_collection(collection())
    };
    // A user whose name is refused, alone (a collection naming it would be refused too).
    let alone = |name: &str| Definitions::new().with_user(User { name: name.into(), ..user(&password) });
    let alone_text = |yaml_name: &str, name: &str| {
        let mut u = user_yaml(&phc);
        u.text = u.text.replacen("name: ci", &format!("name: {yaml_name}"), 1);
        u.file = code_file(DocumentKind::User, name);
        Definitions::new().with_document(u)
    };
    let with_collection = |edit: &dyn Fn(CollectionDefinition) -> CollectionDefinition| {
        Definitions::new().with_user(user(&password)).with_collection(edit(collection()))
    };
    let with_collection_text = |from: &str, to: &str| {
        let mut c = collection_yaml("");
        assert!(c.text.contains(from), "{from}");
        c.text = c.text.replacen(from, to, 1);
        Definitions::new().with_user(user(&password)).with_document(c)
    };
    let grant = |kind: &str, name: &str| ObjectGrant { kind: kind.into(), name: name.into(), roles: vec![] };
    let cases: Vec<(&str, Definitions, Definitions, &str, &str)> = vec![
        (
            "a user name with '$'",
            alone("c$i"),
            alone_text("c$i", "c$i"),
            "metadata.name",
            "a user name must be non-empty",
        ),
        (
            "a user name with a line break",
            alone("ci\n    roles: [systemAdmin]"),
            alone_text("\"ci\\n    roles: [systemAdmin]\"", "ci\n    roles: [systemAdmin]"),
            "metadata.name",
            "without '$' or control characters",
        ),
        (
            "an access key without a name",
            with_user(User { access_keys: vec![key("")], ..user(&password) }),
            with_user_text("- name: pipeline", "- name: \"\""),
            "spec.accessKeys[0].name",
            "an access key name must be non-empty",
        ),
        (
            "an access key twice",
            with_user(user(&password).with_access_key(key("pipeline"))),
            with_user_text(
                "    accessKeys:\n",
                &format!(
                    "    accessKeys:\n        - name: pipeline\n          password: \"{phc}\"\n          objects: []\n"
                ),
            ),
            "spec.accessKeys[1].name",
            "access key \"pipeline\" is defined twice",
        ),
        (
            "an access key on another kind of object",
            with_user(User {
                access_keys: vec![AccessKey { objects: vec![grant("group", "db")], ..key("pipeline") }],
                ..user(&password)
            }),
            with_user_text("type: collection", "type: group"),
            "spec.accessKeys[0].objects[0].type",
            "\"group\" is not \"collection\"",
        ),
        (
            "an access key on a collection that does not exist",
            with_user(User {
                access_keys: vec![AccessKey::new("pipeline", password.clone()).with_collection("nb", [])],
                ..user(&password)
            }),
            with_user_text("- name: db", "- name: nb"),
            "spec.accessKeys[0].objects[0].name",
            "no collection named \"nb\"",
        ),
        (
            "an ACL naming nobody",
            with_collection(&|mut c| {
                c.policy.acl.clear();
                c.with_acl("nobody", [])
            }),
            with_collection_text("- name: ci", "- name: nobody"),
            "spec.accessControl[0].name",
            "no user named \"nobody\"",
        ),
        (
            "an ACL entry without a user",
            with_collection(&|mut c| {
                c.policy.acl.clear();
                c.with_acl("", [])
            }),
            with_collection_text("- name: ci\n          type: user\n", "- type: user\n"),
            "spec.accessControl[0].name",
            "the user is missing",
        ),
        (
            "no version kept",
            with_collection(&|mut c| {
                c.spec.limits.max_versions = 0;
                c
            }),
            with_collection_text("maxBackupsCount: 3", "maxBackupsCount: 0"),
            "spec.maxBackupsCount",
            "must be at least 1",
        ),
        (
            "negative extra space",
            with_collection(&|mut c| {
                c.spec.limits.max_collection_size = 2 << 20;
                c
            }),
            with_collection_text("maxCollectionSize: 5M", "maxCollectionSize: 2M"),
            "spec.maxCollectionSize",
            "the extra space would be negative",
        ),
        (
            "a template without ${version}",
            with_collection(&|c| CollectionDefinition {
                spec: CollectionSpec::new("db.sql.gz", c.spec.limits).with_description("The database"),
                ..c
            }),
            with_collection_text("db-${version}.sql.gz", "db.sql.gz"),
            "spec.filenameTemplate",
            "must contain ${version}",
        ),
        (
            "an unknown strategy",
            with_collection(&|mut c| {
                c.spec.retention = RetentionSpec::named("lifo");
                c
            }),
            with_collection_text("strategyName: fifo", "strategyName: lifo"),
            "spec.strategyName",
            "unknown strategy \"lifo\"",
        ),
        (
            "an unknown content rule",
            with_collection(&|mut c| {
                c.spec.content_rule = Some("pdf".into());
                c
            }),
            with_collection_text("contentRule: none", "contentRule: pdf"),
            "spec.contentRule",
            "\"pdf\" is not openpgp or none",
        ),
        (
            "as many held versions as kept ones",
            with_collection(&|mut c| {
                c.spec = c.spec.with_max_held_versions(3);
                c
            }),
            with_collection_text("contentRule: none", "contentRule: none\n    maxHeldVersions: 3"),
            "spec.maxHeldVersions",
            "must be under max_versions = 3",
        ),
    ];
    for (case, values, text, field, reason) in cases {
        let (value_file, value_field, value_reason) = refusal(&values);
        assert_eq!(value_field, field, "{case}: {value_reason}");
        assert!(value_reason.contains(reason), "{case}: {value_reason}");
        let (text_file, text_field, text_reason) = refusal(&text);
        assert_eq!(
            (&value_file, &value_field, &value_reason),
            (&text_file, &text_field, &text_reason),
            "{case}: a value and its manifest are refused alike"
        );
    }
}
