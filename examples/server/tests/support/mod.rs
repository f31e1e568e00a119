//! The server on loopback, with a copy of the example manifests, and a client: in this
//! process ([`Server::in_process`]) for tests of what it answers, or as the real binary
//! ([`Server::start`]) for tests that need a process (signals, kills, restarts, its log, its
//! descriptor limit).

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use backup_store::testing::{S3Server, database_url, fresh_schema, skipped, smtp_python};

pub const SECRET: &str = "a test secret, long enough for HS256";

/// The example manifests (examples/server/config) copied into a folder of the test's.
pub fn config_copy() -> tempfile::TempDir {
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
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), dir.path());
    dir
}

/// Writes a manifest into the copied configuration.
pub fn add_manifest(config: &Path, relative: &str, text: &str) {
    let path = config.join("backup-repository").join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Adds a collection without a content rule, which some-user manages: `count` versions of
/// `soft` each, `hard` in all (sizes as manifests write them).
pub fn add_plain_collection(config: &Path, name: &str, count: u32, soft: &str, hard: &str) {
    add_manifest(
        config,
        &format!("backups.riotkit.org/v1alpha1/backupcollections/{name}.yaml"),
        &format!(
            "---\napiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: {name}\nspec:\n    \
             filenameTemplate: {name}-${{version}}.bin\n    maxBackupsCount: {count}\n    maxOneVersionSize: {soft}\n    \
             maxCollectionSize: {hard}\n    contentRule: none\n    accessControl:\n        - name: some-user\n          \
             type: user\n          roles: [\"collectionManager\"]\n"
        ),
    );
}

/// Adds a user without global roles whose password is the examples' `admin`.
pub fn add_user(config: &Path, name: &str) {
    add_manifest(
        config,
        &format!("backups.riotkit.org/v1alpha1/backupusers/{name}.yaml"),
        &format!(
            r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: {name}
spec:
    email: {name}@example.org
    passwordFromRef:
        name: backup-repository-passwords
        entry: admin
    roles: []
"#
        ),
    );
}

/// Adds a system administrator from any address (the examples' admin is bound to one) whose
/// password is the examples' `admin`.
pub fn add_system_admin(config: &Path, name: &str) {
    add_manifest(
        config,
        &format!("backups.riotkit.org/v1alpha1/backupusers/{name}.yaml"),
        &format!(
            "---\napiVersion: backups.riotkit.org/v1alpha1\nkind: BackupUser\nmetadata:\n    name: {name}\nspec:\n    \
             email: {name}@example.org\n    passwordFromRef:\n        name: backup-repository-passwords\n        \
             entry: admin\n    roles: [\"systemAdmin\"]\n"
        ),
    );
}

/// A running server: a process (stopped with SIGKILL when dropped unless stopped before), or
/// one in this process (stopped when dropped).
pub struct Server {
    pub child: Option<Child>,
    /// The server in this process, for [`Server::in_process`].
    pub running: Option<backup_server::RunningServer>,
    pub base: String,
    pub data: PathBuf,
    pub stderr: PathBuf,
}

impl Server {
    /// Starts the server in this process with `args` (the binary's flags, plus `--listen
    /// 127.0.0.1:0`), as the binary would serve them, and returns once it listens: for tests of
    /// its answers, which need a socket but no process.
    pub async fn in_process(args: &[String]) -> Server {
        Self::in_process_with(server_config(args)).await
    }

    /// Starts the server in this process from `config` (say, [`server_config`] with a clock
    /// of the test's) and returns once it listens.
    pub async fn in_process_with(config: backup_server::ServerConfig) -> Server {
        let data = config.args().data_dir.clone();
        let running = backup_server::spawn(config).await.unwrap_or_else(|e| panic!("server did not start: {e}"));
        let base = running.url("");
        Server { child: None, running: Some(running), base, data, stderr: PathBuf::new() }
    }

    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`), waiting for it to listen.
    pub fn start(args: &[String]) -> Server {
        Self::try_start(args).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    pub fn try_start(args: &[String]) -> Result<Server, String> {
        Self::try_start_with(Command::new(env!("CARGO_BIN_EXE_backup-server")), args)
    }

    /// Starts the binary with at most `nofile` open descriptors (soft and hard limit).
    pub fn start_with_descriptor_limit(args: &[String], nofile: u32) -> Server {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_backup-server")]);
        Self::try_start_with(command, args).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    fn try_start_with(mut command: Command, args: &[String]) -> Result<Server, String> {
        let log = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                let base = format!("http://{addr}");
                return Ok(Server { child: Some(child), running: None, base, data: data_dir(args), stderr: log });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("did not listen within 30 s".into());
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the server did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The configuration the binary makes of `args` (the binary's flags, plus `--listen
/// 127.0.0.1:0`), for [`Server::in_process_with`] or [`backup_server::spawn`].
pub fn server_config(args: &[String]) -> backup_server::ServerConfig {
    use clap::Parser;
    let argv = ["backup-server", "--listen", "127.0.0.1:0", "--log-level", "warn"]
        .into_iter()
        .map(str::to_owned)
        .chain(args.iter().cloned());
    let parsed = backup_server::Args::try_parse_from(argv).unwrap_or_else(|e| panic!("server arguments: {e}"));
    backup_server::ServerConfig::from_args(parsed).unwrap()
}

/// The `--data-dir` of `args`.
fn data_dir(args: &[String]) -> PathBuf {
    args.iter().position(|a| a == "--data-dir").map(|i| PathBuf::from(&args[i + 1])).unwrap_or_default()
}

/// The standard arguments: the given configuration and data folders, a fixed secret.
pub fn args(config: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--config-local-path".into(),
        config.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--jwt-secret-key".into(),
        SECRET.into(),
    ];
    // The scheduled scrub and catalog snapshot write under the storage at night; tests that
    // compare the storage's files must not meet them by chance.
    for flag in ["--scrub-schedule", "--catalog-snapshot-schedule"] {
        if !extra.contains(&flag) {
            v.extend([flag.to_owned(), "off".to_owned()]);
        }
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// An armored OpenPGP-looking body of about `len` bytes.
pub fn armored(len: usize, seed: u8) -> Vec<u8> {
    let mut v = b"-----BEGIN PGP MESSAGE-----\n\n".to_vec();
    let mut x = seed as u32 | 1;
    while v.len() + 27 < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        v.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x >> 16) as usize % 64]);
        if v.len().is_multiple_of(65) {
            v.push(b'\n');
        }
    }
    v.extend_from_slice(b"\n-----END PGP MESSAGE-----\n");
    v
}

