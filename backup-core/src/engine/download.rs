//! Verified downloads: the bytes stream out and are checked against size and digest.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStoreExt};
use tokio::sync::Semaphore;

use crate::authz::{Action, Actor};
use crate::digest::Hasher;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id::CollectionId;
use crate::version::{Version, VersionSelector};

/// Read size for objects on local disk (object_store's own stream reads 8 KiB at a time):
/// large enough for few system calls, small enough that a download a client stopped reading
/// holds about 4 MiB (the blocks read ahead, the one being read, the one being sent).
const FILE_CHUNK: usize = 1 << 20;

/// A download in progress: the version's record and its bytes as a stream.
///
/// The stream ends with an [`Error::Corrupted`] instead of a clean end if the object is
/// shorter or longer than committed, or its digest does not match; the chunk that completes
/// the committed size is held back until the digest matches, so even a consumer that stops
/// reading at the committed size (an HTTP response with a `Content-Length`) never receives
/// every byte of a damaged object.
pub struct Download {
    version: Version,
    stream: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("version", &self.version).finish_non_exhaustive()
    }
}

impl Download {
    /// The version being downloaded.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The bytes, verified as they flow.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        self.stream
    }

    /// The record and the stream.
    pub fn into_parts(self) -> (Version, BoxStream<'static, Result<Bytes>>) {
        (self.version, self.stream)
    }
}

impl Engine {
    /// Downloads a committed version (`latest`, `N`) as a stream that verifies size and
    /// digest while it flows and fails loudly on any mismatch or truncation.
    ///
    /// # Errors
    /// [`Error::CollectionNotFound`], [`Error::VersionNotFound`]; the authorizer's denial;
    /// [`Error::Corrupted`] if the object is missing or has the wrong size; store errors.
    pub async fn download(
        &self,
        actor: &Actor,
        collection: &CollectionId,
        selector: VersionSelector,
    ) -> Result<Download> {
        self.authorized_collection(actor, collection, Action::Download).await?;
        let version = self.inner.catalog.get_version(collection, selector).await?;
        let key = Path::from(version.object_key.as_str());
        let corrupted =
            |reason: String| Error::Corrupted { collection: collection.clone(), version: version.number, reason };
        if let Some(reason) = &version.quarantined {
            return Err(corrupted(format!("it is quarantined: {reason}")));
        }
        let got = match self.inner.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                // A rotation or a deletion may have purged it since the catalog answered:
                // then it is simply gone, not damaged.
                return match self.inner.catalog.get_version(collection, VersionSelector::Number(version.number)).await {
                    Ok(still) if still.id == version.id => Err(corrupted(format!("its object {key} is missing"))),
                    Ok(_) | Err(Error::VersionNotFound { .. }) => {
                        Err(Error::VersionNotFound { collection: collection.clone(), selector: selector.to_string() })
                    }
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(Error::store("get", &key, e)),
        };
        if got.meta.size != version.size {
            return Err(corrupted(format!(
                "its object {key} has {} bytes, {} were committed",
                got.meta.size, version.size
            )));
        }
        let raw: BoxStream<'static, Result<Bytes>> = match got.payload {
            GetResultPayload::File(file, _) => read_ahead(file, key.clone(), self.inner.file_reads.clone()),
            GetResultPayload::Stream(s) => {
                let err_key = key.clone();
                s.map_err(move |e| Error::store("get", &err_key, e)).boxed()
            }
        };
        let verify = VerifyStream {
            inner: raw,
            hasher: version.digest.algorithm().hasher(),
            received: 0,
            version: version.clone(),
            done: false,
        };
        Ok(Download { version, stream: verify.boxed() })
    }
}

/// Reads a local file in [`FILE_CHUNK`] blocks, up to `READ_AHEAD` blocks ahead of the
/// consumer, so reading and verifying overlap. Each block is one short blocking call that
/// reads straight into the block handed on (no second buffer, no copy); between blocks the
/// reader waits as a task, so a client that stops reading parks no thread (a blocking thread
/// per slow download would starve every other blocking call of the process), and at most
/// `reads` blocks are read at once engine-wide, so many downloads share a few blocking
/// threads instead of each taking one. Dropping the stream stops the reader.
fn read_ahead(file: std::fs::File, key: Path, reads: Arc<Semaphore>) -> BoxStream<'static, Result<Bytes>> {
    const READ_AHEAD: usize = 2;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::spawn(async move {
        let mut file = file;
        loop {
            let Ok(permit) = tx.reserve().await else { return };
            let Ok(reading) = reads.clone().acquire_owned().await else { return };
            let read = tokio::task::spawn_blocking(move || {
                let _reading = reading;
                let block = read_block(&mut file);
                (file, block)
            })
            .await;
            match read {
                Ok((_, Ok(block))) if block.is_empty() => return,
                Ok((rest, Ok(block))) => {
                    permit.send(Ok(block));
                    file = rest;
                }
                Ok((_, Err(e))) => {
                    permit.send(Err(e));
                    return;
                }
                Err(e) => {
                    permit.send(Err(std::io::Error::other(e)));
                    return;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
        .map_err(move |e| {
            Error::store("read", &key, object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })
        })
        .boxed()
}

/// Reads up to [`FILE_CHUNK`] bytes (fewer only at the end of the file; none at its end).
fn read_block(file: &mut std::fs::File) -> std::io::Result<Bytes> {
    use std::io::Read;
    // `read_to_end` fills the spare capacity as it is, without zeroing it first.
    let mut block = Vec::with_capacity(FILE_CHUNK);
    file.take(FILE_CHUNK as u64).read_to_end(&mut block)?;
    Ok(Bytes::from(block))
}

struct VerifyStream {
    inner: BoxStream<'static, Result<Bytes>>,
    hasher: Hasher,
    received: u64,
    version: Version,
    done: bool,
}

impl VerifyStream {
    fn corrupted(&mut self, reason: String) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(Error::Corrupted {
            collection: self.version.collection.clone(),
            version: self.version.number,
            reason,
        })))
    }
}

impl VerifyStream {
    /// Compares the digest of everything received with the committed one.
    fn check_digest(&mut self) -> std::result::Result<(), String> {
        let digest = self.hasher.finalize();
        if digest == self.version.digest {
            Ok(())
        } else {
            Err(format!("digest is {digest}, {} was committed", self.version.digest))
        }
    }
}

impl Stream for VerifyStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.version.size {
                    let reason = format!("its object is longer than the {} bytes committed", self.version.size);
                    return self.corrupted(reason);
                }
                self.hasher.update(&chunk);
                // The last chunk is held back until the digest matches: a consumer that stops
                // at the committed size (an HTTP response with its Content-Length written)
                // must never see all the bytes of a damaged object.
                if self.received == self.version.size
                    && let Err(reason) = self.check_digest()
                {
                    return self.corrupted(reason);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if self.received < self.version.size {
                    let reason = format!("truncated: {} of {} bytes", self.received, self.version.size);
                    return self.corrupted(reason);
                }
                // An empty version has no last chunk to hold back.
                if self.version.size == 0
                    && let Err(reason) = self.check_digest()
                {
                    return self.corrupted(reason);
                }
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}
