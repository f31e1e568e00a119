//! The manifests of backup-repository's examples load unchanged; every validation rule refuses
//! with the file and field named.

use std::path::{Path, PathBuf};

use backup_policy::manifest::{Manifests, load};
use backup_policy::{Error, Permission, Role, roles_allow};
use chrono::{TimeZone, Utc};

const NS: &str = "backup-repository";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server/config")
}

/// A copy of the examples in a temporary folder, to break one file at a time.
fn copy_examples() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&examples(), dir.path());
    dir
}

fn collection_file(root: &Path) -> PathBuf {
    root.join(NS).join("backups.riotkit.org/v1alpha1/backupcollections/iwa-ait.yaml")
}

fn user_file(root: &Path, name: &str) -> PathBuf {
    root.join(NS).join(format!("backups.riotkit.org/v1alpha1/backupusers/{name}.yaml"))
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

fn loaded() -> Manifests {
    load(&examples(), NS).unwrap()
}

#[test]
fn the_example_collection_loads_unchanged() {
    let m = loaded();
    assert_eq!(m.collections.len(), 1);
    let c = &m.collections[0];
    assert_eq!(c.id.as_str(), "iwa-ait");
    assert_eq!(c.spec.description, "IWA-AIT website files");
    assert_eq!(c.spec.filename_template.render(7), "iwa-ait-7.tar.gz");
    assert_eq!(
        (c.spec.limits.max_versions, c.spec.limits.max_version_size, c.spec.limits.max_collection_size),
        (5, 1 << 20, 10 << 20)
    );
    assert_eq!(c.spec.retention.strategy, "fifo");
    assert_eq!(c.spec.content_rule.as_deref(), Some("openpgp"), "backup-repository's GPG check is the default");
    assert_eq!(c.policy.windows.len(), 1);
    assert!(c.policy.windows[0].is_open(Utc.with_ymd_and_hms(2026, 1, 1, 1, 35, 0).unwrap()));
    // The secret holds sha256("admin").
    let sha_admin = hex::decode("8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918").unwrap();
    assert_eq!(c.policy.health_code_sha256.map(|d| d.to_vec()), Some(sha_admin));
    assert_eq!(c.policy.acl.len(), 1);
    assert_eq!(
        (c.policy.acl[0].user.as_str(), c.policy.acl[0].roles.as_slice()),
        ("admin", &[Role::CollectionManager][..])
    );
}

#[test]
fn the_example_users_load_unchanged() {
    let m = loaded();
    let names: Vec<&str> = m.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["admin", "some-user", "unprivileged"]);
    let admin = &m.users[0];
    assert_eq!(admin.email, "riotkit@riseup.net");
    // `usersManager` (the CRD's spelling) is read as userManager.
    assert_eq!(admin.roles, [Role::CollectionManager, Role::UserManager, Role::SystemAdmin]);
    assert!(admin.password.verify(b"admin"), "passwordFromRef wins over the inline placeholder");
    assert_eq!(admin.restrict_by_ip, ["1.2.3.4/32".parse().unwrap()]);
    let some = &m.users[1];
    assert!(some.password.verify(b"admin"));
    let key = some.access_key("uploader").unwrap();
    assert!(key.password.verify(b"test"));
    assert_eq!(key.roles_on("collection", "iwa-ait"), [Role::BackupUploader]);
    assert!(roles_allow(&key.roles_on("collection", "iwa-ait"), Permission::Upload));
    assert!(m.users[2].roles.is_empty() && !m.users[2].deactivated);
}

/// Breaks one thing in a copy of the examples and checks the error names file and field.
fn refused(edit_fn: impl FnOnce(&Path), file: impl FnOnce(&Path) -> PathBuf, field: &str, reason: &str) {
    let dir = copy_examples();
    edit_fn(dir.path());
    let e = load(dir.path(), NS).unwrap_err();
    let expected_file = file(dir.path());
    let text = e.to_string();
    match &e {
        Error::Manifest { file, field: f, reason: r } => {
            assert_eq!(file, &expected_file, "{text}");
            assert_eq!(f, field, "{text}");
            assert!(r.contains(reason), "{text}");
        }
        other => panic!("expected one manifest error, got {other}"),
    }
    assert_eq!(e.kind(), backup_policy::ErrorKind::InvalidInput);
}

