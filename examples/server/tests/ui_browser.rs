//! The dashboard in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`) by fantoccini, against the server on loopback. A user logs
//! in, sees the collections and a badge, downloads a version and compares its bytes, deletes
//! and restores a version, logs out, and is refused afterwards. Screenshots of the overview
//! and a collection page go to `target/ui-screenshots/`, and the overview's page weight is
//! printed.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backup_server::{RunningServer, spawn};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The whole browser session's bound: a hung browser fails the test instead of CI.
const TEST_BOUND: Duration = Duration::from_secs(180);

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh headless Chromium with the flags this closed network needs, downloading into
/// `downloads` without asking.
async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

/// Where screenshots go: `target/ui-screenshots`, next to the build's own folders.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Uploads each body as the next version of `collection`, through the API.
async fn upload_all(server: &RunningServer, user: &str, password: &str, collection: &str, bodies: &[Vec<u8>]) {
    let http = reqwest::Client::new();
    let token = server.token(user, password).await.unwrap();
    for body in bodies {
        let r = http
            .post(server.url(&format!("/api/alpha/repository/collection/{collection}/version")))
            .bearer_auth(&token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Bytes that look like a compressed dump: no two alike.
fn dump(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The file Chromium finished downloading into `dir` (none of its partial files).
async fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial =
            std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".crdownload"));
        if path.exists() && !partial {
            return std::fs::read(&path).unwrap();
        }
        assert!(Instant::now() < deadline, "{name} was not downloaded within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the page after a click: its notice says `text` (the page before may have had
/// another notice).
async fn notice_saying(client: &Client, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(notice) = client.find(Locator::Css("p.notice")).await
            && notice.text().await.is_ok_and(|t| t.contains(text))
        {
            return;
        }
        assert!(Instant::now() < deadline, "no notice saying {text:?} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_looks_downloads_deletes_restores_and_logs_out_in_chromium() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI installs chromium and chromium-driver (.ci/with-services); they are missing"
        );
        support::skipped(
            "a_user_logs_in_looks_downloads_deletes_restores_and_logs_out_in_chromium",
            "no chromium or chromedriver (apt-get install chromium chromium-driver)",
        );
        return;
    }
    let server = spawn(support::dashboard_config()).await.unwrap();
    let sizes = [210_000, 265_000, 240_000, 310_000, 355_000, 330_000];
    let bodies: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| dump(n, i as u64 + 1)).collect();
    upload_all(&server, "alice", "alicealice", "db", &bodies).await;
    upload_all(&server, "alice", "alicealice", "web", &[dump(90_000, 99)]).await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path(), downloads.path()).await;
    let outcome = tokio::time::timeout(TEST_BOUND, journey(&client, &server, &bodies, downloads.path())).await;
    let _ = client.close().await;
    outcome.expect("the browser session ended within its bound");
    server.shutdown().await;
}

