//! Reading manifests: YAML text to users and collections, secret references resolved, every
//! field checked with its manifest name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::rotation::Fifo;
use backup_core::{CollectionId, CollectionSpec, DigestAlgorithm, Limits, RetentionSpec};
use ipnet::IpNet;

use super::model::{CollectionManifest, Head, SecretManifest, SecretRef, SizeValue, UserManifest};
use super::names::{access_key_refusal, user_name_refusal};
use super::{API_GROUP, API_VERSIONS, CollectionDefinition, Document, Errors, spec_error};
use crate::directory::CollectionPolicy;
use crate::identity::{AccessKey, AclEntry, ObjectGrant, User};
use crate::openpgp::OpenPgpRule;
use crate::password::StoredPassword;
use crate::role::Role;
use crate::size::parse_size;
use crate::window::BackupWindow;

/// Parses a manifest: YAML, `apiVersion` and `kind`, then the typed document.
fn read<T: serde::de::DeserializeOwned>(
    doc: &Document,
    kind: &str,
    api_versions: &[String],
    errors: &mut Errors,
) -> Option<T> {
    let file = &doc.file;
    let head: Head = match serde_yaml_ng::from_str(&doc.text) {
        Ok(h) => h,
        Err(e) => {
            errors.at(file, "", format!("not a manifest: {e}"));
            return None;
        }
    };
    if head.kind != kind {
        errors.at(file, "kind", format!("{:?} in a folder of {kind}", head.kind));
        return None;
    }
    if !api_versions.contains(&head.api_version) {
        errors.at(file, "apiVersion", format!("{:?} is not one of {}", head.api_version, api_versions.join(", ")));
        return None;
    }
    match serde_yaml_ng::from_str(&doc.text) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.at(file, "", e.to_string());
            None
        }
    }
}

pub(super) fn stem(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn crd_versions() -> Vec<String> {
    API_VERSIONS.iter().map(|v| format!("{API_GROUP}/{v}")).collect()
}

/// Secret name → (file, entries).
pub(super) type Secrets = BTreeMap<String, (PathBuf, BTreeMap<String, String>)>;

pub(super) fn load_secrets<'a>(documents: impl Iterator<Item = &'a Document>, errors: &mut Errors) -> Secrets {
    let mut secrets = Secrets::new();
    for doc in documents {
        let Some(s) = read::<SecretManifest>(doc, "Secret", &["v1".to_owned()], errors) else { continue };
        let mut entries = s.string_data;
        entries.extend(s.data);
        if secrets.insert(s.metadata.name.clone(), (doc.file.clone(), entries)).is_some() {
            errors.at(&doc.file, "metadata.name", format!("secret {} is defined twice", s.metadata.name));
        }
    }
    secrets
}

fn resolve<'a>(secrets: &'a Secrets, r: &SecretRef) -> std::result::Result<&'a str, String> {
    if r.name.is_empty() {
        return Err("the secret's name is empty".into());
    }
    let (_, entries) = secrets.get(&r.name).ok_or_else(|| format!("no secret named {:?}", r.name))?;
    entries.get(&r.entry).map(String::as_str).ok_or_else(|| format!("secret {:?} has no entry {:?}", r.name, r.entry))
}

/// A password: the reference wins over the inline value (backup-repository's order for users).
fn password(
    file: &Path,
    field: &str,
    inline: Option<&str>,
    reference: Option<&SecretRef>,
    secrets: &Secrets,
    reference_wins: bool,
    errors: &mut Errors,
) -> StoredPassword {
    let inline = inline.filter(|p| !p.is_empty());
    let from_ref = |errors: &mut Errors, r: &SecretRef| match resolve(secrets, r) {
        Ok(v) => StoredPassword::parse(v).unwrap_or_else(|e| {
            errors.at(file, format!("{field}FromRef"), format!("secret {:?} entry {:?}: {e}", r.name, r.entry));
            StoredPassword::Disabled
        }),
        Err(reason) => {
            errors.at(file, format!("{field}FromRef"), reason);
            StoredPassword::Disabled
        }
    };
    let from_inline = |errors: &mut Errors, p: &str| {
        StoredPassword::parse(p).unwrap_or_else(|e| {
            errors.at(file, field, e.to_string());
            StoredPassword::Disabled
        })
    };
    match (inline, reference) {
        (_, Some(r)) if reference_wins => from_ref(errors, r),
        (Some(p), _) => from_inline(errors, p),
        (None, Some(r)) => from_ref(errors, r),
        (None, None) => StoredPassword::Disabled,
    }
}

