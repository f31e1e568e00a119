//! Shared by the client's tests: a real server on loopback (the same `spawn` the
//! `backup-server` binary runs), the `backup-cli` binary as a child process, and helpers.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use backup_policy::manifest::DocumentKind;
use backup_server::{RunningServer, ServerConfig, spawn};
use tokio::io::AsyncWriteExt;

mod peak_rss;
pub use peak_rss::PeakRss;

pub const PASSWORD: &str = "a password for tests";

/// A collection whose versions must be ASCII-armored OpenPGP messages.
pub fn openpgp_collection(id: &str, user: &str) -> String {
    format!(
        "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: {id}\nspec:\n    \
         filenameTemplate: {id}-${{version}}.gpg\n    maxBackupsCount: 5\n    maxOneVersionSize: 100M\n    \
         maxCollectionSize: 600M\n    strategyName: fifo\n    contentRule: openpgp\n    accessControl:\n        \
         - name: {user}\n          type: user\n          roles:\n              - collectionManager\n"
    )
}

/// The server the tests talk to: user `admin` manages `db` (plain) and `secure` (OpenPGP
/// only); user `reader` may only download from `db`.
pub fn config() -> ServerConfig {
    let mut config = ServerConfig::for_tests();
    // Deleted versions stay restorable.
    config.args_mut().trash_retention = Duration::from_secs(3600);
    config
        .user("admin", PASSWORD, &[])
        .user("reader", PASSWORD, &[])
        .collection("db", 10, "120M", "2G", &[("admin", &["collectionManager"]), ("reader", &["backupDownloader"])])
        .manifest(DocumentKind::Collection, "secure", openpgp_collection("secure", "admin"))
}

/// A server, a private config folder for the client's tokens, and a working folder.
pub struct Env {
    pub server: RunningServer,
    pub config_dir: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Env {
        Env::with(config()).await
    }

    pub async fn with(config: ServerConfig) -> Env {
        let server = spawn(config).await.expect("the server starts");
        Env { server, config_dir: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() }
    }

    pub fn url(&self) -> String {
        self.server.url("")
    }

    /// `backup-cli ARGS` against this server, with stdin from `input`.
    pub async fn run(&self, args: &[&str], input: &[u8]) -> Output {
        run_cli(&self.url(), self.config_dir.path(), self.work.path(), args, input, &[]).await
    }

    /// As `run`, with extra environment variables.
    pub async fn run_env(&self, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Output {
        run_cli(&self.url(), self.config_dir.path(), self.work.path(), args, input, env).await
    }

    /// Logs `user` in (the token goes to this env's config folder).
    pub async fn login(&self, user: &str) {
        let out =
            self.run(&["login", "--username", user, "--password-stdin"], format!("{PASSWORD}\n").as_bytes()).await;
        assert_ok(&out);
    }

    /// As `run`, and the client's peak resident memory.
    pub async fn run_measured(&self, args: &[&str]) -> (Output, u64) {
        run_measured(&self.url(), self.config_dir.path(), self.work.path(), args, b"", &[]).await
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

pub async fn run_cli(
    server: &str,
    config: &Path,
    work: &Path,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
) -> Output {
    run_measured(server, config, work, args, input, env).await.0
}

/// As `run_cli`, and the client's peak resident memory.
pub async fn run_measured(
    server: &str,
    config: &Path,
    work: &Path,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
) -> (Output, u64) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_backup-cli"));
    cmd.args(args)
        .current_dir(work)
        .env("BACKUP_SERVER", server)
        .env("BACKUP_CLI_CONFIG_DIR", config)
        .env_remove("BACKUP_TOKEN")
        .env_remove("BACKUP_PASSWORD")
        .env_remove("BACKUP_PASSPHRASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("backup-cli runs");
    let peak = PeakRss::watch(child.id().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("backup-cli finishes within 5 minutes")
        .unwrap();
    let _ = feed.await;
    (out, peak.bytes())
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "backup-cli failed ({}): {}{}", out.status, stderr(out), stdout(out));
}

#[track_caller]
pub fn assert_exit(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
    assert!(stderr(out).contains(says), "expected {says:?} in: {}", stderr(out));
}

/// Bytes that do not compress, of a given length.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The committed version numbers of a collection, through the client's `list --json`.
pub async fn numbers(env: &Env, collection: &str) -> Vec<u64> {
    let out = env.run(&["list", collection, "--json"], b"").await;
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["versions"].as_array().unwrap().iter().map(|v| v["versionNumber"].as_u64().unwrap()).collect()
}
