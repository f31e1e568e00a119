//! A client of the backup server's HTTP API (this workspace's `backup-server`, and
//! backup-repository's where the routes exist): log in, keep tokens, list, upload, download
//! verified, delete, restore, check health. `backup-cli` and `git-backup` are built on it, and
//! other projects' tests may use it against `backup_server::spawn`.
//!
//! # The types
//!
//! - [`Client`]: one server, one token, one retry policy; built with [`ClientBuilder`]
//!   (`Client::builder().with_server(…).with_token(…).build()?`). Cheap to clone.
//! - [`UploadOptions`] and [`Uploaded`]: an upload of any `Stream<Item = Result<Bytes, E>>`,
//!   with its length when known, metadata and an idempotency key.
//! - [`Download`]: a version's bytes as a stream, verified as they flow.
//! - [`Version`], [`Session`], [`Health`], [`Verification`]: the answers, typed, each keeping
//!   the server's JSON as it came (`json()`), so a program that shows it passes it on
//!   unchanged.
//! - [`TokenStore`]: sessions per server in a file only its owner may read.
//! - [`Error`] and [`ErrorKind`]: one error for every call.
//!
//! # Why it is built this way
//!
//! **Retries only where they cannot do harm.** A request that changes nothing (a listing, a
//! download's start, a health check, the lookup of an idempotency key) is tried again, up
//! to [`ClientBuilder::with_attempts`] times in all, with a growing, jittered pause (300 ms
//! doubling to 10 s) while the network fails or the server answers 429, 502, 503 or 504.
//! Uploads, deletions, restores, verifications and logins are sent once: a lost answer does
//! not mean the server did nothing, and a blind retry could store a backup twice or open a
//! second session. One policy serves every call, as one retry module serves every cloud
//! backend in `object_store`.
//!
//! **Uploads settle a lost answer by asking.** Every upload carries an `Idempotency-Key`
//! (a new UUID unless [`UploadOptions::idempotency_key`] gives one). When its answer is lost
//! after the body started to go out, [`Client::upload`] asks the server by the key and
//! returns the version it stored, if any; only when even that question fails is the outcome
//! [`Error::OutcomeUnknown`]. An upload again with the same key then stores nothing twice
//! (the server answers `Idempotent-Replayed: true`, [`Uploaded::replayed`]).
//!
//! **A body that fails cancels the upload.** The server commits only a complete body: a
//! stream that yields an error aborts the request before its end, and nothing is stored
//! ([`Error::Body`]). A producer that learns late that its output is bad (a dump that fails
//! after its last byte) holds back its stream's end until it knows.
//!
//! **Downloads fail loudly.** A [`Download`] counts and hashes the bytes as they arrive and,
//! after the last one, yields [`Error::Integrity`] instead of ending when they do not match
//! the announced `Content-Length` or `X-Backup-Digest`. Nothing is buffered: write the chunks
//! to a temporary place and keep it only once the stream ended without an error.
//!
//! **The library prints nothing.** A caller that wants to show the retries passes
//! [`ClientBuilder::with_retry_notifier`].
//!
//! # A round trip
//!
//! Against a server started in this process (the way other projects' tests use it):
//!
//! ```
//! use backup_client::{Client, ErrorKind, LoginRequest, UploadOptions};
//! use backup_server::{ServerConfig, spawn};
//! use bytes::Bytes;
//! use futures::TryStreamExt;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let server = spawn(
//!     ServerConfig::for_tests()
//!         .user("ci", "a password", &[])
//!         .collection("db", 3, "1M", "5M", &[("ci", &["collectionManager"])]),
//! )
//! .await?;
//!
//! let client = Client::builder().with_server(server.url("")).build()?;
//! let session = client.login(&LoginRequest::new("ci", "a password")).await?;
//! let client = client.with_token(Some(session.token));
//!
//! // Any stream of bytes; here two chunks, with metadata and a key a retry would reuse.
//! let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("hello, ")), Ok(Bytes::from("world"))]);
//! let options = UploadOptions::new().metadata("source", "doc example").idempotency_key("job-1");
//! let uploaded = client.upload("db", body, options).await?;
//! assert_eq!((uploaded.version.number, uploaded.version.size), (1, 12));
//!
//! // The same key again: the server answers with the version it stored, and reads nothing.
//! let again = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("hello, world"))]);
//! let replay = client.upload("db", again, UploadOptions::new().idempotency_key("job-1")).await?;
//! assert!(replay.replayed);
//! assert_eq!(replay.version.id, uploaded.version.id);
//!
//! let versions = client.versions("db").await?;
//! assert_eq!(versions.len(), 1);
//! assert_eq!(versions[0].metadata["source"], "doc example");
//!
//! // Verified while it streams: an error at the end, had the bytes been damaged.
//! let download = client.download("db", "latest").await?;
//! assert_eq!(download.file_name(), Some("db-1"));
//! let bytes: Vec<Bytes> = download.try_collect().await?;
//! assert_eq!(bytes.concat(), b"hello, world");
//!
//! // Refusals carry the server's status and reason.
//! let missing = client.versions("no-such-collection").await.unwrap_err();
//! assert_eq!((missing.kind(), missing.status()), (ErrorKind::Refused, Some(404)));
//! server.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # Calls
//!
//! | call | route | sent |
//! |---|---|---|
//! | [`Client::login`], [`Client::logout`] | `POST /api/stable/auth/login`, `DELETE …/auth/logout` | once |
//! | [`Client::collections`], [`Client::versions`], [`Client::version_by_idempotency_key`], [`Client::retention`] | `GET /api/stable/repository/collection[/{id}/version\|retention]` | retried |
//! | [`Client::upload`] | `POST /api/alpha/repository/collection/{id}/version` | once, then a lookup by key |
//! | [`Client::download`] | `GET /api/alpha/repository/collection/{id}/version/{selector}` | retried until the body starts |
//! | [`Client::delete_version`], [`Client::restore_version`], [`Client::verify`] | `DELETE …/version/{n}`, `POST …/version/{n}/restore`, `POST …/verify` | once |
//! | [`Client::health`] | `GET …/{id}/health[?code=]`, without a token | retried |
//!
//! # Errors and what to do about them
//!
//! | [`ErrorKind`] | what happened | `backup-cli` exits |
//! |---|---|---|
//! | `Refused` | the server answered an error status ([`Error::status`], the reason) | 1 |
//! | `InvalidInput`, `Local`, `Body` | a bad argument, the token file, the upload's own body | 2 |
//! | `Network`, `Protocol`, `OutcomeUnknown` | unreachable, cut, not the API, an upload that may or may not be stored | 3 |
//! | `Integrity` | bytes that are not what the server announced | 4 |
#![deny(missing_docs)]

mod builder;
mod client;
mod download;
mod error;
mod model;
mod retry;
#[cfg(feature = "testing")]
pub mod testing;
mod token_store;
mod upload;

pub use builder::{
    ClientBuilder, DEFAULT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, normalize_server_url,
};
pub use client::Client;
pub use download::{DIGEST_HEADER, Download};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use model::{Health, HealthCheck, LoginRequest, Session, Verification, Version};
pub use token_store::TokenStore;
pub use upload::{IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, METADATA_HEADER_PREFIX, UploadOptions, Uploaded};

/// Checks a version selector (`latest`, `N` or `vN`) before anything is asked of the server.
///
/// # Errors
/// [`Error::InvalidInput`] for anything else.
pub fn check_version_selector(raw: &str) -> Result<()> {
    client::check_selector(raw)
}