fn roles(file: &Path, field: &str, names: &[String], errors: &mut Errors) -> Vec<Role> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match name.parse::<Role>() {
            Ok(r) if !out.contains(&r) => out.push(r),
            Ok(_) => {}
            Err(e) => errors.at(file, format!("{field}[{i}]"), e.to_string()),
        }
    }
    out
}

/// A `BackupUser` manifest as a [`User`], for [`super::definitions::check_user`]: what only
/// YAML can get wrong (the document, secret references, roles and addresses as text) is
/// reported here, every other rule there.
pub(super) fn load_user(doc: &Document, secrets: &Secrets, errors: &mut Errors) -> Option<User> {
    let file = doc.file.as_path();
    let m: UserManifest = read(doc, "BackupUser", &crd_versions(), errors)?;
    let name = m.metadata.name;
    if let Some(reason) = user_name_refusal(&name) {
        errors.at(file, "metadata.name", reason);
        return None;
    }
    if name != stem(file) {
        errors.at(file, "metadata.name", format!("{name:?} does not match the file name"));
    }
    let spec = m.spec;
    let user_password = password(
        file,
        "spec.password",
        spec.password.as_deref(),
        spec.password_from_ref.as_ref(),
        secrets,
        true,
        errors,
    );
    let mut access_keys: Vec<AccessKey> = Vec::new();
    for (i, k) in spec.access_keys.iter().enumerate() {
        let field = format!("spec.accessKeys[{i}]");
        if access_key_refusal(&k.name, &access_keys).is_some() {
            // Refused by its name, with one error, when the user is checked: its password
            // and objects are not read.
            access_keys.push(AccessKey::new(k.name.clone(), StoredPassword::Disabled));
            continue;
        }
        // For access keys an inline password wins over the reference (backup-repository).
        let pw = password(
            file,
            &format!("{field}.password"),
            k.password.as_deref(),
            k.password_from_ref.as_ref(),
            secrets,
            false,
            errors,
        );
        let objects = k
            .objects
            .iter()
            .enumerate()
            .map(|(j, o)| ObjectGrant {
                kind: o.kind.clone(),
                name: o.name.clone(),
                roles: roles(file, &format!("{field}.objects[{j}].roles"), &o.roles, errors),
            })
            .collect();
        access_keys.push(AccessKey { name: k.name.clone(), password: pw, objects });
    }
    let mut restrict_by_ip = Vec::new();
    for (i, entry) in spec.restrict_by_ip.iter().enumerate() {
        match entry.parse::<IpNet>().or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(net) => restrict_by_ip.push(net),
            Err(_) => {
                errors.at(file, format!("spec.restrictByIP[{i}]"), format!("{entry:?} is not an address or CIDR range"))
            }
        }
    }
    Some(User {
        roles: roles(file, "spec.roles", &spec.roles, errors),
        name,
        email: spec.email,
        password: user_password,
        access_keys,
        restrict_by_ip,
        deactivated: spec.deactivated,
    })
}

/// The retention of `strategyName` and `strategySpec`: every option as text, `minKeep` as the
/// floor of any strategy. backup-repository ignored `strategySpec` and its own examples set
/// `fifo-plus-older`'s options next to `fifo`; `fifo` ignores those two still.
fn retention(
    file: &Path,
    name: Option<&str>,
    options: &BTreeMap<String, serde_yaml_ng::Value>,
    errors: &mut Errors,
) -> RetentionSpec {
    use serde_yaml_ng::Value;
    let strategy = name.unwrap_or(Fifo::NAME);
    let mut r = RetentionSpec::named(strategy);
    for (key, value) in options {
        let field = format!("spec.strategySpec.{key}");
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                errors.at(file, field, "a number or a text (10d, 36h, Europe/Warsaw)");
                continue;
            }
        };
        match key.as_str() {
            "minKeep" => match text.parse::<u32>() {
                Ok(n) => r = r.with_min_keep(n),
                Err(_) => errors.at(file, field, format!("{text:?} is not a count")),
            },
            "keepLastOlderNotMoreThan" | "maxOlderCopies" if strategy == Fifo::NAME => {}
            _ => r = r.with_option(key.clone(), text),
        }
    }
    r
}

