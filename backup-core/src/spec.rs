//! What a collection is: its specification, limits, filename template and retention.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::DigestAlgorithm;
use crate::error::{Error, Result};
use crate::lock::LockPolicy;

/// The placeholder a filename template must contain.
pub const VERSION_PLACEHOLDER: &str = "${version}";

/// The longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// The largest size limit, in bytes (2^63 − 1, what SQL catalogs store).
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// The longest filename template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 200;

/// The name of the built-in first-in, first-out strategy, always registered.
pub const FIFO: &str = "fifo";

/// Everything that defines a collection; validated when a collection is created or changed,
/// never first at upload time.
///
/// ```
/// use backup_core::{CollectionSpec, Limits};
///
/// let spec = CollectionSpec::new("iwa-ait-${version}.tar.gz", Limits::new(5, 1 << 20, 10 << 20)?)
///     .with_description("IWA-AIT website files");
/// spec.validate()?;
/// assert_eq!(spec.filename_template.render(7), "iwa-ait-7.tar.gz");
/// assert_eq!(spec.limits.extra_space(), 5 << 20);
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CollectionSpec {
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// The download filename of each version; `${version}` is replaced by the version number.
    pub filename_template: FilenameTemplate,
    /// Count and size limits.
    pub limits: Limits,
    /// Which versions to keep when a new one arrives.
    #[serde(default)]
    pub retention: RetentionSpec,
    /// The digest computed over every upload and verified on every download.
    #[serde(default)]
    pub digest: DigestAlgorithm,
    /// The name of a content rule every upload must pass (for example `openpgp`), if any.
    #[serde(default)]
    pub content_rule: Option<String>,
    /// How many versions may be held at once (default: half of `max_versions`, at least one):
    /// a forgotten hold cannot silently take the whole quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_held_versions: Option<u32>,
    /// The retention lock of every version committed under this spec, if any: see
    /// [`crate::lock`]. Once set, it can be lengthened but not shortened or removed
    /// (in governance mode, only by a caller allowed to bypass it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockPolicy>,
    /// How the detectors judge this collection ([`crate::alerts`]); the defaults when absent.
    #[serde(default, skip_serializing_if = "crate::alerts::AlertPolicy::is_default")]
    pub alerts: crate::alerts::AlertPolicy,
}

impl CollectionSpec {
    /// A spec with FIFO retention, the default digest (BLAKE3), no content rule and no
    /// description. The template is checked by [`CollectionSpec::validate`].
    pub fn new(filename_template: impl Into<String>, limits: Limits) -> Self {
        CollectionSpec {
            description: String::new(),
            filename_template: FilenameTemplate(filename_template.into()),
            limits,
            retention: RetentionSpec::default(),
            digest: DigestAlgorithm::default(),
            content_rule: None,
            max_held_versions: None,
            lock: None,
            alerts: crate::alerts::AlertPolicy::default(),
        }
    }

    /// Locks every version committed from now on ([`LockPolicy`]).
    pub fn with_lock(mut self, lock: LockPolicy) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Sets how the detectors judge the collection.
    pub fn with_alerts(mut self, alerts: crate::alerts::AlertPolicy) -> Self {
        self.alerts = alerts;
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the retention.
    pub fn with_retention(mut self, retention: RetentionSpec) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the digest algorithm.
    pub fn with_digest(mut self, digest: DigestAlgorithm) -> Self {
        self.digest = digest;
        self
    }

    /// Caps how many versions may be held at once.
    pub fn with_max_held_versions(mut self, max: u32) -> Self {
        self.max_held_versions = Some(max);
        self
    }

    /// The cap on held versions: [`CollectionSpec::max_held_versions`], or half of
    /// `max_versions` (at least one).
    pub fn held_cap(&self) -> u32 {
        self.max_held_versions.unwrap_or((self.limits.max_versions / 2).max(1))
    }

    /// Requires every upload to pass the named content rule.
    pub fn with_content_rule(mut self, rule: impl Into<String>) -> Self {
        self.content_rule = Some(rule.into());
        self
    }

    /// Checks the rules that need no registry: template, limits, description, names.
    /// The engine also checks that the retention strategy and content rule are registered.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] naming the field and the rule it breaks.
    pub fn validate(&self) -> Result<()> {
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(spec_error("description", format!("is longer than {MAX_DESCRIPTION_LEN} bytes")));
        }
        self.filename_template.validate()?;
        self.limits.validate()?;
        check_name("retention.strategy", &self.retention.strategy)?;
        if let Some(max) = self.max_held_versions
            && max >= self.limits.max_versions
        {
            return Err(spec_error(
                "max_held_versions",
                format!(
                    "{max} must be under max_versions = {} (a place stays for new uploads)",
                    self.limits.max_versions
                ),
            ));
        }
        if let Some(rule) = &self.content_rule {
            check_name("content_rule", rule)?;
        }
        self.alerts.validate()?;
        if let Some(lock) = &self.lock {
            lock.validate()?;
        }
        Ok(())
    }
}

