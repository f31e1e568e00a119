//! The client against a real server on loopback: round trips, the producer-failure protocol,
//! cut downloads, refusals and their exit codes, bounded memory.

mod support;

use std::time::Duration;

use backup_client::testing::{Lose, answer_losing_proxy, cutting_proxy, flipping_proxy};
use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_0_1_and_100_mib_round_trip_through_a_private_token() {
    let env = Env::start().await;
    env.login("admin").await;
    let tokens = env.config_dir.path().join("tokens.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is the user's alone");
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&tokens).unwrap()).unwrap();
    assert!(stored["servers"][env.url().trim_end_matches('/')]["token"].is_string(), "{stored}");

    let sizes = [0usize, 1, 100 << 20];
    for (i, len) in sizes.into_iter().enumerate() {
        let data = noise(len, i as u64 + 7);
        let name = format!("in-{len}");
        std::fs::write(env.path(&name), &data).unwrap();
        let (up, up_rss) = env.run_measured(&["upload", "db", &name]).await;
        assert_ok(&up);
        let number: u64 = stdout(&up).trim().parse().unwrap_or_else(|_| panic!("a number: {}", stdout(&up)));
        assert_eq!(number, i as u64 + 1);
        let out = format!("out-{len}");
        let (down, down_rss) = env.run_measured(&["download", "db", &number.to_string(), "-o", &out]).await;
        assert_ok(&down);
        assert!(std::fs::read(env.path(&out)).unwrap() == data, "{len} bytes come back identical");
        assert!(stderr(&down).contains("verified"), "the digest was checked: {}", stderr(&down));
        if len == 100 << 20 {
            eprintln!("client peak RSS for 100 MiB: upload {} MiB, download {} MiB", up_rss >> 20, down_rss >> 20);
            // Streams: far less than the file, whatever the build.
            assert!(up_rss < 64 << 20, "upload peak RSS {up_rss}");
            assert!(down_rss < 64 << 20, "download peak RSS {down_rss}");
        }
    }
    assert_eq!(numbers(&env, "db").await, [1, 2, 3]);

    // Standard input, the default file name, and standard output.
    let up = env.run(&["upload", "db", "-"], b"from a pipe").await;
    assert_ok(&up);
    assert_eq!(stdout(&up).trim(), "4");
    let down = env.run(&["download", "db"], b"").await;
    assert_ok(&down);
    assert_eq!(std::fs::read(env.path("db-4")).unwrap(), b"from a pipe", "the server's file name, latest");
    // A file under the name the server chooses is never replaced silently (as curl -J).
    std::fs::write(env.path("db-4"), b"precious").unwrap();
    let again = env.run(&["download", "db", "4"], b"").await;
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(env.path("db-4")).unwrap(), b"precious", "left as it was");
    assert_ok(&env.run(&["download", "db", "4", "--force"], b"").await);
    assert_eq!(std::fs::read(env.path("db-4")).unwrap(), b"from a pipe", "--force replaces it");
    let piped = env.run(&["download", "db", "v4", "-o", "-", "--quiet"], b"").await;
    assert_ok(&piped);
    assert_eq!(piped.stdout, b"from a pipe");

    // JSON for scripts.
    let json = env.run(&["upload", "db", "-", "--json"], b"json").await;
    assert_ok(&json);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["version"]["versionNumber"], 5);
    assert_eq!(v["version"]["filesize"], 4);
    let collections = env.run(&["collections", "--json"], b"").await;
    assert_ok(&collections);
    let v: Value = serde_json::from_slice(&collections.stdout).unwrap();
    let ids: Vec<&str> = v["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"db") && ids.contains(&"secure"), "{ids:?}");
    let table = env.run(&["list", "db"], b"").await;
    assert_ok(&table);
    assert!(stdout(&table).starts_with("VERSION") && stdout(&table).contains("db-5"), "{}", stdout(&table));

    // Metadata, any text (new lines too), kept with the version.
    let meta = env
        .run(
            &["upload", "db", "-", "--json", "--meta", "git.head=refs/heads/main", "--meta", "Note=two\nlines, «ü»"],
            b"m",
        )
        .await;
    assert_ok(&meta);
    let v: Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(v["version"]["metadata"]["git.head"], "refs/heads/main", "{v}");
    assert_eq!(v["version"]["metadata"]["note"], "two\nlines, «ü»", "names are lower case over HTTP: {v}");
    let listed = env.run(&["list", "db", "--json"], b"").await;
    let v: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v["versions"][5]["metadata"]["git.head"], "refs/heads/main", "{v}");
    assert_exit(&env.run(&["upload", "db", "-", "--meta", "a b=c"], b"x").await, 2, "\"a b\" is not a name");
    let too_big = format!("big={}", "x".repeat(5000));
    let refused = env
        .run(
            &[
                "upload",
                "db",
                "-",
                "--meta",
                &too_big,
                "--meta",
                &too_big.replace("big", "big2"),
                "--meta",
                &too_big.replace("big", "big3"),
                "--meta",
                &too_big.replace("big", "big4"),
            ],
            b"x",
        )
        .await;
    assert!(
        matches!(refused.status.code(), Some(1)),
        "headers over the server's limit are refused: {}",
        stderr(&refused)
    );
    assert_ok(&env.run(&["delete", "db", "6"], b"").await);

    // Delete and restore.
    assert_ok(&env.run(&["delete", "db", "5"], b"").await);
    assert_eq!(numbers(&env, "db").await, [1, 2, 3, 4]);
    assert_ok(&env.run(&["restore", "db", "v5"], b"").await);
    assert_eq!(numbers(&env, "db").await, [1, 2, 3, 4, 5]);
    let retention = env.run(&["retention", "db", "--json"], b"").await;
    assert_ok(&retention);
    let health = env.run(&["health", "db"], b"").await;
    assert_ok(&health);
    assert!(stdout(&health).contains("ok"), "{}", stdout(&health));
    let verify = env.run(&["verify", "db", "--json"], b"").await;
    assert_ok(&verify);
    let v: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["versions"].as_array().unwrap().len(), 5);

    // Logout revokes: the old token is refused afterwards, and it is forgotten.
    let token = stored["servers"][env.url().trim_end_matches('/')]["token"].as_str().unwrap().to_owned();
    assert_ok(&env.run(&["logout"], b"").await);
    assert_exit(&env.run(&["list", "db"], b"").await, 2, "not logged in");
    let revoked = env.run_env(&["list", "db"], b"", &[("BACKUP_TOKEN", &token)]).await;
    assert_exit(&revoked, 1, "the server refused");
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_stores_nothing_even_after_its_output_ended() {
    // No confirmation grace: the server commits as soon as a body is complete, so only the
    // client's holding back the body's end keeps a failed backup out.
    let env = Env::start().await;
    env.login("admin").await;
    let ok = env.run(&["upload", "db", "--command", "printf 'dump of mydb'"], b"").await;
    assert_ok(&ok);
    assert_eq!(stdout(&ok).trim(), "1");

    let failed_mid_way = env.run(&["upload", "db", "--command", "printf partial; exit 3"], b"").await;
    assert_exit(&failed_mid_way, 5, "failed");
    // The output closed, then a failure: pg_dump's late error.
    let late = "printf 'all of it'; exec 1>&-; sleep 0.5; exit 1";
    let failed_late = env.run(&["upload", "db", "--command", late], b"").await;
    assert_exit(&failed_late, 5, "the upload was cancelled");
    // A large output, then a failure.
    let big = "head -c 20000000 /dev/zero; exit 2";
    assert_exit(&env.run(&["upload", "db", "--command", big], b"").await, 5, "failed");
    let missing = env.run(&["upload", "db", "--command", "no-such-program-here"], b"").await;
    assert_exit(&missing, 5, "failed");

    assert_eq!(numbers(&env, "db").await, [1], "no failed command became a version");
    let next = env.run(&["upload", "db", "--command", "printf again"], b"").await;
    assert_ok(&next);
    assert_eq!(stdout(&next).trim(), "2", "the numbering goes on from the last stored version");
    env.server.shutdown().await;
}

