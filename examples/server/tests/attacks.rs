//! The hostile-client suite: the real binary on loopback, attacked as the security review did,
//! each attack bounded in count and time. While an attack runs, the server's resident memory,
//! open descriptors and threads are sampled from `/proc` and asserted under a stated bound,
//! and a legitimate client is answered meanwhile. Each test prints its figures as
//! `ATTACK name peak: …` (run with `--nocapture` to see them).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    NO_RATE_LIMITS, PeakSampler, RawResponse, Server, Usage, add_manifest, add_plain_collection, add_user, args,
    armored, client, config_copy, json, login, parse_raw, try_login, version_numbers,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Short timeouts so that each attack ends within seconds.
const QUICK: [&str; 6] = ["--idle-timeout", "2s", "--stall-timeout", "3s", "--login-timeout", "3s"];

fn start(extra: &[&str]) -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    // Without the OpenPGP rule, for large uploads.
    add_plain_collection(config.path(), "attack", 10, "20M", "200M");
    (Server::start(&args(config.path(), data.path(), &with_defaults(extra))), config, data)
}

/// `extra`, then [`QUICK`] and [`NO_RATE_LIMITS`] for the flags `extra` does not set.
fn with_defaults<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = extra.to_vec();
    for pair in QUICK.chunks(2).chain(NO_RATE_LIMITS.chunks(2)) {
        if !extra.contains(&pair[0]) {
            all.extend(pair);
        }
    }
    all
}

/// A connection from a given loopback address (Linux answers on all of 127/8).
async fn connect_from(source: &str, server: &Server) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(server.addr().parse().unwrap()).await
}

/// A request from a given loopback address; its raw answer.
async fn raw_from(source: &str, server: &Server, request: &[u8]) -> Option<RawResponse> {
    let mut socket = connect_from(source, server).await.ok()?;
    let _ = socket.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut out)).await;
    parse_raw(&out)
}

/// Whether the server closed `socket` within `within` (reads end or fail).
async fn closed_by_server(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends `head`, then `prefix` and `fill` up to `total` bytes of body (in 64 KiB writes, as
/// fast as the server takes them), while reading the answer; the answer, and how long it took
/// to come.
async fn stream_request(
    server: &Server,
    head: String,
    prefix: Vec<u8>,
    total: usize,
    fill: u8,
) -> (Option<RawResponse>, Duration) {
    let socket = TcpStream::connect(server.addr()).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(&prefix).await.is_err() {
            return;
        }
        let chunk = vec![fill; 64 * 1024];
        let mut sent = prefix.len();
        while sent < total {
            let n = chunk.len().min(total - sent);
            if write.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            sent += n;
        }
    });
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut answered = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), read.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                answered.get_or_insert_with(|| started.elapsed());
                out.extend_from_slice(&buf[..n]);
                // The head and a small JSON body are all a refusal has.
                if parse_raw(&out).is_some_and(|r| !r.body.is_empty()) {
                    break;
                }
            }
            _ => break,
        }
    }
    writer.abort();
    (parse_raw(&out), answered.unwrap_or_else(|| started.elapsed()))
}

fn report(name: &str, base: Usage, peak: Usage) {
    println!("ATTACK {name} peak: {peak} (before: {base})");
}

