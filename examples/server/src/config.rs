//! The command line: backup-repository's flags and environment variables, plus ours; where
//! manifests come from; what a refused start must leave as it found.

pub(crate) mod local;
pub(crate) mod manifests;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use backup_core::ScrubSample;
use clap::Parser;
use ipnet::IpNet;

/// How often progress is logged unless `--progress-interval` says otherwise.
pub(crate) const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// A drop-in backup-repository server: same flags, same manifests, same HTTP API.
#[derive(Debug, Clone, Parser)]
#[command(name = "backup-server", version, about)]
pub struct Args {
    /// Where users and collections come from; only `filesystem` is supported.
    #[arg(short = 'p', long, env = "BR_CONFIG_PROVIDER", default_value = "filesystem")]
    pub provider: String,
    /// Root of the manifests (`<root>/<namespace>/backups.riotkit.org/v1alpha1/...`).
    #[arg(long, env = "BR_CONFIG_LOCAL_PATH", default_value = "~/.backup-repository")]
    pub config_local_path: String,
    /// The namespace: the first folder under the root.
    #[arg(short = 'n', long, default_value = "backup-repository")]
    pub namespace: String,
    /// The HS256 key for tokens (16 bytes at least). A random one when absent: tokens then
    /// die with the process.
    #[arg(short = 's', long, env = "BR_JWT_SECRET_KEY", hide_env_values = true)]
    pub jwt_secret_key: Option<String>,
    /// The code `/ready` and `/metrics` ask for (`Authorization: <code>` or `?code=`); open
    /// when empty.
    #[arg(short = 'k', long, env = "BR_HEALTH_CHECK_KEY", default_value = "", hide_env_values = true)]
    pub health_check_key: String,
    /// Where blobs go: `file:///path`, `s3://bucket?endpoint=…`, `gs://…`, `az://…`,
    /// `memory://` (default: `file://<data-dir>/blobs`).
    #[arg(long, env = "BR_STORAGE_DRIVER_URL")]
    pub storage_url: Option<String>,
    /// `--storage-url` is a Google Cloud Storage bucket name.
    #[arg(long, env = "BR_USE_GOOGLE_CLOUD", default_value_t = false)]
    pub use_google_cloud: bool,
    /// Where metadata goes: `sqlite://PATH` or `postgres://…` (default:
    /// `sqlite://<data-dir>/catalog.db`, or PostgreSQL from the `--db-*` flags).
    #[arg(long, env = "BR_CATALOG_URL", hide_env_values = true)]
    pub catalog_url: Option<String>,
    /// The folder of the embedded defaults (catalog and blobs).
    #[arg(long, env = "BR_DATA_DIR", default_value = "./data/server")]
    pub data_dir: PathBuf,
    /// PostgreSQL host (backup-repository's flags; they select PostgreSQL when a user or a
    /// database name is given).
    #[arg(long, env = "BR_DB_HOSTNAME", default_value = "localhost")]
    pub db_hostname: String,
    /// PostgreSQL user.
    #[arg(long, env = "BR_DB_USERNAME")]
    pub db_user: Option<String>,
    /// PostgreSQL password.
    #[arg(long, env = "BR_DB_PASSWORD", hide_env_values = true)]
    pub db_password: Option<String>,
    /// PostgreSQL database.
    #[arg(long, env = "BR_DB_NAME")]
    pub db_name: Option<String>,
    /// PostgreSQL port.
    #[arg(long, env = "BR_DB_PORT", default_value_t = 5432)]
    pub db_port: u16,
    /// Where to listen (`:8080` means every address).
    #[arg(long, env = "BR_LISTEN", default_value = ":8080")]
    pub listen: String,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    #[arg(long, env = "BR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Requests per second per client on most routes.
    #[arg(long, default_value_t = 5)]
    pub rate_default_limit: u32,
    /// Logins and token refreshes per minute per client.
    #[arg(long, default_value_t = 10)]
    pub rate_auth_limit: u32,
    /// Collection health checks per minute per client.
    #[arg(long, default_value_t = 10)]
    pub rate_collection_health_limit: u32,
    /// `/health` and `/ready` per minute per client.
    #[arg(long, default_value_t = 160)]
    pub rate_server_health_limit: u32,
    /// How long `/ready` waits for the storage probe.
    #[arg(long, env = "BR_STORAGE_HEALTH_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub storage_health_timeout: Duration,
    /// How long writing one upload to storage may take.
    #[arg(long, env = "BR_STORAGE_IO_TIMEOUT", default_value = "2h", value_parser = duration)]
    pub storage_io_timeout: Duration,
    /// How long an upload request may take.
    #[arg(long, env = "BR_HTTP_UPLOAD_TIMEOUT", default_value = "180m", value_parser = duration)]
    pub http_upload_timeout: Duration,
    /// How long a download request may take.
    #[arg(long, env = "BR_HTTP_DOWNLOAD_TIMEOUT", default_value = "180m", value_parser = duration)]
    pub http_download_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (CIDR ranges or addresses; repeatable).
    #[arg(long = "trusted-proxy", value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// How long tokens live.
    #[arg(long, default_value = "6h", value_parser = duration)]
    pub token_lifetime: Duration,
    /// How long after the end of an upload's body the server waits for the client to cancel
    /// (backup-maker cancels when the backup command failed after its output ended).
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub upload_confirm_grace: Duration,
    /// The size of the parts an upload is written in (`2M`, `8MiB`, …). Memory per upload
    /// is about three parts. Default: 2 MiB on local disk and in memory, where parts only
    /// pipeline writes; 8 MiB on object stores (S3 wants at least 5 MiB).
    #[arg(long, value_parser = part_size)]
    pub upload_part_size: Option<usize>,
    /// At shutdown, how long requests in flight may take to finish before they are cut (cut
    /// uploads abort). Keep it under the orchestrator's grace period (Kubernetes: 30 s by
    /// default, 300 s in backup-repository's chart).
    #[arg(long, default_value = "4m", value_parser = duration)]
    pub shutdown_timeout: Duration,
    /// How long deleted and rotated-out versions stay restorable before their bytes go.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub trash_retention: Duration,
    /// Disk space kept in reserve beside the SQLite catalog (or the local storage) and given
    /// back when the disk fills, so that logins and deletions still work (`0`: none).
    #[arg(long, default_value = "64MiB", value_parser = byte_rate)]
    pub disk_reserve: u64,
    /// When `recover()` runs (6-field cron, seconds first: the default is every five minutes).
    #[arg(long, default_value = "0 */5 * * * *", value_parser = schedule)]
    pub maintenance_schedule: croner::Cron,
    /// How often manifests are re-read (0 turns it off; SIGHUP re-reads too).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub config_reload_interval: Duration,
    /// Print the stored form of this password (for a Secret's `data`) and exit.
    #[arg(long, value_name = "PASSWORD")]
    pub encode_password: Option<String>,
    /// Print the session id (sha256) of this token and exit.
    #[arg(long, value_name = "JWT")]
    pub hash_jwt: Option<String>,
    /// This server instance's name: its uploads are recorded as its own, and after a crash
    /// it releases them at start instead of waiting for their leases. Default
    /// `HOSTNAME:PORT`. Instances sharing a catalog must have different names.
    #[arg(long, env = "BR_INSTANCE_NAME")]
    pub instance_name: Option<String>,
    /// Pair the catalog with storage that already holds a repository although the catalog
    /// has no repository id (a restored or rebuilt catalog), or write the storage's missing
    /// marker again. Without it, a catalog and storage that do not match stop the start, and
    /// nothing is deleted.
    #[arg(long, default_value_t = false)]
    pub adopt_storage: bool,
    /// How long a chain of refreshed tokens lives after its login: then the password again.
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub token_max_refresh: Duration,
    /// Uploads in progress in one collection at once, across every instance sharing the
    /// catalog.
    #[arg(long, default_value_t = 8)]
    pub max_uploads_per_collection: u32,
    /// Uploads in progress for one user at once, on this instance.
    #[arg(long, default_value_t = 4)]
    pub max_uploads_per_user: u32,
    /// Downloads in progress for one user at once, on this instance.
    #[arg(long, default_value_t = 8)]
    pub max_downloads_per_user: u32,
    /// Open connections at once; more wait in the kernel's backlog.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Open connections from one address at once (trusted proxies are not limited).
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_address: usize,
    /// A connection with no request in progress (the first one included, before any byte of
    /// it) is closed after this long.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// How long a login may take, its body included (a client dripping its form is cut).
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub login_timeout: Duration,
    /// A request whose body or answer makes no progress for this long (a client that stops
    /// sending or stops reading) is cut.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub stall_timeout: Duration,
    /// When scrubs read versions back and check their digests (6-field cron, seconds first,
    /// or `off`). Damaged versions are quarantined: listed, never served.
    #[arg(long, default_value = "0 30 3 * * *", value_parser = optional_schedule)]
    pub scrub_schedule: Schedule,
    /// Which versions a scheduled scrub reads: `all`, a percentage (`10%`, chosen at random
    /// each time), or those not verified for a duration (`7d`: each version about weekly).
    #[arg(long, default_value = "7d", value_parser = scrub_sample)]
    pub scrub_sample: ScrubSample,
    /// How fast a scrub reads at most, per second (`64MiB`; `0` for no limit).
    #[arg(long, default_value = "64MiB", value_parser = byte_rate)]
    pub scrub_rate: u64,
    /// When the catalog is exported into the storage, under
    /// `_backup-server/.catalog-snapshots/` (6-field cron, or `off`).
    #[arg(long, default_value = "0 15 2 * * *", value_parser = optional_schedule)]
    pub catalog_snapshot_schedule: Schedule,
    /// How many scheduled catalog snapshots are kept (the oldest go).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub catalog_snapshots_kept: u32,
    /// Rebuild an empty catalog from the storage (each version's description next to its
    /// object), print a summary and exit. Refuses a catalog that is not empty.
    #[arg(long, default_value_t = false)]
    pub rebuild_catalog: bool,
    /// With `--rebuild-catalog`: also re-hash every object (a version with other bytes comes
    /// back quarantined).
    #[arg(long, default_value_t = false, requires = "rebuild_catalog")]
    pub verify: bool,
    /// With `--rebuild-catalog`: first load a scheduled catalog snapshot (`latest`, or its
    /// key), then add what the storage holds beyond it.
    #[arg(long, value_name = "latest|KEY", requires = "rebuild_catalog")]
    pub from_snapshot: Option<String>,
    /// Check the audit log's hash chain and the anchors of its head in the storage, print a
    /// summary and exit; exit 1 naming the first event that does not fit (a changed, removed
    /// or reordered row of the catalog's log).
    #[arg(long, default_value_t = false, conflicts_with_all = ["rebuild_catalog", "import_backup_repository"])]
    pub verify_audit: bool,
    /// A webhook that receives every event of the audit log, one JSON POST each (signed with
    /// `--webhook-secret-file`), delivered at least once and in order, retried with a growing
    /// pause, and dead-lettered after `--webhook-dead-after`. Targets with routing come from
    /// manifests.
    #[arg(long, env = "BR_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// A file holding the webhook's secret: each request carries `X-Backup-Signature:
    /// sha256=<hex HMAC-SHA256 of the body>` (whitespace around the secret is ignored).
    #[arg(long, value_name = "FILE", requires = "webhook_url")]
    pub webhook_secret_file: Option<PathBuf>,
    /// An SMTP server that e-mails every alert (`smtp://host:25`, `smtp://host:587?tls=required`,
    /// `smtps://user:password@host`), from `--smtp-from` to each `--smtp-to`, delivered and
    /// retried like the webhook; manifests' `spec.notify` e-mail targets go through it too.
    #[arg(long, env = "BR_SMTP_URL", value_name = "URL", requires = "smtp_from")]
    pub smtp_url: Option<String>,
    /// The sender of alert e-mails.
    #[arg(long, value_name = "ADDRESS")]
    pub smtp_from: Option<String>,
    /// A recipient of alert e-mails (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub smtp_to: Vec<String>,
    /// The pause after a webhook's first failure; it doubles with each next one.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub webhook_retry_min: Duration,
    /// The longest pause between a webhook's retries.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub webhook_retry_max: Duration,
    /// How long an event is retried before it is dead-lettered (counted in
    /// `backup_notifications_failed_total`, named on the dashboard).
    #[arg(long, default_value = "1d", value_parser = duration)]
    pub webhook_dead_after: Duration,
    /// How long one webhook request may take.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub webhook_timeout: Duration,
    /// How often an idle notification target looks for new events.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub notify_poll: Duration,
    /// How often the detectors look for missed windows, stale collections, lighter uploads,
    /// refusals and quarantines (their alerts go to the audit log and the targets).
    #[arg(long, default_value = "1m", value_parser = duration)]
    pub detector_interval: Duration,
    /// Audit events older than this are pruned at maintenance (`400d`; `0s`: kept forever).
    /// The chain stays verifiable: the hash where it was cut is kept.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub audit_max_age: Duration,
    /// Only this many of the newest audit events are kept (`0`: no limit).
    #[arg(long, default_value_t = 0)]
    pub audit_max_events: u64,
    /// A replica: another store that receives a copy of every committed version, as
    /// `NAME=URL` (`offsite=s3://bucket?endpoint=…`, `cold=file:///mnt/cold`, `az://…`;
    /// repeatable). Copies are verified by digest; a scrub or a download that finds the
    /// primary's object missing or damaged copies it back from a replica. Collections may add
    /// their own in their manifest's `spec.replicas`.
    #[arg(long = "replica-url", value_name = "NAME=URL", value_parser = replica_url)]
    pub replica_urls: Vec<(String, String)>,
    /// How long a version purged from the primary stays on the replicas (default: the trash
    /// retention), so that a rogue deletion can be undone from them.
    #[arg(long, value_parser = duration)]
    pub replica_delete_after: Option<Duration>,
    /// Copies to one replica made at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub replica_workers: u16,
    /// How fast replication reads the primary at most, per second and replica (`0`: no limit).
    #[arg(long, default_value = "64MiB", value_parser = byte_rate)]
    pub replica_rate: u64,
    /// How often an idle replica looks for new versions.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub replica_poll: Duration,
    /// How far a replica may lag (the age of its oldest version not yet copied) before the
    /// collections it copies fail their health's replication check.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub replica_lag_limit: Duration,
    /// Use the replica NAME (of `--replica-url`) as the primary store: the primary's region is
    /// gone. With an empty catalog, add `--rebuild-catalog` first (see the server README's
    /// runbook). The other replicas stay replicas.
    #[arg(long, value_name = "NAME")]
    pub promote_replica: Option<String>,
    /// Import backup-repository's versions, print a summary and exit: its table
    /// `uploaded_versions` from the PostgreSQL database the `--db-*` flags name, its objects
    /// (`<collection>/<filename>`) from `--storage-url`, into this server's catalog
    /// (`--catalog-url`, or SQLite in `--data-dir`; never the `--db-*` database).
    #[arg(long, default_value_t = false, conflicts_with = "rebuild_catalog")]
    pub import_backup_repository: bool,
    /// With `--import-backup-repository`: print what would be imported, change nothing.
    #[arg(long, default_value_t = false, requires = "import_backup_repository")]
    pub dry_run: bool,
    /// How often `--rebuild-catalog`, `--import-backup-repository` and collection
    /// verifications log their progress (done of total, bytes, rate, time left) between the
    /// start and the end of each phase; `0s` logs every step. In a command-line mode whose
    /// standard error is a terminal, a progress bar shows it instead.
    #[arg(long, env = "BR_PROGRESS_INTERVAL", default_value = "5s", value_parser = duration)]
    pub progress_interval: Duration,
}