fn size(file: &Path, field: &str, v: &SizeValue, errors: &mut Errors) -> Option<u64> {
    match v {
        SizeValue::Bytes(n) => Some(*n),
        SizeValue::Text(t) => parse_size(t).map_err(|e| errors.at(file, field, e.to_string())).ok(),
    }
}

/// A `BackupCollection` manifest as a [`CollectionDefinition`], for
/// [`super::definitions::check_collection`]: what only YAML can get wrong (the document,
/// sizes, names of strategies, rules, digests, windows and roles as text, the health secret's
/// reference) is reported here, every other rule there. `None` when there is no collection to
/// check (a name that is no id, a size that does not parse).
pub(super) fn load_collection(doc: &Document, secrets: &Secrets, errors: &mut Errors) -> Option<CollectionDefinition> {
    let file = doc.file.as_path();
    let m: CollectionManifest = read(doc, "BackupCollection", &crd_versions(), errors)?;
    let id = match CollectionId::new(m.metadata.name.clone()) {
        Ok(id) => id,
        Err(e) => {
            errors.at(file, "metadata.name", e.to_string());
            return None;
        }
    };
    if id.as_str() != stem(file) {
        errors.at(file, "metadata.name", format!("{:?} does not match the file name", id.as_str()));
    }
    let s = m.spec;
    let soft = size(file, "spec.maxOneVersionSize", &s.max_one_version_size, errors);
    let hard = size(file, "spec.maxCollectionSize", &s.max_collection_size, errors);
    let retention = retention(file, s.strategy_name.as_deref(), &s.strategy_spec, errors);
    let content_rule = match s.content_rule.as_deref() {
        None | Some("openpgp") => Some(OpenPgpRule::NAME.to_owned()),
        Some("none") => None,
        Some(other) => {
            errors.at(file, "spec.contentRule", format!("{other:?} is not openpgp or none"));
            None
        }
    };
    let digest = match s.digest.as_deref().map(str::parse::<DigestAlgorithm>) {
        None => DigestAlgorithm::default(),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.at(file, "spec.digest", e.to_string());
            DigestAlgorithm::default()
        }
    };
    let mut windows = Vec::new();
    for (i, w) in s.windows.iter().enumerate() {
        match BackupWindow::parse(&w.from, &w.duration, s.time_zone.as_deref()) {
            Ok(win) => windows.push(win),
            Err(e) => {
                // Told apart by the structured `what`, never by the message text.
                let field = match e.as_core() {
                    Some(backup_core::Error::InvalidInput { what: BackupWindow::TIME_ZONE, .. }) => {
                        "spec.timeZone".to_owned()
                    }
                    Some(backup_core::Error::InvalidInput { what: BackupWindow::DURATION, .. }) => {
                        format!("spec.windows[{i}].duration")
                    }
                    _ => format!("spec.windows[{i}].from"),
                };
                errors.at(file, field, e.to_string());
            }
        }
    }
    if s.windows.is_empty()
        && let Some(tz) = &s.time_zone
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        errors.at(file, "spec.timeZone", format!("{tz:?} is not an IANA time zone"));
    }
    let health_code_sha256 = s.health_secret_ref.as_ref().and_then(|r| match resolve(secrets, r) {
        Ok(v) => {
            let mut digest = [0u8; 32];
            match hex::decode_to_slice(v.trim(), &mut digest) {
                Ok(()) => Some(digest),
                Err(_) => {
                    errors.at(
                        file,
                        "spec.healthSecretRef",
                        format!("secret {:?} entry {:?} is not a hex SHA-256", r.name, r.entry),
                    );
                    None
                }
            }
        }
        Err(reason) => {
            errors.at(file, "spec.healthSecretRef", reason);
            None
        }
    });
    // Every entry is kept, so that the checks of the ACL name them by their place in the file.
    let mut acl: Vec<AclEntry> = Vec::new();
    for (i, entry) in s.access_control.iter().enumerate() {
        let field = format!("spec.accessControl[{i}]");
        let user = entry.name.clone().or_else(|| entry.user_name.clone()).unwrap_or_default();
        if let Some(kind) = entry.kind.as_deref().filter(|k| *k != "user") {
            errors.at(file, format!("{field}.type"), format!("{kind:?} is not \"user\""));
            acl.push(AclEntry { user, roles: Vec::new() });
            continue;
        }
        let roles =
            if user.is_empty() { Vec::new() } else { roles(file, &format!("{field}.roles"), &entry.roles, errors) };
        acl.push(AclEntry { user, roles });
    }
    let (Some(soft), Some(hard)) = (soft, hard) else { return None };
    let limits = match Limits::new(s.max_backups_count, soft, hard) {
        Ok(l) => l,
        Err(e) => {
            errors.0.push(spec_error(file, e));
            return None;
        }
    };
    let mut spec = CollectionSpec::new(s.filename_template, limits)
        .with_description(s.description)
        .with_digest(digest)
        .with_retention(retention);
    spec.content_rule = content_rule;
    if let Some(max) = s.max_held_versions {
        spec = spec.with_max_held_versions(max);
    }
    if let Some(lock) = &s.lock {
        spec.lock = Some(lock_policy(file, lock, errors)?);
    }
    if let Some(alerts) = &s.alerts {
        spec.alerts = alert_policy(file, alerts, errors)?;
    }
    let notify = notify_rules(file, &s.notify, secrets, errors)?;
    let replicas = replica_rules(file, &s.replicas, errors)?;
    Some(CollectionDefinition {
        id,
        spec,
        policy: CollectionPolicy { windows, acl, health_code_sha256 },
        file: file.to_owned(),
        notify,
        replicas,
    })
}

