//! Any request line, headers and body through the server's router: never a panic, never a
//! 5xx (the backends are in memory and work), and every answer is read to its end.
#![no_main]

use arbitrary::Arbitrary;
use axum::body::Body;
use backup_fuzz::{fixture, send};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 12] = [
    "/api/stable/auth/login",
    "/api/stable/auth/refresh_token",
    "/api/stable/auth/whoami",
    "/api/stable/auth/logout?sessionId=",
    "/api/stable/auth/token?userName=",
    "/api/stable/repository/collection",
    "/api/alpha/repository/collection/iwa-ait/version",
    "/api/alpha/repository/collection/iwa-ait/version/",
    "/api/stable/repository/collection/iwa-ait/version/",
    "/api/stable/repository/collection/iwa-ait/health?code=",
    "/api/stable/retention/simulate",
    "/ready?code=",
];

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    path: u8,
    suffix: String,
    token: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let method = ["GET", "POST", "PUT", "DELETE", "PATCH"][usize::from(input.method) % 5];
    let path = format!("{}{}", PATHS[usize::from(input.path) % PATHS.len()], input.suffix);
    let mut builder = http::Request::builder().method(method).uri(path.as_str());
    if let Some(token) = f.tokens.get(usize::from(input.token) % 4) {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in input.headers.iter().take(64) {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    // What no client could send (an invalid URI or header) is refused by hyper before us.
    let Ok(request) = builder.body(Body::from(input.body)) else { return };
    let status = send(request);
    assert!(status < 500, "{method} {path}: {status}");
});