/// `NAME=URL` of `--replica-url`.
fn replica_url(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or("expected NAME=URL (offsite=s3://bucket)")?;
    backup_core::replica::check_name(name).map_err(|e| e.to_string())?;
    if !url.contains("://") {
        return Err(format!("{name}: expected a store URL (s3://…, file:///…, az://…) after the ="));
    }
    Ok((name.to_owned(), url.to_owned()))
}

/// A schedule that may be off.
#[derive(Debug, Clone)]
pub struct Schedule(pub Option<croner::Cron>);

/// A 6-field cron expression, or `off`.
fn optional_schedule(s: &str) -> Result<Schedule, String> {
    if s == "off" {
        return Ok(Schedule(None));
    }
    schedule(s).map(|s| Schedule(Some(s)))
}

/// `all`, `N%`, or a duration.
fn scrub_sample(s: &str) -> Result<ScrubSample, String> {
    if s == "all" {
        return Ok(ScrubSample::All);
    }
    if let Some(p) = s.strip_suffix('%') {
        return match p.parse::<u8>() {
            Ok(p @ 1..=100) => Ok(ScrubSample::Percent(p)),
            _ => Err(format!("{s:?}: a percentage is 1% to 100%")),
        };
    }
    match duration(s) {
        Ok(d) if !d.is_zero() => Ok(ScrubSample::NotVerifiedFor(d)),
        _ => Err(format!("{s:?} is not `all`, a percentage (10%) or a duration (7d)")),
    }
}