/// The entries of `spec.replicas`: a name, a store URL, an optional delay for deletions.
fn replica_rules(
    file: &Path,
    entries: &[super::model::ReplicaYaml],
    errors: &mut Errors,
) -> Option<Vec<super::ReplicaRule>> {
    let before = errors.len();
    let mut rules: Vec<super::ReplicaRule> = Vec::new();
    for (i, r) in entries.iter().enumerate() {
        let field = format!("spec.replicas[{i}]");
        if let Err(e) = backup_core::replica::check_name(&r.name) {
            errors.at(file, format!("{field}.name"), e.to_string());
        }
        if rules.iter().any(|o| o.name == r.name) {
            errors.at(file, format!("{field}.name"), format!("{:?} is named twice", r.name));
        }
        if !r.url.contains("://") {
            errors.at(file, format!("{field}.url"), "expected a store URL such as s3://bucket or file:///path");
        }
        let delete_after = match &r.delete_after {
            None => None,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.at(
                        file,
                        format!("{field}.deleteAfter"),
                        format!("{text:?} is not a duration such as 7d: {e}"),
                    );
                    None
                }
            },
        };
        rules.push(super::ReplicaRule { name: r.name.clone(), url: r.url.clone(), delete_after });
    }
    (errors.len() == before).then_some(rules)
}

