//! Verified downloads: the bytes stream as they arrive, counted and hashed on the way, and
//! the stream fails at its end when their number or digest is not what the server announced.

use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use backup_core::Digest;
use backup_core::Hasher;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use reqwest::Method;
use reqwest::header::{CONTENT_DISPOSITION, HeaderMap};

use crate::client::{Client, check_selector, segment};
use crate::error::{Error, Result};

/// The answer's header with the digest of the version's bytes (this workspace's server;
/// backup-repository sends none).
pub const DIGEST_HEADER: &str = "X-Backup-Digest";

impl Client {
    /// Starts downloading a version (`latest`, `N` or `vN`; a
    /// [`backup_core::VersionSelector`] displays as one). The request is retried as an
    /// idempotent one until the server answers; the body is not.
    ///
    /// The [`Download`] is a stream of the bytes, verified as they flow: after the last
    /// chunk it yields [`Error::Integrity`] instead of ending when the bytes do not add up to
    /// the announced `Content-Length`, or do not have the announced digest. Consume it to the
    /// end before trusting what it gave, and write through a temporary place.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed selector; [`Error::Refused`] (404 for a missing
    /// version, 409 for a quarantined one); [`Error::Network`] (after the retries);
    /// [`Error::Integrity`] for a digest header that does not parse.
    pub async fn download(&self, collection: &str, selector: impl fmt::Display) -> Result<Download> {
        let selector = selector.to_string();
        check_selector(&selector)?;
        let path = format!("/api/alpha/repository/collection/{}/version/{}", segment(collection), segment(&selector));
        let response = self.send_idempotent(|| self.request(Method::GET, &path)).await?;
        let content_length = response.content_length();
        let digest = announced_digest(response.headers())?;
        let file_name = attachment_name(response.headers());
        let stream = Box::pin(response.bytes_stream());
        Ok(Download {
            content_length,
            hasher: digest.as_ref().map(|d| d.algorithm().hasher()),
            digest,
            file_name,
            stream,
            received: 0,
            done: false,
        })
    }
}

/// A version's bytes as they arrive, verified: a [`Stream`] of chunks whose last item is an
/// [`Error::Integrity`] when the bytes do not match the announced size or digest, and an
/// [`Error::Network`] when the transfer is cut.
pub struct Download {
    content_length: Option<u64>,
    digest: Option<Digest>,
    file_name: Option<String>,
    stream: BoxStream<'static, reqwest::Result<Bytes>>,
    hasher: Option<Hasher>,
    received: u64,
    done: bool,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("content_length", &self.content_length)
            .field("digest", &self.digest)
            .field("file_name", &self.file_name)
            .field("received", &self.received)
            .field("done", &self.done)
            .finish()
    }
}

impl Download {
    /// The announced length (`Content-Length`).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The announced digest (`X-Backup-Digest`) the bytes are checked against.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The version's file name from `Content-Disposition`, reduced to a plain name: never a
    /// path, `.`, `..` or a hidden name, so a server cannot make a caller write outside the
    /// folder it chose.
    pub fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// How many bytes arrived so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The verdict once the body ended.
    fn verdict(&mut self) -> Result<()> {
        if let Some(n) = self.content_length
            && n != self.received
        {
            return Err(Error::integrity(format!("received {} bytes of {n}", self.received)));
        }
        if let (Some(want), Some(hasher)) = (&self.digest, self.hasher.take()) {
            let got = hasher.finalize();
            if &got != want {
                return Err(Error::integrity(format!(
                    "the bytes received have digest {got}, the server announced {want}"
                )));
            }
        }
        Ok(())
    }
}

impl Stream for Download {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.stream.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match item {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if let Some(n) = self.content_length
                    && self.received > n
                {
                    self.done = true;
                    let e = Error::integrity(format!("received more than the {n} bytes announced"));
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(Error::network_in("the download was cut", e))))
            }
            None => {
                self.done = true;
                Poll::Ready(self.verdict().err().map(Err))
            }
        }
    }
}

/// The digest the server announces.
fn announced_digest(headers: &HeaderMap) -> Result<Option<Digest>> {
    let Some(raw) = headers.get(DIGEST_HEADER) else { return Ok(None) };
    let text = raw.to_str().map_err(|_| Error::integrity("the server's X-Backup-Digest is not text"))?;
    Digest::from_str(text)
        .map(Some)
        .map_err(|e| Error::integrity(format!("the server's X-Backup-Digest {text:?} does not parse: {e}")))
}

/// The file name in `Content-Disposition: attachment; filename="…"`, reduced to a plain
/// name.
fn attachment_name(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_DISPOSITION)?.to_str().ok()?;
    let start = value.find("filename=")? + "filename=".len();
    let name = value[start..].trim_start_matches('"');
    let name = name.split('"').next()?.trim();
    let name = Path::new(name).file_name()?.to_str()?;
    (!name.is_empty() && name != "." && name != ".." && !name.starts_with('.')).then(|| name.to_owned())
}