#[test]
fn unknown_strategy() {
    refused(
        |r| edit(&collection_file(r), "strategyName: fifo", "strategyName: lifo"),
        collection_file,
        "spec.strategyName",
        "unknown strategy \"lifo\"; known: fifo, fifo-plus-older, gfs",
    );
}

/// backup-repository's example sets `fifo-plus-older`'s options next to `fifo` (which ignored
/// them); with `strategyName: fifo-plus-older` they take effect.
#[test]
fn fifo_plus_older_takes_the_examples_options() {
    assert!(loaded().collections[0].spec.retention.options.is_empty(), "fifo ignores fifo-plus-older's options");
    let dir = copy_examples();
    edit(&collection_file(dir.path()), "strategyName: fifo", "strategyName: fifo-plus-older");
    let m = load(dir.path(), NS).unwrap();
    let r = &m.collections[0].spec.retention;
    assert_eq!(r.strategy, "fifo-plus-older");
    assert_eq!(r.options.get("maxOlderCopies").map(String::as_str), Some("2"));
    assert_eq!(r.options.get("keepLastOlderNotMoreThan").map(String::as_str), Some("5d"));
}

const GFS: &str = "strategyName: gfs
    strategySpec:
        keepLast: 2
        keepDaily: 7
        keepMonthly: -1
        keepWithin: 36h
        timezone: Europe/Warsaw
        mode: cascade
        minKeep: 1
    maxHeldVersions: 2";

fn with_gfs(root: &Path, policy: &str) {
    let file = collection_file(root);
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("strategyName: fifo").unwrap();
    let end = text.find("maxOlderCopies: 2").unwrap() + "maxOlderCopies: 2".len();
    std::fs::write(&file, format!("{}{policy}{}", &text[..start], &text[end..])).unwrap();
}

#[test]
fn a_gfs_policy_loads_with_every_field() {
    let dir = copy_examples();
    with_gfs(dir.path(), GFS);
    let m = load(dir.path(), NS).unwrap();
    let spec = &m.collections[0].spec;
    let r = &spec.retention;
    assert_eq!((r.strategy.as_str(), r.min_keep), ("gfs", 1));
    let options: Vec<(&str, &str)> = r.options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        options,
        [
            ("keepDaily", "7"),
            ("keepLast", "2"),
            ("keepMonthly", "-1"),
            ("keepWithin", "36h"),
            ("mode", "cascade"),
            ("timezone", "Europe/Warsaw")
        ]
    );
    assert_eq!(spec.held_cap(), 2);
}

#[test]
fn a_bad_gfs_option_is_refused_by_name() {
    for (from, to, field, reason) in [
        ("keepDaily: 7", "keepDaily: seven", "spec.strategySpec", "keepDaily: \"seven\" is not a count"),
        (
            "timezone: Europe/Warsaw",
            "timezone: Mars/Olympus",
            "spec.strategySpec",
            "timezone: \"Mars/Olympus\" is not an IANA time zone",
        ),
        ("keepWithin: 36h", "keepWithin: [36h]", "spec.strategySpec.keepWithin", "a number or a text"),
        ("minKeep: 1", "minKeep: 5", "spec.strategySpec.minKeep", "must be under max_versions = 5"),
        ("maxHeldVersions: 2", "maxHeldVersions: 5", "spec.maxHeldVersions", "must be under max_versions = 5"),
        ("keepLast: 2", "keepEvery: 2", "spec.strategySpec", "\"keepEvery\" is not an option of gfs"),
    ] {
        refused(|r| with_gfs(r, &GFS.replace(from, to)), collection_file, field, reason);
    }
}

#[test]
fn negative_extra_space() {
    refused(
        |r| edit(&collection_file(r), "maxCollectionSize: 10M", "maxCollectionSize: 4M"),
        collection_file,
        "spec.maxCollectionSize",
        "extra space would be negative",
    );
}