/// An upload whose answer is lost after the whole body went out: the client asks the server
/// by the upload's idempotency key, finds the version stored, and says so (exit 0; it used to
/// exit 3, and a rerun stored the backup twice); a rerun with the same key stores nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_answer_is_lost_is_found_by_its_idempotency_key() {
    let env = Env::start().await;
    env.login("admin").await;
    std::fs::write(env.path("dump"), noise(300_000, 9)).unwrap();
    let token: Value =
        serde_json::from_slice(&std::fs::read(env.config_dir.path().join("tokens.json")).unwrap()).unwrap();
    let token = token["servers"][env.url().trim_end_matches('/')]["token"].as_str().unwrap().to_owned();
    let proxy = answer_losing_proxy(env.server.addr, Lose::Posts).await;
    let lost = run_cli(
        &format!("http://{proxy}"),
        env.config_dir.path(),
        env.work.path(),
        &["upload", "db", "dump", "--idempotency-key", "job-42"],
        b"",
        &[("BACKUP_TOKEN", &token)],
    )
    .await;
    assert_ok(&lost);
    assert_eq!(stdout(&lost).trim(), "1", "the stored version, found by its key");
    assert!(stderr(&lost).contains("answer was lost"), "{}", stderr(&lost));
    assert_eq!(numbers(&env, "db").await, [1]);
    // The job runs again with the same key: the server answers with the stored version.
    let rerun = env.run(&["upload", "db", "dump", "--idempotency-key", "job-42"], b"").await;
    assert_ok(&rerun);
    assert_eq!(stdout(&rerun).trim(), "1");
    assert!(stderr(&rerun).contains("already stored version 1"), "{}", stderr(&rerun));
    assert_eq!(numbers(&env, "db").await, [1], "stored once");
    // The server answers a known key as soon as it reads it, long before a big body is sent
    // whole: what was sent is not what is stored, and that is no integrity error (it used to
    // be, once in a dozen runs of the small body above).
    std::fs::write(env.path("big"), noise(32 << 20, 10)).unwrap();
    let early = env.run(&["upload", "db", "big", "--idempotency-key", "job-42"], b"").await;
    assert_ok(&early);
    assert_eq!(stdout(&early).trim(), "1");
    assert_eq!(numbers(&env, "db").await, [1], "stored once");
    // Without --idempotency-key each run has its own key: a new version.
    assert_ok(&env.run(&["upload", "db", "dump"], b"").await);
    assert_eq!(numbers(&env, "db").await, [1, 2]);
    let bad = env.run(&["upload", "db", "dump", "--idempotency-key", "two words"], b"").await;
    assert_exit(&bad, 2, "idempotency");
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_mid_way_leaves_no_file_under_the_target_name() {
    let env = Env::start().await;
    env.login("admin").await;
    let data = noise(4 << 20, 3);
    std::fs::write(env.path("in"), &data).unwrap();
    assert_ok(&env.run(&["upload", "db", "in"], b"").await);
    std::fs::write(env.path("previous"), b"the previous backup").unwrap();

    let proxy = cutting_proxy(env.server.addr, 1 << 20).await;
    let through_proxy = format!("http://{proxy}");
    let token: Value =
        serde_json::from_slice(&std::fs::read(env.config_dir.path().join("tokens.json")).unwrap()).unwrap();
    let token = token["servers"][env.url().trim_end_matches('/')]["token"].as_str().unwrap().to_owned();
    let cut = run_cli(
        &through_proxy,
        env.config_dir.path(),
        env.work.path(),
        &["download", "db", "1", "-o", "previous", "--attempts", "1"],
        b"",
        &[("BACKUP_TOKEN", &token)],
    )
    .await;
    assert_exit(&cut, 3, "cut");
    assert_eq!(std::fs::read(env.path("previous")).unwrap(), b"the previous backup", "the old file is untouched");
    let cut = run_cli(
        &through_proxy,
        env.config_dir.path(),
        env.work.path(),
        &["download", "db", "1", "-o", "fresh", "--attempts", "1"],
        b"",
        &[("BACKUP_TOKEN", &token)],
    )
    .await;
    assert_exit(&cut, 3, "cut");
    let left: Vec<String> = std::fs::read_dir(env.work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n == "fresh" || n.ends_with(".partial")), "nothing left behind: {left:?}");

    // Straight from the server, the same download completes.
    assert_ok(&env.run(&["download", "db", "1", "-o", "previous"], b"").await);
    assert!(std::fs::read(env.path("previous")).unwrap() == data);
    env.server.shutdown().await;
}

