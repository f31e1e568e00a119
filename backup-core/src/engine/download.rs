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
        let stream = self.download_verified(&version, selector).await?;
        let stream = if self.inner.config.event_log {
            AuditedDownload::new(self.clone(), actor.user.clone(), &version, stream).boxed()
        } else {
            stream
        };
        Ok(Download { version, stream })
    }

    async fn download_verified(
        &self,
        version: &Version,
        selector: VersionSelector,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let collection = &version.collection;
        if let Some(reason) = &version.quarantined {
            return Err(Error::Corrupted {
                collection: collection.clone(),
                version: version.number,
                reason: format!("it is quarantined: {reason}"),
            });
        }
        let read = match self.read_verified(version).await {
            Err(e @ (Error::Corrupted { .. } | Error::Store { .. })) if self.has_replicas_for(collection) => {
                self.read_from_replicas(version, e).await
            }
            read => read,
        };
        read.map_err(|e| match e {
            Error::VersionNotFound { collection, .. } => {
                Error::VersionNotFound { collection, selector: selector.to_string() }
            }
            e => e,
        })
    }

    /// A download whose primary object failed before its first byte: when the object is
    /// missing or damaged, it is copied back from a replica whose copy verifies and read
    /// again; when the primary store fails (or the repair does), the replica's copy is served,
    /// checked as it flows. `primary` is the error to answer when no replica helps.
    async fn read_from_replicas(&self, version: &Version, primary: Error) -> Result<BoxStream<'static, Result<Bytes>>> {
        if let Error::Corrupted { reason, .. } = &primary
            && let Some(replica) = self.heal_from_replicas(version).await
            && let Ok(stream) = self.read_verified(version).await
        {
            self.record_repair(version, &replica, reason, "download").await;
            return Ok(stream);
        }
        match self.replica_stream(version).await {
            Some(stream) => Ok(stream),
            None => Err(primary),
        }
    }

    /// A committed version's bytes, checked against its size and digest as they flow (the
    /// stream ends with [`Error::Corrupted`] on a mismatch).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the object is missing or has the wrong size;
    /// [`Error::VersionNotFound`] if the version was purged since it was read; store errors.
    pub(crate) async fn read_verified(&self, version: &Version) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(match self.open_verified(version).await? {
            // Verified as it is read, on the reading thread: hashing overlaps sending.
            Opened::File(file, key, verifier) => read_ahead(file, key, self.inner.file_reads.clone(), *verifier),
            Opened::Stream(stream) => stream,
        })
    }

    /// A committed version's object opened for reading, with what checks it: a local file to
    /// read, or a stream that checks itself.
    ///
    /// # Errors
    /// As [`Engine::read_verified`].
    pub(crate) async fn open_verified(&self, version: &Version) -> Result<Opened> {
        let collection = &version.collection;
        let key = Path::from(version.object_key.as_str());
        let corrupted =
            |reason: String| Error::Corrupted { collection: collection.clone(), version: version.number, reason };
        let got = match self.inner.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                // A rotation or a deletion may have purged it since the catalog answered:
                // then it is simply gone, not damaged.
                let gone =
                    || Error::VersionNotFound { collection: collection.clone(), selector: version.number.to_string() };
                return match self.inner.catalog.get_version(collection, VersionSelector::Number(version.number)).await {
                    Ok(still) if still.id == version.id => Err(corrupted(format!("its object {key} is missing"))),
                    Ok(_) | Err(Error::VersionNotFound { .. }) => Err(gone()),
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
        let verifier = Verifier::new(version);
        Ok(match got.payload {
            GetResultPayload::File(file, _) => Opened::File(file, key, Box::new(verifier)),
            GetResultPayload::Stream(s) => {
                let inner = s.map_err(move |e| Error::store("get", &key, e)).boxed();
                Opened::Stream(VerifyStream { inner, verifier, done: false }.boxed())
            }
        })
    }

    /// Reads a local file to its end through `verifier`, at most `segment` bytes per blocking
    /// call, into one reused buffer (nothing is handed on, so nothing is allocated per block);
    /// `between` runs after each segment with its size (a throttle). The engine-wide bound on
    /// blocks read at once applies.
    ///
    /// Returns the bytes read, and whether they checked out: [`Error::Corrupted`] from the
    /// verifier, read errors as store errors.
    pub(crate) async fn verify_file<F, Fut>(
        &self,
        file: std::fs::File,
        key: Path,
        verifier: Box<Verifier>,
        segment: usize,
        mut between: F,
    ) -> (u64, Result<()>)
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut state = (file, verifier, vec![0u8; FILE_CHUNK]);
        let mut total = 0u64;
        loop {
            let reading = self.inner.file_reads.clone().acquire_owned().await;
            let reading_key = key.clone();
            let read = tokio::task::spawn_blocking(move || {
                let _reading = reading;
                let (file, verifier, block) = &mut state;
                let mut done = 0usize;
                let outcome = loop {
                    let n = match std::io::Read::read(file, block) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => break Err(read_error(&reading_key, e)),
                    };
                    if n == 0 {
                        break verifier.end().map(|()| true);
                    }
                    if let Err(e) = verifier.chunk(&block[..n]) {
                        break Err(e);
                    }
                    done += n;
                    if done >= segment {
                        break Ok(false);
                    }
                };
                (state, done, outcome)
            })
            .await;
            let (next, done, outcome) = match read {
                Ok(read) => read,
                Err(e) => return (total, Err(Error::internal(format!("reading {key}: {e}")))),
            };
            total += done as u64;
            match outcome {
                Ok(true) => return (total, Ok(())),
                Ok(false) => {}
                Err(e) => return (total, Err(e)),
            }
            between(done).await;
            state = next;
        }
    }
}