#[test]
fn template_without_placeholder() {
    refused(
        |r| edit(&collection_file(r), "iwa-ait-${version}.tar.gz", "iwa-ait.tar.gz"),
        collection_file,
        "spec.filenameTemplate",
        "must contain ${version}",
    );
}

#[test]
fn invalid_cron() {
    // backup-repository's README example: hour 30.
    refused(
        |r| edit(&collection_file(r), "\"*/30 * * * *\"", "\"00 30 * * *\""),
        collection_file,
        "spec.windows[0].from",
        "not a valid crontab",
    );
}

#[test]
fn invalid_duration() {
    refused(
        |r| edit(&collection_file(r), "duration: 30m", "duration: soon"),
        collection_file,
        "spec.windows[0].duration",
        "duration",
    );
}

#[test]
fn invalid_time_zone_of_windows() {
    refused(
        |r| edit(&collection_file(r), "    # optional\n", "    timeZone: Mars/Olympus_Mons\n"),
        collection_file,
        "spec.timeZone",
        "not an IANA time zone",
    );
}

#[test]
fn unknown_role() {
    refused(
        |r| edit(&user_file(r, "admin"), "- systemAdmin", "- godMode"),
        |r| user_file(r, "admin"),
        "spec.roles[2]",
        "\"godMode\" is not one of",
    );
    refused(
        |r| edit(&collection_file(r), "- collectionManager", "- owner"),
        collection_file,
        "spec.accessControl[0].roles[0]",
        "\"owner\" is not one of",
    );
}

#[test]
fn secret_reference_that_does_not_resolve() {
    refused(
        |r| edit(&collection_file(r), "entry: iwa-ait", "entry: missing"),
        collection_file,
        "spec.healthSecretRef",
        "has no entry \"missing\"",
    );
    refused(
        |r| edit(&user_file(r, "some-user"), "entry: admin_access_key_1", "entry: nope"),
        |r| user_file(r, "some-user"),
        "spec.accessKeys[0].passwordFromRef",
        "has no entry \"nope\"",
    );
    refused(
        |r| edit(&user_file(r, "unprivileged"), "name: backup-repository-passwords", "name: other-secret"),
        |r| user_file(r, "unprivileged"),
        "spec.passwordFromRef",
        "no secret named \"other-secret\"",
    );
}

#[test]
fn sizes_and_unknown_fields_and_references() {
    refused(
        |r| edit(&collection_file(r), "maxOneVersionSize: 1M", "maxOneVersionSize: lots"),
        collection_file,
        "spec.maxOneVersionSize",
        "lots",
    );
    refused(
        |r| edit(&collection_file(r), "maxBackupsCount: 5", "maxBackupsCount: 5\n    maxBackups: 3"),
        collection_file,
        "",
        "unknown field `maxBackups`",
    );
    refused(
        |r| edit(&collection_file(r), "- name: admin", "- name: nobody"),
        collection_file,
        "spec.accessControl[0].name",
        "no user named \"nobody\"",
    );
    refused(
        |r| edit(&user_file(r, "some-user"), "- name: iwa-ait", "- name: iwa-typo"),
        |r| user_file(r, "some-user"),
        "spec.accessKeys[0].objects[0].name",
        "no collection named \"iwa-typo\"",
    );
    refused(
        |r| edit(&user_file(r, "admin"), "- 1.2.3.4", "- 1.2.3.400"),
        |r| user_file(r, "admin"),
        "spec.restrictByIP[0]",
        "not an address",
    );
    refused(
        |r| edit(&collection_file(r), "name: iwa-ait\n    namespace", "name: ../etc\n    namespace"),
        collection_file,
        "metadata.name",
        "must not contain '/'",
    );
}

#[test]
fn the_acl_spelling_of_the_crd_works_too() {
    let dir = copy_examples();
    edit(&collection_file(dir.path()), "- name: admin\n          type: user", "- userName: admin");
    let m = load(dir.path(), NS).unwrap();
    assert_eq!(m.collections[0].policy.acl[0].user, "admin");
}

