//! git-backup against repositories made here (no network): backups, skips, restores that
//! equal the source, a vanishing repository, the daemon on a seconds schedule, a damaged
//! version, and the same through a backup server over HTTP.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A repository with a commit on `main`, a branch and a tag.
fn source_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("source");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    commit(&repo, "README", "first\n");
    git(&repo, &["branch", "feature"]);
    git(&repo, &["tag", "-a", "v1.0", "-m", "the first"]);
    repo
}

fn commit(repo: &Path, file: &str, text: &str) {
    std::fs::write(repo.join(file), text).unwrap();
    git(repo, &["add", file]);
    git(repo, &["commit", "--quiet", "-m", &format!("change {file}")]);
}

fn refs(repo: &Path) -> String {
    let mut lines: Vec<String> =
        git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"]).lines().map(str::to_owned).collect();
    lines.sort();
    lines.join("\n")
}

fn log(repo: &Path) -> String {
    git(repo, &["log", "--all", "--format=%H %s"])
}

/// A configuration backing `repos` (name, source) up into `dir/data`.
fn write_config(dir: &Path, schedule: &str, extra: &str, repos: &[(&str, &Path)]) -> PathBuf {
    let mut text = format!(
        "cache_dir = \"{}\"\nschedule = \"{schedule}\"\n{extra}\n[storage]\ndata_dir = \"{}\"\n",
        dir.join("cache").display(),
        dir.join("data").display()
    );
    for (name, source) in repos {
        text += &format!(
            "\n[[repository]]\nname = \"{name}\"\nsource = \"{}\"\nmax_versions = 5\nmax_version_size = \"50MiB\"\n\
             [repository.retention]\nstrategy = \"gfs\"\nkeepLast = 5\n",
            source.display()
        );
    }
    let path = dir.join("git-backup.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_git-backup"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("GIT_BACKUP_CONFIG")
        // Outside any repository, as from cron: nothing may lean on the current folder's.
        .current_dir(config.parent().unwrap())
        .output()
        .expect("git-backup runs");
    eprintln!(
        "git-backup {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs git-backup from `cwd` with `env` added.
fn run_in(cwd: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_git-backup"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("GIT_BACKUP_CONFIG")
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("git-backup runs");
    eprintln!(
        "git-backup {args:?} in {}: {}\n{}",
        cwd.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(config: &Path) -> serde_json::Value {
    serde_json::from_slice(&run(config, &["status", "--json"]).stdout).expect("status --json")
}

#[test]
fn backups_skip_unchanged_refs_and_restore_to_equal_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let config = write_config(dir.path(), "0 3 * * *", "", &[("proj", &source)]);

    let first = run(&config, &["run-once"]);
    assert!(first.status.success());
    assert!(stdout(&first).contains("stored version 1"), "{}", stdout(&first));
    let (refs_1, log_1) = (refs(&source), log(&source));

    let again = run(&config, &["run-once"]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("unchanged since version 1, skipped"), "{}", stdout(&again));

    commit(&source, "src.rs", "fn main() {}\n");
    git(&source, &["tag", "v1.1"]);
    git(&source, &["branch", "-D", "feature"]);
    assert!(stdout(&run(&config, &["run-once", "proj"])).contains("stored version 2"));
    assert!(stdout(&run(&config, &["run-once", "--force"])).contains("stored version 3"), "--force stores anyway");

    let v1 = dir.path().join("restored-1");
    let out = run(&config, &["restore", "proj", "1", v1.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(refs(&v1), refs_1, "version 1 has the refs of then, the deleted branch too");
    assert_eq!(log(&v1), log_1);
    assert_eq!(std::fs::read_to_string(v1.join("README")).unwrap(), "first\n", "a working tree, checked out");
    assert!(!v1.join("src.rs").exists());

    let latest = dir.path().join("restored-latest");
    assert!(run(&config, &["restore", "proj", latest.to_str().unwrap()]).status.success());
    assert_eq!(refs(&latest), refs(&source));
    assert_eq!(log(&latest), log(&source));
    assert_eq!(git(&latest, &["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
    assert!(git(&latest, &["status", "--porcelain"]).is_empty(), "a clean checkout");

    let busy = run(&config, &["restore", "proj", latest.to_str().unwrap()]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("is not empty"), "{}", stderr(&busy));

    let s = status(&config);
    let row = &s["repositories"][0];
    assert_eq!((row["versions"].as_u64(), row["latestVersion"].as_u64()), (Some(3), Some(3)), "{s}");
    assert!(row["bytes"].as_u64().unwrap() > 0 && row["nextRun"].as_str().unwrap().ends_with("03:00:00Z"), "{s}");
    assert_eq!(row["failing"], false);
}

/// A one-request HTTP server on loopback that keeps what was POSTed to it.
fn webhook() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then the body by its length.
        loop {
            let n = conn.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    break;
                }
            }
        }
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        String::from_utf8_lossy(&received).into_owned()
    });
    (url, handle)
}

#[test]
fn a_vanished_repository_fails_alone_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let gone = dir.path().join("gone");
    std::fs::create_dir_all(&gone).unwrap();
    git(&gone, &["init", "--quiet"]);
    commit(&gone, "x", "x");
    let (hook, received) = webhook();
    let config =
        write_config(dir.path(), "0 3 * * *", &format!("webhook = \"{hook}\""), &[("gone", &gone), ("proj", &source)]);
    assert!(run(&config, &["run-once", "gone"]).status.success());
    std::fs::remove_dir_all(&gone).unwrap();

    let out = run(&config, &["run-once"]);
    assert_eq!(out.status.code(), Some(1), "a failure is the exit code");
    assert!(stderr(&out).contains("gone: failed"), "{}", stderr(&out));
    assert!(stdout(&out).contains("proj: stored version 1"), "the other repository ran: {}", stdout(&out));
    let request = received.join().unwrap();
    assert!(request.starts_with("POST /hook"), "{request}");
    assert!(request.contains("\"repository\":\"gone\"") && request.contains("backup.failed"), "{request}");

    let s = status(&config);
    let gone_row = &s["repositories"][0];
    assert_eq!(gone_row["failing"], true, "{s}");
    assert!(gone_row["lastError"].as_str().unwrap().contains("git"), "{s}");
    assert_eq!(gone_row["versions"], 1, "the version from before stays");
    assert_eq!(s["repositories"][1]["failing"], false);
    assert_eq!(run(&config, &["status"]).status.code(), Some(1), "status exits 1 while one fails");
}

#[test]
fn the_daemon_runs_on_its_schedule_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    std::fs::rename(&source, dir.path().join("project")).unwrap();
    let source = dir.path().join("project");
    // Every two seconds (six fields: seconds first); the source is relative to the file, and
    // the daemon runs from another folder.
    let config = relative_config(dir.path(), "*/2 * * * * *");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_git-backup"))
        .args(["daemon", "--config"])
        .arg(&config)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = || -> serde_json::Value {
        let text = std::fs::read_to_string(dir.path().join("conf/cache/state.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    };
    let wait_until = |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        let start = Instant::now();
        while !done(&state()) {
            assert!(start.elapsed() < Duration::from_secs(30), "{what} within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_until("version 1", &|s| s["proj"]["last_version"].as_u64() >= Some(1));
    commit(&source, "next", "more\n");
    wait_until("version 2", &|s| s["proj"]["last_version"].as_u64() >= Some(2));
    commit(&source, "again", "and more\n");
    wait_until("version 3", &|s| s["proj"]["last_version"].as_u64() >= Some(3));
    // One more tick, which finds nothing new.
    let stored_at = state()["proj"]["last_success"].clone();
    wait_until("a tick after version 3", &|s| s["proj"]["last_success"] != stored_at);
    let term = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(term.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the daemon stops within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    daemon.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "a clean stop: {status}\n{log}");
    assert!(log.contains("terminated: stopping"), "{log}");
    let mut out = String::new();
    daemon.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.contains("unchanged since version"), "ticks without changes are skipped: {out}");
}

#[test]
fn a_damaged_version_is_refused_at_restore() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let config = write_config(dir.path(), "0 3 * * *", "", &[("proj", &source)]);
    assert!(run(&config, &["run-once"]).status.success());
    // The bundle's object: the largest file under the blobs that is not a description.
    let mut objects: Vec<PathBuf> = walk(&dir.path().join("data/blobs"))
        .into_iter()
        .filter(|p| {
            !p.to_string_lossy().ends_with(".json") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    objects.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let object = objects.pop().expect("the bundle's object");
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();

    let dest = dir.path().join("restored");
    let out = run(&config, &["restore", "proj", "latest", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("digest"), "a clear reason: {}", stderr(&out));
    assert!(!dest.exists(), "nothing is left behind");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_backup_server_with_a_token() {
    use backup_server::{ServerConfig, spawn};
    let server = spawn(ServerConfig::for_tests().user("ci", "a password for tests", &[]).collection(
        "git-proj",
        5,
        "50M",
        "250M",
        &[("ci", &["collectionManager"])],
    ))
    .await
    .unwrap();
    let login: serde_json::Value = reqwest::Client::new()
        .post(server.url("/api/stable/auth/login"))
        .json(&serde_json::json!({ "username": "ci", "password": "a password for tests" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["token"].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let text = format!(
        "cache_dir = \"{}\"\nschedule = \"0 3 * * *\"\n[server]\nurl = \"{}\"\ntoken_env = \"GIT_BACKUP_TEST_TOKEN\"\n\
         [[repository]]\nname = \"proj\"\nsource = \"{}\"\n",
        dir.path().join("cache").display(),
        server.url(""),
        source.display()
    );
    let config = dir.path().join("server.toml");
    std::fs::write(&config, text).unwrap();
    let run_with_token = |args: Vec<String>, token: String| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_git-backup"))
                .args(&args)
                .arg("--config")
                .arg(&config)
                .current_dir(config.parent().unwrap())
                .env("GIT_BACKUP_TEST_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let out = run_with_token(vec!["run-once".into()], token.clone()).await.unwrap();
    assert!(stdout(&out).contains("stored version 1"), "{}{}", stdout(&out), stderr(&out));
    let out = run_with_token(vec!["run-once".into()], token.clone()).await.unwrap();
    assert!(stdout(&out).contains("unchanged since version 1"), "the refs came back as metadata: {}", stdout(&out));
    let dest = dir.path().join("restored");
    let out =
        run_with_token(vec!["restore".into(), "proj".into(), dest.display().to_string()], token.clone()).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(refs(&dest), refs(&source));
    let out = run_with_token(vec!["run-once".into()], "not a token".into()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 401"), "{}", stderr(&out));
    server.shutdown().await;
}

/// A configuration in `dir/conf` whose paths are all relative to it: the source is
/// `../project`, the data `data`, the cache `cache`.
fn relative_config(dir: &Path, schedule: &str) -> PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let path = conf.join("git-backup.toml");
    std::fs::write(
        &path,
        format!(
            "cache_dir = \"cache\"\nschedule = \"{schedule}\"\n[storage]\ndata_dir = \"data\"\n\
             [[repository]]\nname = \"proj\"\nsource = \"../project\"\nmax_versions = 10\nmax_version_size = \"50MiB\"\n"
        ),
    )
    .unwrap();
    path
}

/// A relative source keeps being backed up at every change: the mirror follows the source's
/// resolved path, not the folder it was cloned from (it used to fetch from itself for ever
/// and report "unchanged" while the source moved on).
#[test]
fn a_relative_source_is_backed_up_at_every_change_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    git(&project, &["init", "--quiet", "-b", "main"]);
    commit(&project, "README", "first\n");
    let config = relative_config(dir.path(), "0 3 * * *");
    // Another folder, which is itself a git repository: nothing may be taken from it.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    git(&elsewhere, &["init", "--quiet", "-b", "main"]);
    commit(&elsewhere, "OTHER", "not the project\n");
    let run_once = || run_in(&elsewhere, &config, &["run-once"], &[]);

    assert!(stdout(&run_once()).contains("stored version 1"));
    assert!(stdout(&run_once()).contains("unchanged since version 1, skipped"));
    for (n, file) in [(2, "a"), (3, "b")] {
        commit(&project, file, "change\n");
        let out = run_once();
        assert!(out.status.success());
        assert!(stdout(&out).contains(&format!("stored version {n}")), "a commit is a new version: {}", stdout(&out));
        assert!(stdout(&run_once()).contains(&format!("unchanged since version {n}")));
    }
    assert!(dir.path().join("conf/data/catalog.db").exists(), "data_dir is relative to the file");
    assert!(dir.path().join("conf/cache/state.json").exists(), "cache_dir is relative to the file");

    let restored = dir.path().join("restored");
    let out = run_in(&elsewhere, &config, &["restore", "proj", "latest", restored.to_str().unwrap()], &[]);
    assert!(out.status.success());
    assert_eq!(refs(&restored), refs(&project));
    assert_eq!(log(&restored), log(&project));

    // The source goes away: the run fails, it does not report an unchanged backup.
    std::fs::rename(&project, dir.path().join("moved")).unwrap();
    let out = run_once();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("proj: failed"), "{}", stderr(&out));
    let s: serde_json::Value =
        serde_json::from_slice(&run_in(&elsewhere, &config, &["status", "--json"], &[]).stdout).unwrap();
    assert_eq!(s["repositories"][0]["failing"], true, "{s}");
}

/// A mirror that does not follow its source is caught before a run says "unchanged".
#[test]
fn a_skip_is_proven_against_what_the_source_advertises() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let (hook, received) = webhook();
    let config = write_config(dir.path(), "0 3 * * *", &format!("webhook = \"{hook}\""), &[("proj", &source)]);
    assert!(stdout(&run(&config, &["run-once"])).contains("stored version 1"));
    // The mirror stops following the source (as a mirror cloned from "." did): its refs stay
    // those of version 1 while the source moves on.
    let mirror = dir.path().join("cache/proj.git");
    git(&mirror, &["config", "remote.origin.url", mirror.to_str().unwrap()]);
    git(&mirror, &["config", "remote.origin.fetch", "+refs/nothing/*:refs/nothing/*"]);
    commit(&source, "later", "a change the mirror will not see\n");

    let out = run(&config, &["run-once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!stdout(&out).contains("unchanged"), "{}", stdout(&out));
    assert!(stderr(&out).contains("differ from those"), "{}", stderr(&out));
    let request = received.join().unwrap();
    assert!(request.contains("backup.failed") && request.contains("differ from those"), "{request}");
    let s = status(&config);
    assert_eq!(s["repositories"][0]["failing"], true, "{s}");
    assert!(s["repositories"][0]["lastError"].as_str().unwrap().contains("refs/heads/main"), "{s}");
}

/// An account that may only upload stores garbage tagged with the current refs digest: runs
/// keep backing up (they trust only what this tool stored), and `restore latest` works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_forged_with_the_current_digest_is_no_reason_to_skip() {
    use backup_core::{Actor, UploadOptions, VersionSelector};
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let config = write_config(dir.path(), "0 3 * * *", "", &[("proj", &source)]);
    let run_blocking = |args: &'static [&'static str]| {
        let config = config.clone();
        async move { tokio::task::spawn_blocking(move || run(&config, args)).await.unwrap() }
    };
    assert!(stdout(&run_blocking(&["run-once"]).await).contains("stored version 1"));

    // The intruder writes through the same engine, as any uploader of the collection could.
    {
        let engine = backup_store::local_repository(dir.path().join("data")).await.unwrap().build().unwrap();
        let id = "git-proj".parse().unwrap();
        let ours =
            engine.download(&Actor::user("git-backup"), &id, VersionSelector::Latest).await.unwrap().into_parts().0;
        let mut options = UploadOptions::new();
        for (k, v) in &ours.metadata {
            options = options.metadata(k.clone(), v.clone());
        }
        let garbage = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"not a bundle"))]);
        let forged = engine.begin_upload(&Actor::user("intruder"), &id, garbage, options).await.unwrap();
        assert_eq!(forged.commit().await.unwrap().number, 2);
    }

    let out = run_blocking(&["run-once"]).await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("stored version 3"), "the forged version is no reason to skip: {}", stdout(&out));
    assert!(stdout(&run_blocking(&["run-once"]).await).contains("unchanged since version 3"));
    let restored = dir.path().join("restored");
    let dest = restored.to_str().unwrap().to_owned();
    let config2 = config.clone();
    let out = tokio::task::spawn_blocking(move || run(&config2, &["restore", "proj", "latest", &dest])).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(refs(&restored), refs(&source));
}

/// A loopback HTTP server that answers every request with `answer` and keeps the requests'
/// heads.
fn http_recorder(answer: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            kept.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (port, seen)
}

/// The forge token goes to the configured source only: a source that redirects elsewhere
/// does not get it sent on (git followed the redirect with the header before).
#[test]
fn the_forge_token_is_not_sent_where_the_source_redirects() {
    let (other, other_seen) =
        http_recorder("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into());
    let (forge, forge_seen) = http_recorder(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{other}/moved.git/info/refs?service=git-upload-pack\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("git-backup.toml");
    std::fs::write(
        &path,
        format!(
            "cache_dir = \"cache\"\nschedule = \"0 3 * * *\"\n[storage]\ndata_dir = \"data\"\n\
             [[repository]]\nname = \"forge\"\nsource = \"http://127.0.0.1:{forge}/repo.git\"\n\
             credentials_env = \"GIT_BACKUP_TEST_FORGE_TOKEN\"\n"
        ),
    )
    .unwrap();
    let out = run_in(dir.path(), &path, &["run-once"], &[("GIT_BACKUP_TEST_FORGE_TOKEN", "forge-secret-123")]);
    assert_eq!(out.status.code(), Some(1), "the redirect is not followed: {}", stdout(&out));
    let to_forge = forge_seen.lock().unwrap().join("\n");
    assert!(to_forge.contains("forge-secret-123"), "the configured source gets the token: {to_forge}");
    let to_other = other_seen.lock().unwrap().join("\n");
    assert!(!to_other.contains("forge-secret-123"), "the token went to the redirect's host: {to_other}");
}

/// git runs with a cleared environment: a backup token (or anything else of the caller's)
/// never reaches it, and only safe transports are allowed.
#[cfg(unix)]
#[test]
fn git_sees_only_what_it_needs_of_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let source = source_repo(dir.path());
    let config = write_config(dir.path(), "0 3 * * *", "", &[("proj", &source)]);
    let real_git = String::from_utf8(Command::new("sh").args(["-c", "command -v git"]).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let dump = dir.path().join("git-env.txt");
    let wrapper = bin.join("git");
    std::fs::write(&wrapper, format!("#!/bin/sh\nenv >> '{}'\nexec '{real_git}' \"$@\"\n", dump.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = run_in(
        dir.path(),
        &config,
        &["run-once"],
        &[("PATH", &path), ("BACKUP_TOKEN", "backup-secret-456"), ("GIT_DIR", "/nonexistent")],
    );
    assert!(out.status.success(), "a caller's GIT_DIR does not reach git either");
    let seen = std::fs::read_to_string(&dump).expect("git ran through the wrapper");
    assert!(!seen.contains("backup-secret-456"), "{seen}");
    assert!(!seen.contains("GIT_DIR="), "{seen}");
    assert!(seen.contains("GIT_ALLOW_PROTOCOL=file:git:http:https:ssh"), "{seen}");
}

/// The README's example, as shipped, in a fresh clone: `run-once --config
/// examples/git-backup/example.toml` from the clone's root backs the clone up, skips when
/// nothing changed, stores a new version after a commit, and restores the latest with the
/// same refs.
#[test]
fn the_shipped_example_backs_up_its_own_workspace_at_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("workspace");
    std::fs::create_dir_all(clone.join("examples/git-backup")).unwrap();
    git(&clone, &["init", "--quiet", "-b", "main"]);
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/example.toml")).unwrap();
    std::fs::write(clone.join("examples/git-backup/example.toml"), &example).unwrap();
    std::fs::write(clone.join(".gitignore"), "/data\n").unwrap();
    git(&clone, &["add", "."]);
    git(&clone, &["commit", "--quiet", "-m", "the workspace"]);
    let config = Path::new("examples/git-backup/example.toml");

    let out = run_in(&clone, config, &["run-once"], &[]);
    assert!(stdout(&out).contains("stored version 1"), "{}", stdout(&out));
    assert!(clone.join("data/git-backup/catalog.db").exists(), "the data lands in the workspace's ./data");
    assert!(stdout(&run_in(&clone, config, &["run-once"], &[])).contains("unchanged since version 1"));
    commit(&clone, "NEWS", "a change\n");
    assert!(stdout(&run_in(&clone, config, &["run-once"], &[])).contains("stored version 2"));
    let restored = dir.path().join("restored");
    let out = run_in(&clone, config, &["restore", "backup-engine", "latest", restored.to_str().unwrap()], &[]);
    assert!(out.status.success());
    assert_eq!(refs(&restored), refs(&clone));
}
