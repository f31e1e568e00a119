//! The configuration file (TOML), checked at load: every error names its field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use backup_core::{CollectionId, CollectionSpec, Limits, RetentionSpec};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cache_dir: Option<PathBuf>,
    schedule: Option<String>,
    timezone: Option<String>,
    webhook: Option<String>,
    storage: Option<StorageFile>,
    server: Option<ServerFile>,
    #[serde(default, rename = "repository")]
    repositories: Vec<RepositoryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageFile {
    data_dir: Option<PathBuf>,
    store_url: Option<String>,
    catalog_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    url: String,
    token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryFile {
    name: String,
    source: String,
    collection: Option<String>,
    schedule: Option<String>,
    credentials_env: Option<String>,
    max_versions: Option<u32>,
    max_version_size: Option<String>,
    max_collection_size: Option<String>,
    retention: Option<RetentionFile>,
}

/// The strategy and its options (`keepDaily = 7`, …), which the strategy checks itself.
#[derive(Debug, Deserialize)]
struct RetentionFile {
    strategy: String,
    #[serde(default)]
    min_keep: u32,
    #[serde(flatten)]
    options: BTreeMap<String, toml::Value>,
}

/// Where versions go.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// The engine in this process: blobs under `data_dir` (or `store_url`), the catalog in
    /// SQLite there (or `catalog_url`).
    Embedded { data_dir: PathBuf, store_url: Option<String>, catalog_url: Option<String> },
    /// A backup server over HTTP; the token is read from the environment variable.
    Server { url: String, token_env: String },
}

/// A schedule: a cron expression in a time zone.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) text: String,
    cron: cron::Schedule,
    tz: Tz,
}

impl Schedule {
    /// Five fields (crontab: minute hour day month weekday) or six and seven (with seconds
    /// first, and a year), as the `cron` crate reads them.
    pub(crate) fn parse(text: &str, tz: Tz) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {text}"),
            6 | 7 => text.to_owned(),
            n => return Err(format!("{text:?} has {n} fields; give 5 (crontab) or 6-7 (with seconds)")),
        };
        let cron = cron::Schedule::from_str(&full).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Schedule { text: text.to_owned(), cron, tz })
    }

    /// The first run strictly after `after`.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&after.with_timezone(&self.tz)).next().map(|t| t.with_timezone(&Utc))
    }
}

/// One repository to back up.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    pub(crate) name: String,
    /// A URL git can fetch, or a local path made absolute at load (relative to the
    /// configuration file's folder), so that no git command depends on the current folder.
    pub(crate) source: String,
    pub(crate) collection: CollectionId,
    pub(crate) schedule: Schedule,
    /// The environment variable holding a token for HTTPS sources.
    pub(crate) credentials_env: Option<String>,
    /// The collection's spec (embedded destinations create and update it).
    pub(crate) spec: CollectionSpec,
}

/// Whether git reads `source` as a local path: not a URL (`scheme://`) and not the scp-like
/// `host:path` (a colon before any slash), as git's own `url_is_local_not_ssh` decides.
fn is_local_path(source: &str) -> bool {
    if source.contains("://") {
        return false;
    }
    match (source.find(':'), source.find('/')) {
        (None, _) => true,
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
    }
}