/// A byte rate in backup-repository's size grammar (`64MiB`, `100M`); `0` for none.
fn byte_rate(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    backup_policy::parse_size(s).map_err(|e| e.to_string())
}

/// A 6-field cron expression (seconds first), read as the manifests' windows are (croner:
/// day of week 0-7, Sunday 0 or 7, or names).
fn schedule(s: &str) -> Result<croner::Cron, String> {
    if s.split_whitespace().count() != 6 {
        return Err(format!("{s:?}: six fields, seconds first: \"0 */5 * * * *\""));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(s)
        .map_err(|e| format!("{e} (six fields, seconds first: \"0 */5 * * * *\")"))
}

/// A part size: backup-repository's size grammar, from 64 KiB to 1 GiB.
fn part_size(s: &str) -> Result<usize, String> {
    let bytes = backup_policy::parse_size(s).map_err(|e| e.to_string())?;
    if !(64 << 10..=1 << 30).contains(&bytes) {
        return Err(format!("{bytes} bytes: a part is between 64 KiB and 1 GiB"));
    }
    usize::try_from(bytes).map_err(|e| e.to_string())
}

/// A Go-style duration (`2s`, `30m`, `180m`, `2h`, `1h30m`, `0s`).
fn duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR range"))
}

impl Args {
    /// The audit log's retention from `--audit-max-age` and `--audit-max-events`.
    pub(crate) fn audit_retention(&self) -> backup_core::audit::AuditRetention {
        let mut r = backup_core::audit::AuditRetention::forever();
        if !self.audit_max_age.is_zero() {
            r = r.with_max_age(self.audit_max_age);
        }
        if self.audit_max_events > 0 {
            r = r.with_max_events(self.audit_max_events);
        }
        r
    }

