//! P10: the dashboard's overview over real HTTP: its weight (the bytes a browser transfers for
//! it: the page with its headers, and the stylesheet) and how fast it renders, against the
//! API's collection listing for the same user in the same run (the page asks the catalog for
//! each collection's health too, so it is slower; the ratio says by how much).
//!
//! ```text
//! P10 dashboard_overview_weight bytes=… html_bytes=… css_bytes=… collections=2
//! P10 dashboard_overview_render per_s=… ratio_vs_api_listing=… collections=20
//! ```

use std::time::{Duration, Instant};

use backup_server::{RunningServer, ServerConfig, spawn};
use reqwest::header;

const PASSWORD: &str = "a password for the bench";

/// A server with `collections` collections of alice's, each with three versions.
async fn server(collections: usize) -> RunningServer {
    let mut config = ServerConfig::for_tests().user("alice", PASSWORD, &[]);
    for i in 0..collections {
        config = config.collection(&format!("c{i:03}"), 5, "1M", "5M", &[("alice", &["collectionManager"])]);
    }
    let server = spawn(config).await.expect("the server starts");
    let http = reqwest::Client::new();
    let token = server.token("alice", PASSWORD).await.expect("alice logs in");
    for i in 0..collections {
        for v in 0..3u8 {
            let r = http
                .post(server.url(&format!("/api/alpha/repository/collection/c{i:03}/version")))
                .bearer_auth(&token)
                .body(vec![v; 10_000 + usize::from(v) * 1000])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    server
}

/// The `name=value` of a response's `Set-Cookie` for `name`.
fn cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// Logs in through the dashboard's form: the session cookie.
async fn ui_session(http: &reqwest::Client, server: &RunningServer) -> String {
    let page = http.get(server.url("/ui/login")).send().await.unwrap();
    let login_cookie = cookie(&page, "backup_ui_login");
    let csrf = login_cookie.split_once('=').unwrap().1.to_owned();
    let answer = http
        .post(server.url("/ui/login"))
        .header(header::COOKIE, &login_cookie)
        .form(&[("username", "alice"), ("password", PASSWORD), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    cookie(&answer, "backup_ui")
}

/// A response's size on the wire, near enough: status line, headers, body.
async fn wire_bytes(response: reqwest::Response) -> (usize, String) {
    let headers: usize = response.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    let text = response.text().await.unwrap();
    ("HTTP/1.1 200 OK\r\n\r\n".len() + headers + text.len(), text)
}

/// Requests per second of `request` over about `budget`.
async fn rate<F, Fut>(budget: Duration, mut request: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..10 {
        request().await;
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        request().await;
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The weight: two collections, as the README's screenshot.
    let small = server(2).await;
    let session = ui_session(&http, &small).await;
    let page = http.get(small.url("/ui/")).header(header::COOKIE, &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (html_bytes, html) = wire_bytes(page).await;
    let css_path = html.split("rel=\"stylesheet\" href=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let (css_bytes, _) = wire_bytes(http.get(small.url(&css_path)).send().await.unwrap()).await;
    println!(
        "P10 dashboard_overview_weight bytes={} html_bytes={html_bytes} css_bytes={css_bytes} collections=2",
        html_bytes + css_bytes
    );
    small.shutdown().await;

    // The speed: twenty collections, the overview against the API's listing.
    let collections = 20;
    let big = server(collections).await;
    let session = ui_session(&http, &big).await;
    let token = big.token("alice", PASSWORD).await.expect("alice logs in");
    let budget = Duration::from_secs(5);
    let (ui_url, api_url) = (big.url("/ui/"), big.url("/api/stable/repository/collection"));
    let api = rate(budget, || async {
        let r = http.get(&api_url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    })
    .await;
    let ui = rate(budget, || async {
        let r = http.get(&ui_url).header(header::COOKIE, &session).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    })
    .await;
    println!(
        "P10 dashboard_overview_render per_s={ui:.0} api_listing_per_s={api:.0} ratio_vs_api_listing={:.2} collections={collections}",
        ui / api
    );
    big.shutdown().await;
}