fn spec_error(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidSpec { field, reason: reason.into() }
}

fn check_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(spec_error(field, format!("{name:?} is not a name of 1 to 64 characters from [A-Za-z0-9_-]")));
    }
    Ok(())
}

/// A filename with a `${version}` placeholder, for example `db-${version}.sql.gz.asc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FilenameTemplate(String);

impl FilenameTemplate {
    /// A validated template.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] if the template lacks `${version}` or could not be a filename.
    pub fn new(template: impl Into<String>) -> Result<Self> {
        let t = FilenameTemplate(template.into());
        t.validate()?;
        Ok(t)
    }

    fn validate(&self) -> Result<()> {
        const FIELD: &str = "filename_template";
        let t = &self.0;
        if !t.contains(VERSION_PLACEHOLDER) {
            // Without it every version would get the same name; backup-repository then
            // overwrote and later deleted the current data.
            return Err(spec_error(FIELD, format!("{t:?} must contain {VERSION_PLACEHOLDER}")));
        }
        if t.len() > MAX_TEMPLATE_LEN {
            return Err(spec_error(FIELD, format!("is longer than {MAX_TEMPLATE_LEN} bytes")));
        }
        if let Some(c) = t.chars().find(|c| c.is_control() || matches!(c, '/' | '\\' | '"')) {
            // The name goes into Content-Disposition headers and onto restore disks.
            return Err(spec_error(FIELD, format!("must not contain {c:?}")));
        }
        Ok(())
    }

    /// The filename of version `number`.
    pub fn render(&self, number: u64) -> String {
        self.0.replace(VERSION_PLACEHOLDER, &number.to_string())
    }

    /// The template as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FilenameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limits of a collection, with backup-repository's "extra space" semantics.
///
/// `max_versions × max_version_size` is the space every version can count on; what
/// `max_collection_size` has beyond that is the *extra space*, shared: a version may be larger
/// than `max_version_size` (the soft limit) by what is left of it. The total never exceeds
/// `max_collection_size` (the hard limit). See [`crate::quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// How many committed versions the collection keeps at most.
    pub max_versions: u32,
    /// The soft size limit of one version, in bytes.
    pub max_version_size: u64,
    /// The hard size limit of all committed versions together, in bytes.
    pub max_collection_size: u64,
}

impl Limits {
    /// Validated limits.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] if a limit is zero or the extra space would be negative.
    pub fn new(max_versions: u32, max_version_size: u64, max_collection_size: u64) -> Result<Self> {
        let l = Limits { max_versions, max_version_size, max_collection_size };
        l.validate()?;
        Ok(l)
    }

    fn validate(&self) -> Result<()> {
        if self.max_versions == 0 {
            return Err(spec_error("limits.max_versions", "must be at least 1"));
        }
        if self.max_version_size == 0 {
            return Err(spec_error("limits.max_version_size", "must be at least 1 byte"));
        }
        if self.max_collection_size > MAX_SIZE {
            // Catalogs store sizes as signed 64-bit integers.
            return Err(spec_error("limits.max_collection_size", format!("must be at most {MAX_SIZE} bytes (8 EiB)")));
        }
        match u64::from(self.max_versions).checked_mul(self.max_version_size) {
            Some(base) if base <= self.max_collection_size => Ok(()),
            Some(base) => Err(spec_error(
                "limits.max_collection_size",
                format!(
                    "{} is less than max_versions × max_version_size = {base}: the extra space would be negative",
                    self.max_collection_size
                ),
            )),
            None => Err(spec_error("limits", "max_versions × max_version_size overflows 64 bits")),
        }
    }

    /// `max_collection_size − max_versions × max_version_size` (saturating at zero).
    pub fn extra_space(&self) -> u64 {
        self.max_collection_size.saturating_sub(u64::from(self.max_versions).saturating_mul(self.max_version_size))
    }

    /// How far `size` is above the soft limit.
    pub fn overage(&self, size: u64) -> u64 {
        size.saturating_sub(self.max_version_size)
    }
}

