//! Any multipart body (boundary, preamble, parts, part headers) uploaded by a user who may
//! upload: never a panic or a 5xx; a body past the cap on what precedes the file is refused.
#![no_main]

use arbitrary::Arbitrary;
use axum::body::Body;
use backup_fuzz::{fixture, send};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    boundary: String,
    /// Parts: headers and content; the body is built from them and `raw`.
    parts: Vec<(Vec<(String, String)>, Vec<u8>)>,
    raw: Vec<u8>,
    chunk: u16,
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let boundary = if input.boundary.is_empty() { "b".to_owned() } else { input.boundary.clone() };
    let mut body = input.raw.clone();
    for (headers, content) in input.parts.iter().take(8) {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for (name, value) in headers.iter().take(8) {
            body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    // In chunks, as a network delivers it.
    let size = usize::from(input.chunk).max(1);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        body.chunks(size).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let request = http::Request::builder()
        .method("POST")
        .uri("/api/alpha/repository/collection/iwa-ait/version")
        .header("authorization", format!("Bearer {}", f.tokens[0]))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from_stream(futures::stream::iter(chunks)));
    let Ok(request) = request else { return };
    let status = send(request);
    assert!(status < 500, "{status}");
});