/// Whether a URL names this machine (`localhost`, `127.0.0.0/8`, `[::1]`): plain HTTP there
/// crosses no network.
fn is_loopback_url(source: &str) -> bool {
    let Some((_, rest)) = source.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `path` made absolute against `base` (the configuration file's folder), without touching
/// the file system: a source that is missing at load fails its run, not the whole file.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    // `absolute` drops `.` components and never fails for a path that is already absolute.
    std::path::absolute(&joined).unwrap_or(joined)
}

/// Whether a URL carries a password (`https://user:secret@host/…`): credentials come from
/// the environment, never from the file.
fn has_password(source: &str) -> bool {
    let Some((_, rest)) = source.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cache_dir: PathBuf,
    pub(crate) webhook: Option<String>,
    pub(crate) destination: Destination,
    pub(crate) repositories: Vec<Repository>,
}

impl Config {
    /// Reads and checks the file. Relative paths in it (`cache_dir`, `data_dir`, a local
    /// `source`) are relative to the file's own folder, whatever the current folder is, as
    /// it is under cron or a service manager.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML of this shape, or a field is wrong (named).
    pub(crate) fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let folder = std::path::absolute(path)
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        Config::parse(&text, &folder).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks a file's text; relative paths in it are resolved against `folder`.
    pub(crate) fn parse(text: &str, folder: &Path) -> Result<Config, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let tz: Tz = match &file.timezone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| format!("timezone: {name:?} is not an IANA time zone"))?,
        };
        let default_schedule = file
            .schedule
            .as_deref()
            .map(|s| Schedule::parse(s, tz).map_err(|e| format!("schedule: {e}")))
            .transpose()?;
        let destination = match (file.storage, file.server) {
            (Some(_), Some(_)) => return Err("give [storage] (embedded) or [server], not both".into()),
            (None, Some(s)) => {
                let url = s.url.trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("server.url: {:?} is not an http:// or https:// address", s.url));
                }
                Destination::Server { url, token_env: s.token_env.unwrap_or_else(|| "BACKUP_TOKEN".to_owned()) }
            }
            (storage, None) => {
                let s = storage.unwrap_or(StorageFile { data_dir: None, store_url: None, catalog_url: None });
                Destination::Embedded {
                    data_dir: resolve(folder, &s.data_dir.unwrap_or_else(|| PathBuf::from("data/git-backup"))),
                    store_url: s.store_url,
                    catalog_url: s.catalog_url,
                }
            }
        };
        let cache_dir = match (file.cache_dir, &destination) {
            (Some(dir), _) => resolve(folder, &dir),
            (None, Destination::Embedded { data_dir, .. }) => data_dir.join("cache"),
            (None, Destination::Server { .. }) => resolve(folder, Path::new("data/git-backup-cache")),
        };
        if let Some(hook) = &file.webhook
            && !(hook.starts_with("http://") || hook.starts_with("https://"))
        {
            return Err(format!("webhook: {hook:?} is not an http:// or https:// address"));
        }
        if file.repositories.is_empty() {
            return Err("no [[repository]]: name at least one".into());
        }
        let mut repositories = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in file.repositories.into_iter().enumerate() {
            let at = |field: &str| format!("repository[{i}] ({}).{field}", r.name);
            let plain = |s: &str| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            };
            if !plain(&r.name) {
                return Err(format!("{}: {:?} must be letters, digits, '-', '_' or '.'", at("name"), r.name));
            }
            if !names.insert(r.name.clone()) {
                return Err(format!("{}: {:?} is named twice", at("name"), r.name));
            }
            if r.source.trim().is_empty() {
                return Err(format!("{}: empty", at("source")));
            }
            if has_password(&r.source) {
                return Err(format!("{}: has a password in it; put it in credentials_env's variable", at("source")));
            }
            if r.source.starts_with('-') {
                return Err(format!(
                    "{}: {:?} starts with '-', which git would read as an option",
                    at("source"),
                    r.source
                ));
            }
            if r.credentials_env.is_some()
                && r.source.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
                && !is_loopback_url(&r.source)
            {
                return Err(format!(
                    "{}: {:?} is plain http://, which would send the credentials in clear; use https://",
                    at("source"),
                    r.source
                ));
            }
            let source = if is_local_path(&r.source) {
                resolve(folder, Path::new(&r.source)).to_string_lossy().into_owned()
            } else {
                r.source
            };
            let collection_name = r.collection.clone().unwrap_or_else(|| format!("git-{}", r.name));
            let collection: CollectionId = collection_name.parse().map_err(|e| format!("{}: {e}", at("collection")))?;
            let schedule = match (&r.schedule, &default_schedule) {
                (Some(s), _) => Schedule::parse(s, tz).map_err(|e| format!("{}: {e}", at("schedule")))?,
                (None, Some(d)) => d.clone(),
                (None, None) => return Err(format!("{}: none, and no global schedule", at("schedule"))),
            };
            let size = |field: &str, raw: &Option<String>, default: u64| -> Result<u64, String> {
                match raw {
                    None => Ok(default),
                    Some(text) => parse_size::parse_size(text).map_err(|e| format!("{}: {text:?}: {e}", at(field))),
                }
            };
            let max_versions = r.max_versions.unwrap_or(30);
            let max_version_size = size("max_version_size", &r.max_version_size, 4 << 30)?;
            let max_collection_size = size(
                "max_collection_size",
                &r.max_collection_size,
                u64::from(max_versions).saturating_mul(max_version_size),
            )?;
            let limits = Limits::new(max_versions, max_version_size, max_collection_size)
                .map_err(|e| format!("{}: {e}", at("max_versions")))?;
            let mut spec = CollectionSpec::new(format!("{}-${{version}}.bundle", r.name), limits)
                .with_description(format!("git-backup of {}", r.name));
            if let Some(ret) = r.retention {
                let mut retention = RetentionSpec::named(ret.strategy).with_min_keep(ret.min_keep);
                for (key, value) in ret.options {
                    let text = match value {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(n) => n.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        other => {
                            return Err(format!(
                                "{}: {key} = {other} is not a text, number or boolean",
                                at("retention")
                            ));
                        }
                    };
                    retention = retention.with_option(key, text);
                }
                spec = spec.with_retention(retention);
            }
            repositories.push(Repository {
                name: r.name,
                source,
                collection,
                schedule,
                credentials_env: r.credentials_env,
                spec,
            });
        }
        Ok(Config { cache_dir, webhook: file.webhook, destination, repositories })
    }

    /// The repositories named (all when none is).
    ///
    /// # Errors
    /// A name that is not configured.
    pub(crate) fn select(&self, names: &[String]) -> Result<Vec<Repository>, String> {
        if names.is_empty() {
            return Ok(self.repositories.clone());
        }
        names
            .iter()
            .map(|n| {
                self.repositories.iter().find(|r| &r.name == n).cloned().ok_or_else(|| {
                    let known: Vec<&str> = self.repositories.iter().map(|r| r.name.as_str()).collect();
                    format!("no repository named {n:?} (configured: {})", known.join(", "))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "schedule = \"0 3 * * *\"\n[[repository]]\nname = \"r\"\nsource = \".\"\n";

    #[test]
    fn a_small_file_reads_with_defaults() {
        let c = Config::parse(BASE, Path::new("/etc/git-backup")).unwrap();
        assert!(
            matches!(&c.destination, Destination::Embedded { data_dir, .. } if data_dir.ends_with("data/git-backup"))
        );
        assert_eq!(c.repositories[0].collection.as_str(), "git-r");
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(c.repositories[0].schedule.next_after(t).unwrap().to_rfc3339(), "2026-12-02T03:00:00+00:00");
    }

    #[test]
    fn relative_paths_are_relative_to_the_file_not_the_current_folder() {
        let text = "cache_dir = \"cache\"\nschedule = \"0 3 * * *\"\n[storage]\ndata_dir = \"../data\"\n\
                    [[repository]]\nname = \"here\"\nsource = \".\"\n\
                    [[repository]]\nname = \"up\"\nsource = \"../../project\"\n\
                    [[repository]]\nname = \"abs\"\nsource = \"/srv/git/a.git\"\n\
                    [[repository]]\nname = \"url\"\nsource = \"https://example.org/a.git\"\n\
                    [[repository]]\nname = \"scp\"\nsource = \"git@example.org:me/a.git\"\n\
                    [[repository]]\nname = \"colon\"\nsource = \"./odd:name\"\n";
        let c = Config::parse(text, Path::new("/etc/git-backup")).unwrap();
        let sources: Vec<&str> = c.repositories.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(
            sources,
            [
                "/etc/git-backup",
                "/etc/git-backup/../../project",
                "/srv/git/a.git",
                "https://example.org/a.git",
                "git@example.org:me/a.git",
                "/etc/git-backup/odd:name",
            ]
        );
        assert_eq!(c.cache_dir, Path::new("/etc/git-backup/cache"));
        assert!(
            matches!(&c.destination, Destination::Embedded { data_dir, .. } if data_dir == Path::new("/etc/git-backup/../data"))
        );
    }

    #[test]
    fn credentials_travel_over_plain_http_only_to_this_machine() {
        for (source, ok) in [
            ("http://127.0.0.1:8080/r.git", true),
            ("http://localhost/r.git", true),
            ("http://[::1]:9/r.git", true),
            ("HTTP://example.org/r.git", false),
            ("http://127.0.0.1.example.org/r.git", false),
            ("https://example.org/r.git", true),
        ] {
            let text =
                format!("{BASE}credentials_env = \"T\"\n").replace("source = \".\"", &format!("source = \"{source}\""));
            assert_eq!(Config::parse(&text, Path::new("/")).is_ok(), ok, "{source}");
        }
    }

    #[test]
    fn time_zones_move_the_runs() {
        let c = Config::parse(&format!("timezone = \"Europe/Warsaw\"\n{BASE}"), Path::new("/")).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(c.repositories[0].schedule.next_after(t).unwrap().to_rfc3339(), "2026-12-02T02:00:00+00:00");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (BASE.replace("0 3 * * *", "0 3 * *"), "schedule"),
            (BASE.replace("0 3 * * *", "0 99 * * *"), "schedule"),
            (format!("timezone = \"Mars/Olympus\"\n{BASE}"), "timezone"),
            (format!("{BASE}max_version_size = \"lots\"\n"), "repository[0] (r).max_version_size"),
            (format!("{BASE}max_versions = 0\n"), "repository[0] (r).max_versions"),
            (format!("{BASE}colour = \"red\"\n"), "colour"),
            (BASE.replace("name = \"r\"", "name = \"a b\""), "repository[0] (a b).name"),
            (format!("{BASE}[[repository]]\nname = \"r\"\nsource = \"x\"\n"), "named twice"),
            (BASE.replace("source = \".\"", "source = \"https://me:secret@example.org/r.git\""), "credentials_env"),
            (format!("webhook = \"ftp://x\"\n{BASE}"), "webhook"),
            (BASE.replace("source = \".\"", "source = \"--upload-pack=touch /tmp/x\""), "as an option"),
            (
                format!("{BASE}credentials_env = \"T\"\n")
                    .replace("source = \".\"", "source = \"http://example.org/r.git\""),
                "plain http://",
            ),
            ("schedule = \"0 3 * * *\"\n".to_owned(), "no [[repository]]"),
            (format!("{BASE}[repository.retention]\nstrategy = \"gfs\"\nkeepDaily = [1]\n"), "retention"),
        ];
        for (text, field) in cases {
            let e = Config::parse(&text, Path::new("/")).unwrap_err();
            assert!(e.contains(field), "{field:?} not in {e:?} for\n{text}");
        }
    }
}