/// A download damaged in transit: every byte arrives, the digest does not match, the client
/// exits 4 and nothing is left under the target name (an older file there stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_damaged_in_transit_exits_4_and_leaves_no_file() {
    let env = Env::start().await;
    env.login("admin").await;
    std::fs::write(env.path("in"), noise(1 << 20, 11)).unwrap();
    assert_ok(&env.run(&["upload", "db", "in"], b"").await);
    std::fs::write(env.path("previous"), b"the previous backup").unwrap();
    let token: Value =
        serde_json::from_slice(&std::fs::read(env.config_dir.path().join("tokens.json")).unwrap()).unwrap();
    let token = token["servers"][env.url().trim_end_matches('/')]["token"].as_str().unwrap().to_owned();
    let proxy = flipping_proxy(env.server.addr, 700_000).await;
    for target in ["previous", "fresh"] {
        let damaged = run_cli(
            &format!("http://{proxy}"),
            env.config_dir.path(),
            env.work.path(),
            &["download", "db", "1", "-o", target],
            b"",
            &[("BACKUP_TOKEN", &token)],
        )
        .await;
        assert_exit(&damaged, 4, "digest");
        assert!(stderr(&damaged).contains("nothing was written under the target name"), "{}", stderr(&damaged));
    }
    assert_eq!(std::fs::read(env.path("previous")).unwrap(), b"the previous backup", "the old file is untouched");
    let left: Vec<String> = std::fs::read_dir(env.work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n == "fresh" || n.ends_with(".partial")), "nothing left behind: {left:?}");
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failures_say_why_with_their_exit_codes() {
    let env = Env::start().await;

    let wrong = env.run(&["login", "--username", "admin", "--password-stdin"], b"not the password\n").await;
    assert_exit(&wrong, 1, "the server refused");
    let no_password = env.run(&["login", "--username", "admin"], b"").await;
    assert_exit(&no_password, 2, "no password");
    assert_exit(&env.run(&["list", "db"], b"").await, 2, "not logged in");

    // Tokens of a second server live a second, on a clock the test moves.
    let clock = std::sync::Arc::new(backup_core::ManualClock::starting_now());
    let mut short = config().clock(clock.clone());
    short.args_mut().token_lifetime = Duration::from_secs(1);
    let short = Env::with(short).await;
    short.login("admin").await;
    clock.advance(backup_core::chrono::Duration::seconds(2));
    let expired = short.run(&["list", "db"], b"").await;
    assert_exit(&expired, 1, "log in again");
    short.server.shutdown().await;

    env.login("admin").await;
    let missing = env.run(&["list", "no-such-collection"], b"").await;
    assert_exit(&missing, 1, "HTTP 404");
    let missing = env.run(&["list", "no-such-collection", "--json"], b"").await;
    let v: Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(v["exitCode"], 1, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cannot find"), "{v}");
    let bad_version = env.run(&["download", "db", "yesterday"], b"").await;
    assert_exit(&bad_version, 2, "not a version");
    let bad_flag = env.run(&["upload"], b"").await;
    assert_eq!(bad_flag.status.code(), Some(2), "{}", stderr(&bad_flag));
    let no_file = env.run(&["upload", "db", "no-such-file"], b"").await;
    assert_exit(&no_file, 2, "no-such-file");

    // A token narrowed to downloading: the same user's upload is refused with it.
    let scoped = env
        .run(
            &["login", "--username", "admin", "--password-stdin", "--scope", "db=backupDownloader"],
            format!("{PASSWORD}\n").as_bytes(),
        )
        .await;
    assert_ok(&scoped);
    assert_exit(&env.run(&["upload", "db", "-"], b"data").await, 1, "not authorized to upload");
    assert_exit(&env.run(&["login", "--username", "admin", "--scope", "db"], b"").await, 2, "COLLECTION=ROLE");

    // A downloader may not upload: the server's reason comes through.
    let reader = Env::start().await;
    reader.login("reader").await;
    let refused = reader.run(&["upload", "db", "-"], b"data").await;
    assert_exit(&refused, 1, "not authorized to upload");
    // The refusal, not the command the client then stopped, is what the exit code says.
    let refused = reader.run(&["upload", "db", "--command", "head -c 50000000 /dev/zero"], b"").await;
    assert_exit(&refused, 1, "not authorized to upload");

    let addr = env.server.addr;
    env.server.shutdown().await;
    let down = run_cli(
        &format!("http://{addr}"),
        env.config_dir.path(),
        env.work.path(),
        &["list", "db", "--attempts", "2"],
        b"",
        &[],
    )
    .await;
    assert_exit(&down, 3, "cannot connect");
    assert!(stderr(&down).contains("trying again"), "an idempotent call is retried: {}", stderr(&down));
    let down =
        run_cli(&format!("http://{addr}"), env.config_dir.path(), env.work.path(), &["upload", "db", "-"], b"x", &[])
            .await;
    assert_exit(&down, 3, "cannot connect");
    assert!(!stderr(&down).contains("trying again"), "an upload is never retried: {}", stderr(&down));
    reader.server.shutdown().await;
}

/// `list` shows each version's retention lock, and `delete` of a locked version is refused
/// with the server's reason (exit 2: the request was refused, nothing changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_locks_and_a_locked_version_is_not_deleted() {
    let lock = backup_core::LockPolicy::new(backup_core::LockMode::Compliance, backup_core::chrono::Duration::days(30));
    let env = Env::with(
        config().collection("vault", 3, "1M", "3M", &[("admin", &["collectionManager"])]).lock("vault", lock),
    )
    .await;
    env.login("admin").await;
    assert_ok(&env.run(&["upload", "vault", "-"], b"keep me").await);
    let table = env.run(&["list", "vault"], b"").await;
    assert_ok(&table);
    let text = stdout(&table);
    assert!(text.lines().next().unwrap().ends_with("LOCK"), "{text}");
    assert!(text.contains("compliance until"), "{text}");
    let refused = env.run(&["delete", "vault", "1"], b"").await;
    assert!(!refused.status.success(), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("locked"), "{}", stderr(&refused));
    assert_eq!(numbers(&env, "vault").await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shows_a_managers_events_as_a_table_json_and_a_follow() {
    let env = Env::start().await;
    env.login("admin").await;
    assert_ok(&env.run(&["upload", "db", "-"], b"first").await);
    let table = env.run(&["audit", "db"], b"").await;
    assert_ok(&table);
    let text = stdout(&table);
    assert!(text.lines().next().unwrap().starts_with("SEQ"), "{text}");
    assert!(text.contains("version.commit") && text.contains("admin"), "{text}");
    let json_out = env.run(&["--json", "audit", "db"], b"").await;
    assert_ok(&json_out);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&json_out)).unwrap();
    let events = doc["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["collection"] == "db" && e["hash"].as_str().is_some_and(|h| h.len() == 64)));
    let last = events.last().unwrap()["seq"].as_u64().unwrap();

    // --follow prints what comes after, one JSON line per event, until it is stopped.
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_backup-cli"))
        .args(["--server", &env.url(), "--json", "audit", "db", "--follow", "--after", &last.to_string()])
        .env("BACKUP_CLI_CONFIG_DIR", env.config_dir.path())
        .env_remove("BACKUP_TOKEN")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert_ok(&env.run(&["upload", "db", "-"], b"second").await);
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(follow.stdout.take().unwrap()));
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("a line within 20 s")
        .unwrap()
        .expect("a line");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((event["action"].as_str(), event["version"].as_u64()), (Some("version.commit"), Some(2)), "{line}");
    let _ = follow.kill().await;

    // A downloader manages nothing: refused.
    let reader = Env::with(config()).await;
    reader.login("reader").await;
    let refused = reader.run(&["audit"], b"").await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("403") || stderr(&refused).contains("systemAdmin"), "{}", stderr(&refused));
}