/// Finding 1: a form's preamble and part headers are bounded, and nothing of a body is read
/// before the permission and the collection are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_bodies_are_bounded_and_checked_first() {
    let (server, _config, _data) = start(&[]);
    let c = client();
    let unprivileged = login(&c, &server, "unprivileged", "admin", None).await;
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let base = Usage::of(server.pid());
    let sampler = PeakSampler::start(server.pid());
    let head = |token: &str, collection: &str, total: usize| {
        format!(
            "POST /api/alpha/repository/collection/{collection}/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        )
    };
    // 256 MiB that never show the boundary, from a user without any role.
    let total = 256 << 20;
    let (r, took) = stream_request(&server, head(&unprivileged, "iwa-ait", total), Vec::new(), total, b'a').await;
    let r = r.expect("an answer");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(took < Duration::from_secs(5), "refused before the body: {took:?}");
    // An endless part header, from a user who may upload.
    let endless = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Endless: ".to_vec();
    let (r, _) = stream_request(&server, head(&uploader, "iwa-ait", 64 << 20), endless.clone(), 64 << 20, b'h').await;
    let r = r.expect("an answer");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("before the field"), "{r:?}");
    // The same to a collection that does not exist: refused before a byte is parsed.
    let (r, took) =
        stream_request(&server, head(&uploader, "no-such-collection", 64 << 20), endless, 64 << 20, b'h').await;
    assert_eq!(r.expect("an answer").status, 404);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let peak = sampler.stop();
    report("multipart", base, peak);
    assert!(peak.rss_kib < base.rss_kib + 96 * 1024, "memory grew: {peak} from {base}");
    // A legitimate form still uploads.
    let form = reqwest::multipart::Form::new()
        .text("note", "before the file")
        .part("file", reqwest::multipart::Part::bytes(armored(10_000, 3)).file_name("b.asc"));
    let url = server.url("/api/alpha/repository/collection/iwa-ait/version");
    let (status, body) = json(c.post(url).bearer_auth(&uploader).multipart(form).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

/// Finding 2: silent sockets, unfinished HTTP/2 prefaces and unfinished headers are closed
/// after the idle time; connections past the cap wait in the backlog, so descriptors never
/// run out (the process gets 256); one address cannot hold more than its share; a login body
/// dripped a byte at a time is cut; a legitimate client is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_end_and_descriptors_last() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let all = with_defaults(&["--max-connections-per-address", "50"]);
    let server = Server::start_with_descriptor_limit(&args(config.path(), data.path(), &all), 256);
    let base = Usage::of(server.pid());
    let sampler = PeakSampler::start(server.pid());
    // 300 attackers from six addresses: 50 each, more than the 128 connections the
    // descriptor limit leaves.
    let mut attackers = Vec::new();
    for i in 0..300 {
        let source = format!("127.0.0.{}", 10 + i / 50);
        let mut s = connect_from(&source, &server).await.expect("connect (or wait in the backlog)");
        match i % 3 {
            0 => {}
            1 => s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM").await.unwrap(),
            _ => s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap(),
        }
        attackers.push(s);
    }
    // A 51st connection from an attacking address is closed at once.
    let mut extra = connect_from("127.0.0.10", &server).await.unwrap();
    // The legitimate client, from its own address, is answered while the attack holds.
    let started = Instant::now();
    let r = raw_from("127.0.0.2", &server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let waited = started.elapsed();
    assert_eq!(r.expect("an answer").status, 200);
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(closed_by_server(&mut extra, Duration::from_secs(5)).await, "the address was over its share");
    // Every attacker is closed by the server within the idle time (plus the backlog's wait).
    let mut open = 0;
    for s in &mut attackers {
        if !closed_by_server(s, Duration::from_secs(12)).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "connections left open");
    // A login body dripped a byte every 500 ms: cut by the login timeout (3 s).
    let mut drip = connect_from("127.0.0.3", &server).await.unwrap();
    drip.write_all(
        b"POST /api/stable/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        if drip.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), drip.read(&mut buf)).await {
            out.extend_from_slice(&buf[..n]);
            if n == 0 || parse_raw(&out).is_some() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the dripping login is still open");
    }
    if let Some(r) = parse_raw(&out) {
        assert_eq!(r.status, 408, "{r:?}");
    }
    let peak = sampler.stop();
    report("connections", base, peak);
    assert!(peak.fds < 256, "{peak}");
    assert!(peak.threads < base.threads + 16, "{peak} from {base}");
    let r = raw_from("127.0.0.2", &server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.expect("still serving").status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Finding 3: a wrong password for a known user or key costs what an unknown name costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timing_does_not_tell_who_exists() {
    let (server, _config, _data) = start(&[]);
    let c = client();
    let cases = ["some-user", "nobody-here", "some-user$uploader", "some-user$no-such-key"];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    // Warm-up, then interleaved samples.
    let _ = try_login(&c, &server, "some-user", "wrong", None).await;
    for _ in 0..9 {
        for (i, name) in cases.iter().enumerate() {
            let started = Instant::now();
            let (status, _) = try_login(&c, &server, name, "wrong password", None).await;
            times[i].push(started.elapsed());
            assert_eq!(status, 401);
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    println!("ATTACK login-timing medians: {:?}", cases.iter().zip(&medians).collect::<Vec<_>>());
    let (lo, hi) = (medians.iter().min().unwrap(), medians.iter().max().unwrap());
    assert!(hi.as_secs_f64() < lo.as_secs_f64() * 1.5, "medians differ: {medians:?}");
}

/// Finding 4: downloads that are never read hold neither threads nor memory, are capped per
/// user and cut when they stall; logins and other requests are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_downloads_are_capped_and_cut() {
    let (server, _config, _data) = start(&["--max-downloads-per-user", "8"]);
    let c = client();
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let url = server.url("/api/alpha/repository/collection/attack/version");
    let body: Vec<u8> = (0..(16u32 << 20)).map(|i| (i % 251) as u8).collect();
    let (status, b) = json(c.post(&url).bearer_auth(&manager).body(body).send().await.unwrap()).await;
    assert_eq!(status, 200, "{b}");
    let base = Usage::of(server.pid());
    let sampler = PeakSampler::start(server.pid());
    let request = format!(
        "GET /api/alpha/repository/collection/attack/version/latest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {manager}\r\n\r\n"
    );
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Others are served meanwhile.
    let started = Instant::now();
    let (status, _) = try_login(&c, &server, "unprivileged", "admin", None).await;
    assert_eq!(status, 200);
    let (status, _) = json(c.get(server.url("/health")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // Each of the 40 gets a status line: 8 start (200) and stall, 32 are refused (429).
    let mut statuses = Vec::new();
    for s in &mut stalled {
        let mut head = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head)).await.unwrap().unwrap();
        statuses.push(String::from_utf8_lossy(&head[9..12]).to_string());
    }
    assert_eq!(statuses.iter().filter(|s| *s == "200").count(), 8, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "429").count(), 32, "{statuses:?}");
    // The stalled ones are cut after the stall time (3 s) while the client reads nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for s in &mut stalled {
        assert!(closed_by_server(s, Duration::from_secs(10)).await, "a stalled download is open");
    }
    let peak = sampler.stop();
    report("stalled-downloads", base, peak);
    assert!(peak.threads < base.threads + 16, "{peak} from {base}");
    assert!(peak.rss_kib < base.rss_kib + 128 * 1024, "{peak} from {base}");
}

/// Finding 5: guessing a user's password from many addresses does not lock the user out
/// where they logged in before; the answer never tells whether a guess was right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_locks_out_nobody_who_logged_in_before() {
    let (server, _config, _data) = start(&["--rate-auth-limit", "10", "--trusted-proxy", "127.0.0.1"]);
    let c = client();
    let known = "198.51.100.2";
    login(&c, &server, "some-user", "admin", Some(known)).await;
    // Thirty guesses from thirty addresses, one each.
    let mut statuses = Vec::new();
    for i in 1..=30 {
        let (status, _) = try_login(&c, &server, "some-user", "guess", Some(&format!("203.0.113.{i}"))).await;
        statuses.push(status);
    }
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 15, "the user's limit held: {statuses:?}");
    // The user, from where they logged in before, is not locked out.
    let (status, body) = try_login(&c, &server, "some-user", "admin", Some(known)).await;
    assert_eq!(status, 200, "{body}");
    // From a new address, right and wrong passwords get the same answer while the limit lasts.
    let (right, _) = try_login(&c, &server, "some-user", "admin", Some("198.51.100.3")).await;
    let (wrong, _) = try_login(&c, &server, "some-user", "guess", Some("198.51.100.4")).await;
    assert_eq!((right, wrong), (429, 429));
    // One address guessing is limited by its own bucket too.
    let mut last = 0;
    for _ in 0..11 {
        last = try_login(&c, &server, "unprivileged", "guess", Some("192.0.2.77")).await.0;
    }
    assert_eq!(last, 429);
    println!("ATTACK lockout statuses from 30 addresses: {statuses:?}");
}