/// The JSON of a response, with its status.
pub async fn json(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text:?}"));
    (status, value)
}

/// Logs in; returns the token.
pub async fn login(
    client: &reqwest::Client,
    server: &Server,
    user: &str,
    password: &str,
    forwarded: Option<&str>,
) -> String {
    let (status, body) = try_login(client, server, user, password, forwarded).await;
    assert_eq!(status, 200, "login {user}: {body}");
    body["data"]["token"].as_str().unwrap().to_owned()
}

/// A login attempt (JSON form), `X-Forwarded-For` set if given: its status and JSON.
pub async fn try_login(
    client: &reqwest::Client,
    server: &Server,
    user: &str,
    password: &str,
    forwarded: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = client
        .post(server.url("/api/stable/auth/login"))
        .json(&serde_json::json!({ "username": user, "password": password }));
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    json(req.send().await.unwrap()).await
}

/// Uploads `body` as a raw request body; `X-Forwarded-For` set if given: its status and JSON.
pub async fn upload(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    collection: &str,
    body: Vec<u8>,
    forwarded: Option<&str>,
) -> (u16, serde_json::Value) {
    let url = server.url(&format!("/api/alpha/repository/collection/{collection}/version"));
    let mut req = client.post(url).bearer_auth(token).body(body);
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    json(req.send().await.unwrap()).await
}