/// Which rotation strategy a collection uses, by registered name, with its options.
///
/// The engine resolves the name in its registry of [`crate::RotationStrategy`]s when a
/// collection is created or updated; `fifo`, `fifo-plus-older` and `gfs` are always
/// registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetentionSpec {
    /// The strategy's name.
    pub strategy: String,
    /// Strategy options; each strategy validates its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// A floor no strategy goes under: at least this many versions stay (`minKeep`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_keep: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RetentionSpec {
    /// FIFO: when a new version would pass `max_versions`, evict the oldest.
    pub fn fifo() -> Self {
        RetentionSpec { strategy: FIFO.to_owned(), options: BTreeMap::new(), min_keep: 0 }
    }

    /// A strategy registered under `name`.
    pub fn named(name: impl Into<String>) -> Self {
        RetentionSpec { strategy: name.into(), options: BTreeMap::new(), min_keep: 0 }
    }

    /// Adds an option.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Sets the floor of versions that always stay.
    pub fn with_min_keep(mut self, min_keep: u32) -> Self {
        self.min_keep = min_keep;
        self
    }
}

impl Default for RetentionSpec {
    fn default() -> Self {
        RetentionSpec::fifo()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn field_of(e: Error) -> &'static str {
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        match e {
            Error::InvalidSpec { field, .. } => field,
            other => panic!("not a spec error: {other:?}"),
        }
    }

    fn spec() -> CollectionSpec {
        CollectionSpec::new("b-${version}.tar", Limits::new(5, 100, 1000).unwrap())
    }

    #[test]
    fn limits_refuse_negative_extra_space() {
        let e = Limits::new(5, 1 << 20, 4 << 20).unwrap_err();
        assert_eq!(field_of(e), "limits.max_collection_size");
        assert!(Limits::new(5, 1 << 20, 5 << 20).is_ok(), "zero extra space is allowed");
    }

    #[test]
    fn limits_refuse_zero_and_overflow() {
        assert_eq!(field_of(Limits::new(0, 1, 1).unwrap_err()), "limits.max_versions");
        assert_eq!(field_of(Limits::new(1, 0, 1).unwrap_err()), "limits.max_version_size");
        assert_eq!(field_of(Limits::new(u32::MAX, u64::MAX / 4, MAX_SIZE).unwrap_err()), "limits");
        assert_eq!(field_of(Limits::new(1, 1, MAX_SIZE + 1).unwrap_err()), "limits.max_collection_size");
        assert!(Limits::new(1, MAX_SIZE, MAX_SIZE).is_ok());
    }

    #[test]
    fn limits_refused_when_deserialized_spec_is_validated() {
        let json = r#"{"filename_template":"x-${version}","limits":{"max_versions":5,"max_version_size":10,"max_collection_size":40}}"#;
        let s: CollectionSpec = serde_json::from_str(json).unwrap();
        assert_eq!(field_of(s.validate().unwrap_err()), "limits.max_collection_size");
    }

    #[test]
    fn template_needs_the_placeholder() {
        let e = FilenameTemplate::new("backup.tar.gz").unwrap_err();
        assert_eq!(field_of(e), "filename_template");
        let mut s = spec();
        s.filename_template = FilenameTemplate("no-placeholder".into());
        assert_eq!(field_of(s.validate().unwrap_err()), "filename_template");
    }

    #[test]
    fn template_refuses_path_and_header_breakers() {
        for bad in [
            "a/${version}",
            "a\\${version}",
            "a\"${version}",
            "a\r\n${version}",
            &format!("{}${{version}}", "x".repeat(300)),
        ] {
            assert_eq!(field_of(FilenameTemplate::new(bad).unwrap_err()), "filename_template", "{bad:?}");
        }
    }

    #[test]
    fn template_renders_every_placeholder() {
        let t = FilenameTemplate::new("db-${version}.sql.${version}").unwrap();
        assert_eq!(t.render(12), "db-12.sql.12");
    }

    #[test]
    fn names_and_description_are_checked() {
        let s = spec().with_retention(RetentionSpec::named("fifo plus"));
        assert_eq!(field_of(s.validate().unwrap_err()), "retention.strategy");
        let s = spec().with_content_rule("");
        assert_eq!(field_of(s.validate().unwrap_err()), "content_rule");
        let s = spec().with_description("x".repeat(MAX_DESCRIPTION_LEN + 1));
        assert_eq!(field_of(s.validate().unwrap_err()), "description");
        spec().validate().unwrap();
    }

    #[test]
    fn unknown_spec_fields_are_refused() {
        let json = r#"{"filename_template":"x-${version}","limits":{"max_versions":1,"max_version_size":1,"max_collection_size":1},"max_backups":3}"#;
        let e = serde_json::from_str::<CollectionSpec>(json).unwrap_err();
        assert!(e.to_string().contains("max_backups"), "{e}");
    }
}