/// The targets of `spec.notify`: each a webhook (http or https, its secret from a Secret) or
/// an e-mail address, with the events it receives.
fn notify_rules(
    file: &Path,
    entries: &[super::model::NotifyYaml],
    secrets: &Secrets,
    errors: &mut Errors,
) -> Option<Vec<super::NotifyRule>> {
    let before = errors.len();
    let mut rules = Vec::new();
    for (i, n) in entries.iter().enumerate() {
        let field = format!("spec.notify[{i}]");
        let events = n.events.clone().unwrap_or_else(|| vec!["alerts".to_owned()]);
        if events.is_empty() || events.iter().any(|e| e.trim().is_empty()) {
            errors.at(file, format!("{field}.events"), "name at least one event (or alerts), none empty");
        }
        let channel = match (&n.webhook, &n.email) {
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    errors.at(file, format!("{field}.webhook"), format!("{url:?} is not an http or https URL"));
                }
                let secret = match &n.secret_from {
                    None => None,
                    Some(r) => match resolve(secrets, r) {
                        Ok(v) => Some(v.to_owned()),
                        Err(e) => {
                            errors.at(file, format!("{field}.secretFrom"), e);
                            None
                        }
                    },
                };
                super::NotifyChannel::Webhook { url: url.clone(), secret }
            }
            (None, Some(to)) if n.secret_from.is_none() => {
                if !to.contains('@') {
                    errors.at(file, format!("{field}.email"), format!("{to:?} is not an e-mail address"));
                }
                super::NotifyChannel::Email { to: to.clone() }
            }
            _ => {
                errors.at(file, field, "give either a webhook (with an optional secretFrom) or an email");
                continue;
            }
        };
        rules.push(super::NotifyRule { channel, events });
    }
    (errors.len() == before).then_some(rules)
}

/// The detectors' policy from `spec.alerts`, each field over its default.
fn alert_policy(
    file: &std::path::Path,
    a: &super::model::AlertsYaml,
    errors: &mut Errors,
) -> Option<backup_core::alerts::AlertPolicy> {
    let before = errors.len();
    let mut duration = |field: &str, text: &Option<String>| -> Option<std::time::Duration> {
        let text = text.as_ref()?;
        match humantime::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.at(file, format!("spec.alerts.{field}"), format!("{text:?} is not a duration such as 2d: {e}"));
                None
            }
        }
    };
    let (grace, stale, quiet) = (
        duration("windowGrace", &a.window_grace),
        duration("staleAfter", &a.stale_after),
        duration("refusedQuiet", &a.refused_quiet),
    );
    let mut percent = |field: &str, text: &Option<String>| -> Option<u8> {
        let text = text.as_ref()?;
        match text.trim().trim_end_matches('%').trim().parse::<u8>() {
            Ok(p) if p <= 100 => Some(p),
            _ => {
                errors.at(file, format!("spec.alerts.{field}"), format!("{text:?} is not a percentage such as 50%"));
                None
            }
        }
    };
    let (lighter, near) = (percent("lighterThan", &a.lighter_than), percent("quotaNear", &a.quota_near));
    if errors.len() > before {
        return None;
    }
    let mut p = backup_core::alerts::AlertPolicy::default();
    if let Some(g) = grace {
        p = p.with_window_grace(g);
    }
    if let Some(s) = stale {
        p = p.with_stale_after(s);
    }
    if let Some(q) = quiet {
        p.refused_quiet = q;
    }
    p = p.with_lighter(lighter.unwrap_or(p.lighter_percent), a.lighter_of.unwrap_or(p.lighter_versions));
    if let Some(n) = near {
        p = p.with_quota_near(n);
    }
    if let Err(e) = p.validate() {
        errors.at(file, "spec.alerts", e.to_string());
        return None;
    }
    Some(p)
}

/// A lock policy from `spec.lock`: its mode and a minimum retention such as `30d`.
fn lock_policy(
    file: &std::path::Path,
    lock: &super::model::LockYaml,
    errors: &mut Errors,
) -> Option<backup_core::LockPolicy> {
    let mode = match lock.mode.parse::<backup_core::LockMode>() {
        Ok(m) => Some(m),
        Err(_) => {
            errors.at(file, "spec.lock.mode", format!("{:?} is not compliance or governance", lock.mode));
            None
        }
    };
    let retention = match humantime::parse_duration(&lock.min_retention) {
        Ok(d) => chrono::Duration::from_std(d).ok(),
        Err(e) => {
            errors.at(
                file,
                "spec.lock.minRetention",
                format!("{:?} is not a duration such as 30d: {e}", lock.min_retention),
            );
            return None;
        }
    };
    let Some(retention) = retention else {
        errors.at(file, "spec.lock.minRetention", format!("{:?} is too long", lock.min_retention));
        return None;
    };
    let policy = backup_core::LockPolicy::new(mode?, retention);
    if let Err(e) = policy.validate() {
        errors.at(file, "spec.lock.minRetention", e.to_string());
        return None;
    }
    Some(policy)
}