/// A version's object opened by [`Engine::open_verified`].
pub(crate) enum Opened {
    /// A local file and what checks its bytes.
    File(std::fs::File, Path, Box<Verifier>),
    /// A stream that checks itself (it ends with [`Error::Corrupted`] on a mismatch).
    Stream(BoxStream<'static, Result<Bytes>>),
}

/// Reads a local file in [`FILE_CHUNK`] blocks, up to `READ_AHEAD` blocks ahead of the
/// consumer, checking each with `verifier` as it is read. Each block is one short blocking
/// call that reads straight into the block handed on (no second buffer, no copy) and hashes
/// it, so reading and hashing overlap sending; between blocks the reader waits as a task, so a
/// client that stops reading parks no thread (a blocking thread per slow download would starve
/// every other blocking call of the process), and at most `reads` blocks are read at once
/// engine-wide, so many downloads share a few blocking threads. Dropping the stream stops the
/// reader.
fn read_ahead(
    file: std::fs::File,
    key: Path,
    reads: Arc<Semaphore>,
    verifier: Verifier,
) -> BoxStream<'static, Result<Bytes>> {
    const READ_AHEAD: usize = 2;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(READ_AHEAD);
    tokio::spawn(async move {
        // Moved into each blocking read and back.
        let mut state = (file, verifier, key);
        loop {
            let Ok(permit) = tx.reserve().await else { return };
            let Ok(reading) = reads.clone().acquire_owned().await else { return };
            let read = tokio::task::spawn_blocking(move || {
                let _reading = reading;
                let (file, verifier, key) = &mut state;
                let checked = match read_block(file) {
                    Ok(block) if block.is_empty() => verifier.end().map(|()| None),
                    Ok(block) => verifier.chunk(&block).map(|()| Some(block)),
                    Err(e) => Err(read_error(key, e)),
                };
                (state, checked)
            })
            .await;
            match read {
                Ok((_, Ok(None))) => return,
                Ok((next, Ok(Some(block)))) => {
                    permit.send(Ok(block));
                    state = next;
                }
                Ok((_, Err(e))) => {
                    permit.send(Err(e));
                    return;
                }
                Err(e) => {
                    permit.send(Err(Error::internal(format!("reading a download: {e}"))));
                    return;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

/// A failed read of a local file, as the store error it is.
fn read_error(key: &Path, e: std::io::Error) -> Error {
    Error::store("read", key, object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })
}

/// Reads up to [`FILE_CHUNK`] bytes (fewer only at the end of the file; none at its end).
fn read_block(file: &mut std::fs::File) -> std::io::Result<Bytes> {
    use std::io::Read;
    // `read_to_end` fills the spare capacity as it is, without zeroing it first.
    let mut block = Vec::with_capacity(FILE_CHUNK);
    file.take(FILE_CHUNK as u64).read_to_end(&mut block)?;
    Ok(Bytes::from(block))
}

/// Checks a version's bytes as they come: never more than were committed, none missing, and
/// the digest. The chunk that completes the committed size passes only if the digest
/// matches: a consumer that stops at the committed size (an HTTP response with its
/// Content-Length written) must never see all the bytes of a damaged object.
#[derive(Debug)]
pub(crate) struct Verifier {
    hasher: Hasher,
    received: u64,
    version: Version,
}

impl Verifier {
    pub(crate) fn new(version: &Version) -> Self {
        Verifier { hasher: version.digest.algorithm().hasher(), received: 0, version: version.clone() }
    }

    fn corrupted(&self, reason: String) -> Error {
        Error::Corrupted { collection: self.version.collection.clone(), version: self.version.number, reason }
    }

    /// Takes the next chunk.
    fn chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.received += chunk.len() as u64;
        if self.received > self.version.size {
            return Err(self.corrupted(format!("its object is longer than the {} bytes committed", self.version.size)));
        }
        self.hasher.update(chunk);
        if self.received == self.version.size {
            self.check_digest()?;
        }
        Ok(())
    }

    /// The input ended.
    fn end(&mut self) -> Result<()> {
        if self.received < self.version.size {
            return Err(self.corrupted(format!("truncated: {} of {} bytes", self.received, self.version.size)));
        }
        // An empty version has no last chunk that checked the digest.
        if self.version.size == 0 {
            self.check_digest()?;
        }
        Ok(())
    }

    /// Compares the digest of everything received with the committed one.
    fn check_digest(&mut self) -> Result<()> {
        let digest = self.hasher.finalize();
        if digest == self.version.digest {
            Ok(())
        } else {
            Err(self.corrupted(format!("digest is {digest}, {} was committed", self.version.digest)))
        }
    }
}

/// `inner`, a stream of `version`'s bytes, checked as it flows: it ends with
/// [`Error::Corrupted`] on a mismatch, and the chunk that completes the size passes only if
/// the digest matches.
pub(crate) fn verified(
    inner: BoxStream<'static, Result<Bytes>>,
    version: &Version,
) -> BoxStream<'static, Result<Bytes>> {
    VerifyStream { inner, verifier: Verifier::new(version), done: false }.boxed()
}

/// A stream of a version's bytes from an object store, checked by a [`Verifier`].
struct VerifyStream {
    inner: BoxStream<'static, Result<Bytes>>,
    verifier: Verifier,
    done: bool,
}

impl Stream for VerifyStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = match self.inner.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => match self.verifier.chunk(&chunk) {
                Ok(()) => return Poll::Ready(Some(Ok(chunk))),
                Err(e) => Some(Err(e)),
            },
            Poll::Ready(Some(Err(e))) => Some(Err(e)),
            Poll::Ready(None) => self.verifier.end().err().map(Err),
        };
        self.done = true;
        Poll::Ready(polled)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

/// A download's stream that records, when it ends or is dropped, a `version.download` event:
/// who, which version, how many bytes it handed on, and whether it was complete, failed
/// (with the reason) or cut (dropped before its end: the client went away).
struct AuditedDownload {
    inner: BoxStream<'static, Result<Bytes>>,
    engine: Option<Engine>,
    user: String,
    collection: CollectionId,
    number: u64,
    size: u64,
    sent: u64,
}

impl AuditedDownload {
    fn new(engine: Engine, user: String, version: &Version, inner: BoxStream<'static, Result<Bytes>>) -> Self {
        AuditedDownload {
            inner,
            engine: Some(engine),
            user,
            collection: version.collection.clone(),
            number: version.number,
            size: version.size,
            sent: 0,
        }
    }

    /// Records the outcome once, in a task of the engine's (a drop cannot wait).
    fn finish(&mut self, outcome: &str) {
        let Some(engine) = self.engine.take() else { return };
        let event = crate::AuditEvent::new(engine.now(), self.user.clone(), "version.download")
            .with_collection(&self.collection)
            .with_version(self.number)
            .with_detail(format!("{} of {} bytes, {outcome}", self.sent, self.size));
        let recorder = engine.clone();
        engine.inner.tasks.spawn(async move {
            if let Err(e) = recorder.record_audit(&event).await {
                tracing::warn!(error = %e, "a download could not be written to the audit log");
            }
        });
    }
}

impl Stream for AuditedDownload {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                self.sent += chunk.len() as u64;
                // The last chunk is handed on only once the digest matched; a consumer that
                // stops at the size (a response with a length) never polls the end.
                if self.sent == self.size {
                    self.finish("complete");
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = format!("failed: {e}");
                self.finish(&outcome);
            }
            Poll::Ready(None) => self.finish("complete"),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for AuditedDownload {
    fn drop(&mut self) {
        self.finish("cut");
    }
}