#[test]
fn several_errors_are_reported_together() {
    let dir = copy_examples();
    edit(&collection_file(dir.path()), "strategyName: fifo", "strategyName: lifo");
    edit(&user_file(dir.path(), "admin"), "- systemAdmin", "- root");
    let e = load(dir.path(), NS).unwrap_err().to_string();
    assert!(e.contains("spec.strategyName") && e.contains("spec.roles[2]"), "{e}");
    assert!(load(dir.path(), "no-such-namespace").is_err());
}

/// `spec.alerts` sets the detectors' thresholds; what it leaves out keeps its default, and a
/// bad value is refused by its field's name.
#[test]
fn alert_thresholds_load_and_bad_ones_are_refused_by_name() {
    let with_alerts = |root: &Path, alerts: &str| {
        edit(&collection_file(root), "strategyName: fifo", &format!("alerts:\n{alerts}\n    strategyName: fifo"));
    };
    let dir = copy_examples();
    with_alerts(
        dir.path(),
        "        staleAfter: 2d\n        lighterThan: 60%\n        lighterOf: 10\n        windowGrace: 30m",
    );
    let m = load(dir.path(), NS).unwrap();
    let a = m.collections[0].spec.alerts;
    assert_eq!(a.stale_after, Some(std::time::Duration::from_secs(2 * 86_400)));
    assert_eq!((a.lighter_percent, a.lighter_versions, a.window_grace.as_secs()), (60, 10, 1800));
    assert_eq!((a.quota_near_percent, a.refused_quiet.as_secs()), (90, 3600), "the defaults stay");
    assert!(loaded().collections[0].spec.alerts.is_default(), "without spec.alerts: the defaults");
    for (alerts, field, reason) in [
        ("        staleAfter: soon", "spec.alerts.staleAfter", "is not a duration"),
        ("        quotaNear: 150%", "spec.alerts.quotaNear", "is not a percentage"),
        ("        lighterOf: 0", "spec.alerts", "lighter_versions is 0"),
    ] {
        refused(|r| with_alerts(r, alerts), collection_file, field, reason);
    }
}

/// `spec.replicas` gives a collection stores of its own that receive its versions; a bad name,
/// URL or delay is refused by its field's name.
#[test]
fn replicas_load_and_bad_ones_are_refused_by_name() {
    let with_replicas = |root: &Path, replicas: &str| {
        edit(&collection_file(root), "strategyName: fifo", &format!("replicas:\n{replicas}\n    strategyName: fifo"));
    };
    let dir = copy_examples();
    with_replicas(
        dir.path(),
        "        - name: vault\n          url: s3://vault?endpoint=http://127.0.0.1:9000\n          deleteAfter: 30d\n        \
         - name: cold\n          url: file:///mnt/cold",
    );
    let m = load(dir.path(), NS).unwrap();
    let r = &m.collections[0].replicas;
    assert_eq!(
        r.iter().map(|r| (r.name.as_str(), r.url.as_str())).collect::<Vec<_>>(),
        [("vault", "s3://vault?endpoint=http://127.0.0.1:9000"), ("cold", "file:///mnt/cold")]
    );
    assert_eq!(r[0].delete_after, Some(std::time::Duration::from_secs(30 * 86_400)));
    assert_eq!(r[1].delete_after, None, "the trash retention then");
    assert!(loaded().collections[0].replicas.is_empty(), "without spec.replicas: none");
    for (replicas, field, reason) in [
        ("        - name: Vault\n          url: file:///x", "spec.replicas[0].name", "expected 1 to 64"),
        ("        - name: vault\n          url: /mnt/x", "spec.replicas[0].url", "store URL"),
        (
            "        - name: vault\n          url: file:///x\n          deleteAfter: soon",
            "spec.replicas[0].deleteAfter",
            "duration",
        ),
        (
            "        - name: a\n          url: file:///x\n        - name: a\n          url: file:///y",
            "spec.replicas[1].name",
            "named twice",
        ),
    ] {
        refused(|r| with_replicas(r, replicas), collection_file, field, reason);
    }
}