    /// The defaults of every flag, as `backup-server` with no flag gives them, without
    /// reading the environment (`BR_*` variables are ignored).
    pub fn defaults() -> Args {
        use clap::{CommandFactory, FromArgMatches};
        let command = Args::command().mut_args(|a| a.env(None::<&'static str>));
        let matches = command.try_get_matches_from(["backup-server"]).expect("the defaults parse");
        Args::from_arg_matches(&matches).expect("the defaults are valid")
    }

    /// The addresses to try binding, in order. Go's `:8080` means every address: IPv6 and
    /// IPv4 on one dual-stack socket, or IPv4 alone where IPv6 is off.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let bad = || format!("--listen {:?} is not HOST:PORT", self.listen);
        match self.listen.strip_prefix(':') {
            Some(port) => {
                let port: u16 = port.parse().map_err(|_| bad())?;
                Ok(vec![
                    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                ])
            }
            None => Ok(vec![self.listen.parse().map_err(|_| bad())?]),
        }
    }

    /// The instance name: `--instance-name`, or `HOSTNAME:PORT`.
    pub fn instance_name(&self) -> Result<String, String> {
        if let Some(name) = &self.instance_name {
            if name.is_empty() || name.len() > 200 {
                return Err("--instance-name: 1 to 200 bytes".to_owned());
            }
            return Ok(name.clone());
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let port = self.listen.rsplit(':').next().unwrap_or_default();
        Ok(format!("{host}:{port}"))
    }

    /// The manifest root with `~` expanded.
    pub fn config_root(&self) -> PathBuf {
        match self.config_local_path.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from(&self.config_local_path), |h| PathBuf::from(h).join(rest)),
            None => PathBuf::from(&self.config_local_path),
        }
    }