/// The numbers of a collection's versions, as listed; `X-Forwarded-For` set if given.
pub async fn version_numbers(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    collection: &str,
    forwarded: Option<&str>,
) -> Vec<u64> {
    let mut req =
        client.get(server.url(&format!("/api/stable/repository/collection/{collection}/version"))).bearer_auth(token);
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    let (status, body) = json(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["versions"].as_array().unwrap().iter().map(|v| v["versionNumber"].as_u64().unwrap()).collect()
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the response when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Sends `request` as it is (the caller writes `Connection: close`) and reads the whole
/// response, de-chunking the body. `None` if the server closed without an answer.
pub async fn raw(addr: &str, request: &[u8]) -> Option<RawResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything (a refusal): ignore the
    // broken pipe and read what it said.
    let _ = socket.write_all(request).await;
    let mut out = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut out)).await.expect("answer within 30 s");
    if read.is_err() && out.is_empty() {
        return None;
    }
    parse_raw(&out)
}

pub fn parse_raw(out: &[u8]) -> Option<RawResponse> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?.to_owned();
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut body = out[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).ok()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            plain.extend_from_slice(rest.get(eol + 2..eol + 2 + size)?);
            rest = rest.get(eol + 4 + size..)?;
        }
        body = plain;
    }
    Some(RawResponse { status_line, status, headers, body })
}

/// A client for the tests: no proxy, generous timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().unwrap()
}

/// The arguments that lift the rate limits out of a test's way.
pub const NO_RATE_LIMITS: [&str; 8] = [
    "--rate-default-limit",
    "100000",
    "--rate-auth-limit",
    "100000",
    "--rate-collection-health-limit",
    "100000",
    "--rate-server-health-limit",
    "100000",
];

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The regular files under `dir`, recursively, but the engine's own records (the repository
/// marker, versions' descriptions, the audit log's anchors under `.audit/`, which the
/// maintenance writes): the bytes of versions and uploads.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != ".audit" {
                out.extend(files_under(&p));
            }
        } else if name != backup_core::store::REPOSITORY_MARKER
            && !name.ends_with(backup_core::store::DESCRIPTION_SUFFIX)
        {
            out.push(p);
        }
    }
    out
}

/// What a process holds: resident memory, open descriptors, threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Usage {
    /// The process's usage now, from `/proc`.
    pub fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
        Usage { rss_kib: field("VmRSS:"), fds, threads: field("Threads:") }
    }

    fn max(self, other: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib.max(other.rss_kib),
            fds: self.fds.max(other.fds),
            threads: self.threads.max(other.threads),
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rss={} MiB fds={} threads={}", self.rss_kib / 1024, self.fds, self.threads)
    }
}

/// Samples a process's usage every 50 ms until stopped; gives the peaks.
pub struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Usage>>,
}

impl PeakSampler {
    pub fn start(pid: u32) -> PeakSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Usage::of(pid);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(Usage::of(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(Usage::of(pid))
        });
        PeakSampler { stop, thread: Some(thread) }
    }

    pub fn stop(mut self) -> Usage {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or_default()
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
}

/// The dashboard tests' server: `alice` manages `db` (whose description holds markup) and
/// `web` (whose yearly backup window was missed, so it is failing), `bob` manages `other`;
/// the trash keeps versions an hour. Passwords are the user's name twice.
pub fn dashboard_config() -> backup_server::ServerConfig {
    use backup_policy::manifest::DocumentKind;
    let collection = |name: &str, description: &str, windows: &str, manager: &str| {
        format!(
            "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: {name}\nspec:\n    \
             description: '{description}'\n    filenameTemplate: {name}-${{version}}.sql.gz\n    maxBackupsCount: 5\n    \
             maxOneVersionSize: 1M\n    maxCollectionSize: 6M\n    strategyName: fifo\n    contentRule: none\n{windows}    \
             accessControl:\n        - name: {manager}\n          type: user\n          roles: [collectionManager]\n"
        )
    };
    let missed = "    windows:\n        - from: \"0 0 1 1 *\"\n          duration: 1m\n";
    let mut config = backup_server::ServerConfig::for_tests()
        .user("alice", "alicealice", &[])
        .user("bob", "bobbob", &[])
        .manifest(
            DocumentKind::Collection,
            "db",
            collection("db", "Nightly <b>database</b> dumps <script>alert(1)</script>", "", "alice"),
        )
        .manifest(DocumentKind::Collection, "web", collection("web", "Website files", missed, "alice"))
        .manifest(DocumentKind::Collection, "other", collection("other", "Bob only", "", "bob"));
    config.args_mut().trash_retention = Duration::from_secs(3600);
    config
}