async fn journey(client: &Client, server: &RunningServer, bodies: &[Vec<u8>], downloads: &Path) {
    let shots = screenshot_dir();
    // Not logged in: the dashboard sends to the login form.
    client.goto(&server.url("/ui/")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/ui/login");
    let form = client.form(Locator::Css("section.login form")).await.unwrap();
    form.set_by_name("username", "alice").await.unwrap();
    form.set_by_name("password", "alicealice").await.unwrap();
    form.submit().await.unwrap();
    client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("table.collections")).await.unwrap();

    // The overview, loaded afresh for its weight: the page and every resource it pulled.
    client.goto(&server.url("/ui/")).await.unwrap();
    let rows = client.find_all(Locator::Css("tr.collection")).await.unwrap();
    let mut names = Vec::new();
    for row in &rows {
        names.push(row.attr("data-collection").await.unwrap().unwrap());
    }
    assert_eq!(names, ["db", "web"], "alice sees her collections only");
    let db = client.find(Locator::Css("tr[data-collection='db']")).await.unwrap();
    let db_text = db.text().await.unwrap();
    assert!(db_text.contains("healthy") && db_text.contains("5 of 5"), "{db_text}");
    let description = db.find(Locator::Css(".description")).await.unwrap().text().await.unwrap();
    assert_eq!(description, "Nightly <b>database</b> dumps <script>alert(1)</script>", "markup shown as text");
    let web = client.find(Locator::Css("tr[data-collection='web'] .badge")).await.unwrap().text().await.unwrap();
    assert_eq!(web, "failing");
    let weight = client
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];
             const res = performance.getEntriesByType('resource');
             return { html: nav.transferSize, body: nav.encodedBodySize,
                      resources: res.map(r => [r.name, r.encodedBodySize]) };",
            vec![],
        )
        .await
        .unwrap();
    let resources: u64 = weight["resources"].as_array().unwrap().iter().map(|r| r[1].as_u64().unwrap_or(0)).sum();
    let html = weight["html"].as_u64().unwrap();
    println!(
        "page weight: overview {} bytes (document {html} bytes with headers, body {}; resources {resources} bytes: {})",
        html + resources,
        weight["body"],
        weight["resources"]
    );
    std::fs::write(shots.join("overview.png"), client.screenshot().await.unwrap()).unwrap();

    // The collection page, its badge drawn by the browser.
    client.find(Locator::Css("tr[data-collection='db'] a.name")).await.unwrap().click().await.unwrap();
    client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("table.versions")).await.unwrap();
    let badge_width = client
        .execute(
            "const i = document.querySelector('img.badge-image'); return i.complete ? i.naturalWidth : -1;",
            vec![],
        )
        .await
        .unwrap();
    assert!(badge_width.as_i64().unwrap() > 50, "the badge image loaded: {badge_width}");
    let badge = reqwest::get(server.url("/ui/badge/db.svg")).await.unwrap().text().await.unwrap();
    assert!(badge.contains("backup: healthy"), "{badge}");
    let points = client.find_all(Locator::Css("svg.chart circle")).await.unwrap();
    assert_eq!(points.len(), 5, "one point per kept version");
    std::fs::write(shots.join("collection.png"), client.screenshot().await.unwrap()).unwrap();

    // Download version 3 and compare its bytes with what was uploaded.
    client.find(Locator::Css("tr[data-version='3'] a.button")).await.unwrap().click().await.unwrap();
    let got = downloaded(downloads, "db-3.sql.gz").await;
    assert!(
        got == bodies[2],
        "the downloaded bytes are version 3's ({} bytes, {} expected)",
        got.len(),
        bodies[2].len()
    );

    // Delete version 4, then restore it.
    client.find(Locator::Css("tr[data-version='4'] button.danger")).await.unwrap().click().await.unwrap();
    notice_saying(client, "Version 4 was deleted").await;
    let state = client.find(Locator::Css("tr[data-version='4']")).await.unwrap().attr("data-state").await.unwrap();
    assert_eq!(state.as_deref(), Some("trashed"));
    client.find(Locator::Css("tr[data-version='4'] form button")).await.unwrap().click().await.unwrap();
    notice_saying(client, "Version 4 was restored").await;
    let state = client.find(Locator::Css("tr[data-version='4']")).await.unwrap().attr("data-state").await.unwrap();
    assert_eq!(state.as_deref(), Some("committed"));

    // Log out; the old cookie, put back by hand, opens nothing.
    let session = client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "backup_ui")
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    client.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
    notice_saying(client, "You are logged out.").await;
    client.add_cookie(session.clone()).await.unwrap();
    client.goto(&server.url("/ui/collections/db")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/ui/login", "the revoked session is refused");
    // And outside the browser: the same cookie gets no page and no bytes.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = format!("backup_ui={}", session.value());
    for path in ["/ui/", "/ui/collections/db/versions/3/download"] {
        let r = http.get(server.url(path)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
    }
    println!("screenshots: {} and {}", shots.join("overview.png").display(), shots.join("collection.png").display());
}