    /// The catalog URL: explicit, else PostgreSQL from the `--db-*` flags, else SQLite in the
    /// data folder. When importing from backup-repository, the `--db-*` flags name its
    /// database, not ours.
    pub fn catalog(&self) -> String {
        if let Some(url) = &self.catalog_url {
            return url.clone();
        }
        match self.source_database() {
            Some(url) if !self.import_backup_repository => url,
            _ => format!("sqlite://{}", self.data_dir.join("catalog.db").display()),
        }
    }

    /// The PostgreSQL URL the `--db-*` flags name, if they name one (a user or a database).
    pub fn source_database(&self) -> Option<String> {
        if self.db_user.is_some() || self.db_name.is_some() {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect::<String>()
            };
            let user = self.db_user.as_deref().map(enc).unwrap_or_default();
            let password = self.db_password.as_deref().map(|p| format!(":{}", enc(p))).unwrap_or_default();
            let at = if user.is_empty() && password.is_empty() { String::new() } else { format!("{user}{password}@") };
            return Some(format!(
                "postgres://{at}{}:{}/{}",
                self.db_hostname,
                self.db_port,
                self.db_name.as_deref().unwrap_or("postgres")
            ));
        }
        None
    }

    /// The storage URL.
    pub fn storage(&self) -> Result<String, String> {
        if let Some(name) = &self.promote_replica {
            return self
                .replica_urls
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, url)| url.clone())
                .ok_or_else(|| format!("--promote-replica {name}: no --replica-url is called {name}"));
        }
        match (&self.storage_url, self.use_google_cloud) {
            (Some(bucket), true) => Ok(format!("gs://{bucket}")),
            (None, true) => Err("--use-google-cloud needs --storage-url BUCKET".into()),
            (Some(url), false) => Ok(url.clone()),
            (None, false) => {
                let dir = std::path::absolute(self.data_dir.join("blobs")).map_err(|e| e.to_string())?;
                Ok(format!("file://{}", dir.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["backup-server"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn backup_repository_flags_parse() {
        let a = args(&[
            "--provider",
            "filesystem",
            "--config-local-path",
            "/etc/br",
            "-n",
            "ns",
            "--jwt-secret-key",
            "x",
            "--listen",
            ":9090",
            "--http-upload-timeout",
            "180m",
        ]);
        let addrs = a.listen_addrs().unwrap();
        assert_eq!(addrs.iter().map(SocketAddr::port).collect::<Vec<_>>(), [9090, 9090]);
        assert!(addrs[0].is_ipv6() && addrs[1].is_ipv4(), "{addrs:?}");
        assert_eq!(a.http_upload_timeout, Duration::from_secs(180 * 60));
        assert_eq!(a.config_root(), PathBuf::from("/etc/br"));
        assert!(a.catalog().starts_with("sqlite://"));
    }

    #[test]
    fn db_flags_make_a_postgres_url() {
        let a = args(&["--db-user", "br", "--db-password", "p@ss word", "--db-name", "backups", "--db-hostname", "db"]);
        assert_eq!(a.catalog(), "postgres://br:p%40ss%20word@db:5432/backups");
    }
}