/// Finding 6: a changed password or access key ends the tokens issued under the old one, and
/// refreshes cannot outlive the chain's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_die_with_their_password() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let all = with_defaults(&["--config-reload-interval", "0s", "--token-max-refresh", "10m"]);
    let server = Server::start(&args(config.path(), data.path(), &all));
    let c = client();
    let user = login(&c, &server, "some-user", "admin", None).await;
    let key = login(&c, &server, "some-user$uploader", "test", None).await;
    let whoami = |token: String| {
        let (c, url) = (c.clone(), server.url("/api/stable/auth/whoami"));
        async move { c.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!((whoami(user.clone()).await, whoami(key.clone()).await), (200, 200));
    // The refreshed token ends with the chain: at most 10 minutes after the login.
    let (status, body) =
        json(c.get(server.url("/api/stable/auth/refresh_token")).bearer_auth(&user).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let expire = chrono::DateTime::parse_from_rfc3339(body["expire"].as_str().unwrap()).unwrap();
    assert!(expire <= chrono::Utc::now() + chrono::Duration::minutes(10), "{expire}");
    // New secrets: the key's password, then the user's.
    let encode = |password: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_backup-server"))
            .args(["--encode-password", password])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let secrets = config.path().join("backup-repository/v1/secrets/backup-repository-passwords.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let key_line = text.lines().find(|l| l.trim_start().starts_with("admin_access_key_1:")).unwrap().to_owned();
    let user_line = text.lines().find(|l| l.trim_start().starts_with("admin:")).unwrap().to_owned();
    let reload = || {
        let pid = server.pid().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };
    std::fs::write(&secrets, text.replace(&key_line, &format!("    admin_access_key_1: \"{}\"", encode("new key"))))
        .unwrap();
    reload();
    let ended = support::eventually(Duration::from_secs(10), || {
        let w = whoami(key.clone());
        async move { (w.await == 403).then_some(()) }
    })
    .await;
    assert!(ended.is_some(), "the key's token outlived the key's password");
    assert_eq!(whoami(user.clone()).await, 200, "the user's password did not change");
    let text = std::fs::read_to_string(&secrets).unwrap();
    std::fs::write(&secrets, text.replace(&user_line, &format!("    admin: \"{}\"", encode("new password")))).unwrap();
    reload();
    let ended = support::eventually(Duration::from_secs(10), || {
        let w = whoami(user.clone());
        async move { (w.await == 403).then_some(()) }
    })
    .await;
    assert!(ended.is_some(), "the user's token outlived the password");
    let r = c.get(server.url("/api/stable/auth/refresh_token")).bearer_auth(&user).send().await.unwrap();
    assert_eq!(r.status(), 403, "no refresh either");
    let (status, _) = try_login(&c, &server, "some-user", "new password", None).await;
    assert_eq!(status, 200);
}

/// Finding 7: an access key's token manages only its own session; a one-time upload token
/// uploads once and does nothing else; logout reports the session it revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_tokens_stay_narrow() {
    let (server, _config, _data) = start(&["--trusted-proxy", "127.0.0.1"]);
    let c = client();
    let full = login(&c, &server, "some-user", "admin", None).await;
    let key = login(&c, &server, "some-user$uploader", "test", None).await;
    let sessions = |token: &str| {
        let req = c.get(server.url("/api/stable/auth/token")).bearer_auth(token);
        async move { json(req.send().await.unwrap()).await }
    };
    let (status, body) = sessions(&key).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["data"]["grantedAccesses"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "only its own session: {body}");
    assert_eq!(listed[0]["accessKeyName"], "uploader");
    let (_, me) = json(c.get(server.url("/api/stable/auth/whoami")).bearer_auth(&full).send().await.unwrap()).await;
    let full_session = me["data"]["sessionId"].as_str().unwrap().to_owned();
    let url = server.url(&format!("/api/stable/auth/logout?sessionId={full_session}"));
    let (status, body) = json(c.delete(&url).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(sessions(&full).await.0, 200, "the full session lives");

    // A one-time upload token: one upload, nothing else.
    let r = c
        .post(server.url("/api/stable/auth/login"))
        .json(&json!({ "username": "some-user$uploader", "password": "test", "singleUse": true }));
    let (status, body) = json(r.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let once = body["data"]["token"].as_str().unwrap().to_owned();
    let base = "/api/alpha/repository/collection/iwa-ait/version";
    let attempts = [
        ("download", c.get(server.url(&format!("{base}/latest")))),
        ("delete", c.delete(server.url("/api/stable/repository/collection/iwa-ait/version/1"))),
        ("sessions", c.get(server.url("/api/stable/auth/token"))),
        ("whoami", c.get(server.url("/api/stable/auth/whoami"))),
        ("logout", c.delete(server.url("/api/stable/auth/logout"))),
        ("collections", c.get(server.url("/api/stable/repository/collection"))),
    ];
    for (what, req) in attempts {
        let (status, body) = json(req.bearer_auth(&once).send().await.unwrap()).await;
        assert_eq!(status, 403, "{what}: {body}");
    }
    let upload = || c.post(server.url(base)).bearer_auth(&once).body(armored(2000, 7)).send();
    let (status, body) = json(upload().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(json(upload().await.unwrap()).await.0, 200, "used up");

    // An administrator revoking someone's session is told which one was revoked.
    let admin = login(&c, &server, "admin", "admin", Some("1.2.3.4")).await;
    let (status, body) =
        json(c.delete(&url).bearer_auth(&admin).header("X-Forwarded-For", "1.2.3.4").send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sessionId"], json!(full_session));
}

/// Finding 8: uploads in progress are capped per user and per collection; the ones over the
/// cap are refused before their bodies are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_flight_are_capped() {
    let (server, _config, _data) =
        start(&["--max-uploads-per-user", "4", "--max-uploads-per-collection", "6", "--stall-timeout", "20s"]);
    let c = client();
    let manager = login(&c, &server, "some-user", "admin", None).await;
    let base = Usage::of(server.pid());
    let sampler = PeakSampler::start(server.pid());
    // 40 slow uploads of 1 MiB at once: each body takes about two seconds.
    let slow = |seed: u8| {
        let chunks = (0..16).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![seed; 64 * 1024])));
        let stream = futures::StreamExt::then(futures::stream::iter(chunks), |chunk| async {
            tokio::time::sleep(Duration::from_millis(120)).await;
            chunk
        });
        reqwest::Body::wrap_stream(stream)
    };
    let url = server.url("/api/alpha/repository/collection/attack/version");
    let tasks: Vec<_> = (0..40u8)
        .map(|i| {
            let req = c.post(&url).bearer_auth(&manager).body(slow(i));
            tokio::spawn(async move {
                let started = Instant::now();
                let r = req.send().await;
                (r.map(|r| r.status().as_u16()).unwrap_or(0), started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let peak = sampler.stop();
    report("uploads-in-flight", base, peak);
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&(u16, Duration)> = results.iter().filter(|(s, _)| *s == 429).collect();
    assert!((1..=8).contains(&ok), "{results:?}");
    assert!(refused.len() >= 30, "{results:?}");
    assert!(refused.iter().all(|(_, took)| *took < Duration::from_millis(1500)), "refused early: {results:?}");
    // The collection cap holds across users too: a second user adds at most two more.
    assert!(version_numbers(&c, &server, &manager, "attack", None).await.len() <= 10);
}

/// Finding 9: a token revoked while its upload streams does not commit that upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_upload_does_not_commit() {
    let (server, _config, _data) = start(&["--upload-confirm-grace", "0s"]);
    let c = client();
    let token = login(&c, &server, "some-user", "admin", None).await;
    let total = 4 << 20;
    let mut socket = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /api/alpha/repository/collection/attack/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![1u8; total / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) =
        json(c.delete(server.url("/api/stable/auth/logout")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    socket.write_all(&vec![1u8; total - total / 2]).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut out)).await.unwrap().unwrap();
    let r = parse_raw(&out).expect("an answer");
    assert!((400..500).contains(&r.status), "{r:?}");
    let fresh = login(&c, &server, "some-user", "admin", None).await;
    let (_, body) = json(
        c.get(server.url("/api/stable/repository/collection/attack/version")).bearer_auth(&fresh).send().await.unwrap(),
    )
    .await;
    assert_eq!(body["data"]["versions"], json!([]), "nothing committed");
}

/// Finding 11: anonymous callers cannot tell whether a collection exists; `/ready` and
/// `/metrics` without a health key open to a systemAdmin's token only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_learn_nothing() {
    let (server, _config, _data) = start(&["--trusted-proxy", "127.0.0.1"]);
    let c = client();
    let health = |collection: &str| {
        let req = c.get(server.url(&format!("/api/stable/repository/collection/{collection}/health?code=wrong")));
        async move { json(req.send().await.unwrap()).await }
    };
    let (known, unknown) = (health("iwa-ait").await, health("no-such-thing").await);
    assert_eq!(known, unknown, "the same answer for an existing and a made-up collection");
    assert_eq!(known.0, 403);
    for path in ["/ready", "/metrics"] {
        let r = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path} without a key");
        let text = r.text().await.unwrap();
        assert!(!text.contains("iwa-ait"), "{path}: {text}");
    }
    let admin = login(&c, &server, "admin", "admin", Some("1.2.3.4")).await;
    let r =
        c.get(server.url("/metrics")).bearer_auth(&admin).header("X-Forwarded-For", "1.2.3.4").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let some = login(&c, &server, "some-user", "admin", None).await;
    let r = c.get(server.url("/metrics")).bearer_auth(&some).send().await.unwrap();
    assert_eq!(r.status(), 403, "a collection manager is not an operator");
}

/// Finding 12: an `X-Forwarded-For` entry with a port is read; one that does not parse makes
/// the client unknown, which no `restrictByIP` allows (it used to become the proxy itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_fail_closed() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    add_user(config.path(), "local-only");
    let file = config.path().join("backup-repository/backups.riotkit.org/v1alpha1/backupusers/local-only.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("    roles: []", "    roles: []\n    restrictByIP: [\"127.0.0.1/32\"]");
    std::fs::write(&file, text).unwrap();
    let server = Server::start(&args(config.path(), data.path(), &with_defaults(&["--trusted-proxy", "127.0.0.1"])));
    let c = client();
    let (status, body) = try_login(&c, &server, "local-only", "admin", Some("bad:entry:here")).await;
    // Refused as a wrong password is (no answer tells a right one from a wrong one); the log
    // has the reason.
    assert_eq!(status, 401, "an unparsable client is not the proxy: {body}");
    assert!(server.log().contains("user local-only may not log in from 0.0.0.0"), "{}", server.log());
    let (status, body) = try_login(&c, &server, "admin", "admin", Some("1.2.3.4:5555")).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap();
    let (_, me) = json(
        c.get(server.url("/api/stable/auth/whoami"))
            .bearer_auth(token)
            .header("X-Forwarded-For", "1.2.3.4")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me["data"]["grantedAccess"]["requesterIP"], Value::from("1.2.3.4"));
}

/// Issue 24 §2.2: a refused login answers alike for a right and a wrong password, and takes as
/// long: for a user restricted by address (the examples' `admin`, from loopback) and for a
/// deactivated user. The log has the real reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_do_not_tell_a_right_password_from_a_wrong_one() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    add_user(config.path(), "gone");
    let file = config.path().join("backup-repository/backups.riotkit.org/v1alpha1/backupusers/gone.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replace("    roles: []", "    roles: []\n    deactivated: true");
    std::fs::write(&file, text).unwrap();
    let server = Server::start(&args(config.path(), data.path(), &with_defaults(&[])));
    let c = client();
    for user in ["admin", "gone"] {
        let right = try_login(&c, &server, user, "admin", None).await;
        let wrong = try_login(&c, &server, user, "wrong", None).await;
        assert_eq!(right, wrong, "{user}: the right password answered apart from a wrong one");
        assert_eq!((right.0, right.1["message"].as_str()), (401, Some("incorrect Username or Password")), "{user}");
    }
    // Both cost one password hash: interleaved samples, medians compared.
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..7 {
        for (i, password) in ["admin", "wrong"].iter().enumerate() {
            let started = Instant::now();
            assert_eq!(try_login(&c, &server, "admin", password, None).await.0, 401);
            times[i].push(started.elapsed());
        }
    }
    let [right, wrong] = times.map(median);
    println!("ATTACK refused-login medians: right {right:?}, wrong {wrong:?}");
    let (lo, hi) = (right.min(wrong), right.max(wrong));
    assert!(hi.as_secs_f64() < lo.as_secs_f64() * 1.5, "right {right:?}, wrong {wrong:?}");
    let log = server.log();
    assert!(log.contains("user admin may not log in from 127.0.0.1"), "the log has the reason: {log}");
    // Still, from the allowed address, the right password works.
    let other_data = tempfile::tempdir().unwrap();
    let trusting =
        Server::start(&args(config.path(), other_data.path(), &with_defaults(&["--trusted-proxy", "127.0.0.1"])));
    login(&c, &trusting, "admin", "admin", Some("1.2.3.4")).await;
}

/// A simulation of `count` versions, one every 90 minutes from 2009 on, as JSON.
fn simulation_body(count: u64) -> Vec<u8> {
    let t0 = chrono::DateTime::parse_from_rfc3339("2009-06-01T00:00:00Z").unwrap();
    let versions: Vec<Value> = (1..=count)
        .map(|i| json!({ "number": i, "createdAt": (t0 + chrono::Duration::minutes(i as i64 * 90)).to_rfc3339() }))
        .collect();
    let policy = json!({ "keepDaily": 30, "keepMonthly": 12, "keepYearly": -1 });
    serde_json::to_vec(&json!({ "policy": policy, "now": "2026-11-30T00:00:00Z", "versions": versions })).unwrap()
}

fn simulation_head(token: &str, length: usize) -> String {
    format!(
        "POST /api/stable/retention/simulate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Issue 24 §2.1: retention simulations whose answers are never read keep the server's memory
/// bounded. Callers without a role that reads versions (a user without roles, an upload-only
/// key) are refused before their body is read; of the others, one simulation per user and two
/// on the server run at once, until their answers are read (429 with `Retry-After` beyond);
/// answers stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_simulations_whose_answers_are_never_read_stay_bounded() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    let readers = ["reader-1", "reader-2", "reader-3", "reader-4"];
    let acl: String = readers
        .iter()
        .map(|r| format!("        - name: {r}\n          type: user\n          roles: [backupDownloader]\n"))
        .collect();
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupcollections/readable.yaml",
        &format!(
            "---\napiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: readable\n\
             spec:\n    filenameTemplate: readable-${{version}}\n    maxBackupsCount: 2\n    maxOneVersionSize: 1M\n    \
             maxCollectionSize: 2M\n    contentRule: none\n    accessControl:\n{acl}"
        ),
    );
    for r in readers {
        add_user(config.path(), r);
    }
    // Unread answers are held until the stall timeout: longer than the test.
    let server = Server::start(&args(config.path(), data.path(), &with_defaults(&["--stall-timeout", "60s"])));
    let c = client();
    let unprivileged = login(&c, &server, "unprivileged", "admin", None).await;
    let uploader = login(&c, &server, "some-user$uploader", "test", None).await;
    let mut tokens = Vec::new();
    for r in readers {
        tokens.push((r, login(&c, &server, r, "admin", None).await));
    }
    let big = simulation_body(100_000);
    let small = simulation_body(10);
    let base = Usage::of(server.pid());
    let sampler = PeakSampler::start(server.pid());
    let started = Instant::now();

    // The audit's attack: 30 simulations of 100,000 versions (the answer of each about 16 MiB)
    // whose answers nobody reads, from a user without roles and from an upload-only key, all
    // at once, each connection kept open. Each is refused before its body is read.
    let mut refused = Vec::new();
    for i in 0..30 {
        let token = if i % 2 == 0 { &unprivileged } else { &uploader };
        refused.push(held_request(&server, simulation_head(token, big.len()), big.clone()).await);
    }
    for held in &mut refused {
        let (status, took) = held.status().await;
        assert_eq!(status, 403, "refused, before its body is read");
        assert!(took < Duration::from_secs(10), "refused before the body: {took:?}");
    }

    // The readers' part: five each, none read past the status line.
    let mut held = Vec::new();
    for (user, token) in &tokens {
        for _ in 0..5 {
            let mut request = held_request(&server, simulation_head(token, big.len()), big.clone()).await;
            let (status, _) = request.status().await;
            held.push((*user, status, request));
        }
    }
    let statuses: Vec<(&str, u16)> = held.iter().map(|(u, s, _)| (*u, *s)).collect();
    let running: Vec<&str> = statuses.iter().filter(|(_, s)| *s == 200).map(|(u, _)| *u).collect();
    assert_eq!(running.len(), 2, "two run on the server: {statuses:?}");
    assert_ne!(running[0], running[1], "one per user: {statuses:?}");
    assert!(statuses.iter().all(|(_, s)| [200, 429, 0].contains(s)), "{statuses:?}");
    // While those two answers wait for their readers: a third user, and one of the two.
    let idle = readers.iter().find(|r| !running.contains(r)).unwrap();
    let token = |user: &str| tokens.iter().find(|(u, _)| *u == user).unwrap().1.clone();
    let url = server.url("/api/stable/retention/simulate");
    let post = |token: String| {
        c.post(&url).bearer_auth(token).header("content-type", "application/json").body(small.clone()).send()
    };
    let r = post(token(idle)).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(r.text().await.unwrap().contains("2 retention simulations are running"));
    let r = post(token(running[0])).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("a retention simulation of yours is running"));
    let peak = sampler.stop();
    report("retention-simulations", base, peak);
    assert!(started.elapsed() < Duration::from_secs(120), "{:?}", started.elapsed());
    assert!(peak.rss_kib < base.rss_kib + 160 * 1024, "memory grew: {peak} from {base}");

    // The readers go: their slots come back.
    drop(held);
    let again = support::eventually(Duration::from_secs(10), || {
        let r = post(token(idle));
        async move { (r.await.unwrap().status() == 200).then_some(()) }
    })
    .await;
    assert!(again.is_some(), "the slots of closed answers were not released");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// A request whose connection stays open and whose answer is read no further than its status
/// line: the body is written by a task of its own, which keeps the write side open.
struct HeldRequest {
    read: tokio::net::tcp::OwnedReadHalf,
    _writer: tokio::task::JoinHandle<tokio::net::tcp::OwnedWriteHalf>,
    sent: Instant,
}

async fn held_request(server: &Server, head: String, body: Vec<u8>) -> HeldRequest {
    let (read, mut write) = TcpStream::connect(server.addr()).await.unwrap().into_split();
    let sent = Instant::now();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
        write
    });
    HeldRequest { read, _writer: writer, sent }
}

impl HeldRequest {
    /// The answer's status (0 when the connection ends first) and when it came, reading
    /// nothing more.
    async fn status(&mut self) -> (u16, Duration) {
        let mut head = [0u8; 12];
        let status = match tokio::time::timeout(Duration::from_secs(60), self.read.read_exact(&mut head)).await {
            Ok(Ok(_)) => String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0),
            _ => 0,
        };
        (status, self.sent.elapsed())
    }
}
