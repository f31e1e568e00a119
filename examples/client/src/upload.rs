//! Uploads: a stream of bytes becomes a new version, sent once with an idempotency key; a
//! lost answer is settled by asking the server by that key.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use backup_core::Metadata;
use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::client::{Client, segment, version_in};
use crate::error::{BoxError, Error, Result};
use crate::model::Version;

/// The request header of an upload's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The answer's header that says the server answered with the version stored under the key.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// The prefix of the request headers that carry a version's metadata.
pub const METADATA_HEADER_PREFIX: &str = "x-backup-meta-";

/// How to upload: the length if known, metadata, the idempotency key.
///
/// ```
/// let options = backup_client::UploadOptions::new()
///     .content_length(11)
///     .metadata("git.head", "refs/heads/main")
///     .idempotency_key("nightly-2024-05-01");
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    content_length: Option<u64>,
    metadata: Metadata,
    idempotency_key: Option<String>,
}

impl UploadOptions {
    /// No length, no metadata, a new key.
    pub fn new() -> Self {
        UploadOptions::default()
    }

    /// The body's length, sent as `Content-Length`: the server reserves exactly that much
    /// before it reads a byte (or refuses at once), and a body of another length fails.
    pub fn content_length(mut self, length: u64) -> Self {
        self.content_length = Some(length);
        self
    }

    /// Records `name = value` in the version's metadata (`X-Backup-Meta-NAME`, the value
    /// percent-encoded so that any text fits in a header). Names are letters, digits, `.`,
    /// `_`, `-`, stored in lower case; the engine's limits apply
    /// ([`backup_core::check_metadata`]).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }

    /// The upload's idempotency key (1 to 255 visible ASCII characters; default: a new
    /// UUID). Uploads with the same key by the same user store one version: give a job's
    /// retries the same key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A stored version, and how the client learned of it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Uploaded {
    /// The version.
    pub version: Version,
    /// The key it was sent with.
    pub idempotency_key: String,
    /// The server answered with the version an earlier upload stored under the key
    /// (`Idempotent-Replayed: true`): this body was not read.
    pub replayed: bool,
    /// The upload's answer was lost (this error hid it), and the version was found by its
    /// key afterwards.
    pub lost_answer: Option<Error>,
}

impl Client {
    /// Streams `body` into `collection` as a new version (`POST …/version`).
    ///
    /// The request is sent once, never repeated blindly: a lost answer does not mean that
    /// nothing was stored. It carries an idempotency key instead; when the answer is lost
    /// after the body started to go out (the connection broke, or the server answered 5xx:
    /// it may not know whether its commit happened) and the body itself did not fail, the
    /// client asks the server by the key ([`Client::version_by_idempotency_key`], retried)
    /// and returns the version it finds, with [`Uploaded::lost_answer`] set.
    ///
    /// A body that yields an error aborts the request before its end, so the server, which
    /// commits only a complete body, stores nothing: that is how a producer cancels an upload
    /// (a `pg_dump` that fails after its last byte).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for metadata or a key the server would refuse (before any
    /// request); [`Error::Refused`] (quota, content rule, permissions, backup window; a
    /// refusal wins over a failure of the body it cut short); [`Error::Body`] when `body`
    /// failed; [`Error::Network`] when the answer was lost and the key finds nothing;
    /// [`Error::OutcomeUnknown`] when the key could not be asked either.
    pub async fn upload<S, E>(&self, collection: &str, body: S, options: UploadOptions) -> Result<Uploaded>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        backup_core::check_metadata(&options.metadata).map_err(|e| Error::invalid(format!("metadata: {e}")))?;
        let key = options.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        backup_core::check_idempotency_key(&key).map_err(|e| Error::invalid(format!("idempotency key: {e}")))?;

        let watch = Arc::new(BodyWatch::default());
        let body = Watched { inner: Box::pin(body), watch: watch.clone() };
        let path = format!("/api/alpha/repository/collection/{}/version", segment(collection));
        let mut request = self
            .request(Method::POST, &path)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(IDEMPOTENCY_KEY_HEADER, &key)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(n) = options.content_length {
            request = request.header(CONTENT_LENGTH, n);
        }
        for (name, value) in &options.metadata {
            let value = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
            request = request.header(format!("{METADATA_HEADER_PREFIX}{name}"), value);
        }
        let answer = async {
            let response = self.send_once(request).await?;
            let replayed = response
                .headers()
                .get(IDEMPOTENT_REPLAYED_HEADER)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
            let value = self.read_json(response).await?;
            Ok((version_in(&value)?, replayed))
        }
        .await;
        let error = match answer {
            Ok((version, replayed)) => {
                return Ok(Uploaded { version, idempotency_key: key, replayed, lost_answer: None });
            }
            Err(e) => e,
        };
        if let Some(message) = watch.failure() {
            // The server's refusal is the news when it came first and the body stopped
            // because of it; otherwise the body's failure is what broke the request.
            return Err(match error {
                refused @ Error::Refused { .. } => refused,
                _ => Error::Body { source: message.into() },
            });
        }
        if !watch.started.load(Ordering::Relaxed) || !error.outcome_unclear() {
            return Err(error);
        }
        match self.version_by_idempotency_key(collection, &key).await {
            Ok(Some(version)) => {
                Ok(Uploaded { version, idempotency_key: key, replayed: false, lost_answer: Some(error) })
            }
            Ok(None) => Err(error),
            Err(lookup) => Err(Error::OutcomeUnknown { key, error: Box::new(error), lookup: Box::new(lookup) }),
        }
    }
}

/// What became of an upload's body: whether the request got as far as reading it (only then
/// can the server have stored anything), and whether it failed.
#[derive(Debug, Default)]
struct BodyWatch {
    started: AtomicBool,
    failed: Mutex<Option<String>>,
}

impl BodyWatch {
    fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The body, watched.
struct Watched<S> {
    inner: Pin<Box<S>>,
    watch: Arc<BodyWatch>,
}

impl<S, E> Stream for Watched<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
    E: Into<BoxError>,
{
    type Item = std::result::Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.watch.started.store(true, Ordering::Relaxed);
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                *self.watch.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
