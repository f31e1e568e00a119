//! Bounded channels of chunks between the async side (the HTTP transfer) and a blocking
//! thread (files, a command's output, OpenPGP): a few chunks in flight at most, so memory
//! stays flat however large the backup.

use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::error::CliError;

/// The size of the chunks handed across.
pub(crate) const CHUNK: usize = 256 * 1024;

/// How many chunks may wait in a channel.
const IN_FLIGHT: usize = 8;

/// The transfer failed: cut, or its bytes did not match what the server announced. The
/// error, carried through a reader so that whoever reads can tell it from a failure of its
/// own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TransferCut(pub(crate) CliError);

/// A channel for an upload's body: the blocking side writes, the HTTP body streams.
pub(crate) fn upload_channel() -> (ChunkWriter, mpsc::Receiver<io::Result<Bytes>>) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    (ChunkWriter { tx, buf: BytesMut::new() }, rx)
}

/// The writing end of an upload's body.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

/// The request no longer reads the body (it ended or failed).
#[derive(Debug, thiserror::Error)]
#[error("the upload stopped")]
struct UploadStopped;

fn upload_stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, UploadStopped)
}

/// Whether a write failed because the request stopped reading (not because of the source).
pub(crate) fn is_upload_stopped(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<UploadStopped>())
}

impl ChunkWriter {
    fn send(&self, chunk: Bytes) -> io::Result<()> {
        self.tx.blocking_send(Ok(chunk)).map_err(|_| upload_stopped())
    }

    /// Copies all of `input` into the body, a chunk per read, each read straight into a
    /// buffer the HTTP body then sends and gives back (no copy, and no fresh memory whose
    /// every page faults in: that cost a quarter of the client's time).
    pub(crate) fn copy_from(&mut self, mut input: impl Read) -> io::Result<u64> {
        self.flush()?;
        let pool = Arc::new(Pool::default());
        let mut total = 0u64;
        loop {
            let mut buf = pool.take();
            buf.resize(CHUNK, 0);
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            self.send(Bytes::from_owner(Pooled { buf, len: n, pool: pool.clone() }))?;
        }
    }

    /// Ends the body with an error: the request is aborted before its end, so the server
    /// never sees a complete upload and stores nothing.
    pub(crate) fn fail(self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }

    /// Sends what is buffered; dropping the writer afterwards ends the body.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.send(chunk)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(chunk)?;
        }
        Ok(())
    }
}

/// Buffers given back when their chunk is dropped (sent, or written), and reused.
#[derive(Debug, Default)]
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.free.lock().ok().and_then(|mut free| free.pop()).unwrap_or_default()
    }
}

/// A chunk of a pooled buffer; dropping it returns the buffer.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut free) = self.pool.free.lock()
            && free.len() <= IN_FLIGHT * 2
        {
            free.push(buf);
        }
    }
}

/// A channel for a download's body: the async side sends what arrives (verified by the
/// client library), the blocking side reads, counting every byte.
pub(crate) fn download_channel() -> (ChunkSender, ChunkReader) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let reader = ChunkReader { rx, current: Bytes::new(), count: 0 };
    (ChunkSender { tx, pool: Arc::default(), filling: Vec::new() }, reader)
}

/// The sending end of a download's body.
#[derive(Debug)]
pub(crate) struct ChunkSender {
    tx: mpsc::Sender<Result<Bytes, TransferCut>>,
    pool: Arc<Pool>,
    filling: Vec<u8>,
}

impl ChunkSender {
    /// Copies received bytes into a reused buffer, handed over once it holds [`CHUNK`]
    /// bytes. The HTTP client's own buffer is then free again at its next read (kept while
    /// the writer catches up, the client would read into fresh memory each time, and the
    /// page faults of that cost more than this copy: a third of the client's CPU in a 1 GiB
    /// download), and the writer gets large writes it passes to the file as they are.
    /// `false` when the reader is gone.
    pub(crate) async fn send(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.filling.capacity() == 0 {
                self.filling = self.pool.take();
                self.filling.clear();
                self.filling.reserve_exact(CHUNK);
            }
            let n = data.len().min(CHUNK - self.filling.len());
            self.filling.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.filling.len() >= CHUNK && !self.hand_over().await {
                return false;
            }
        }
        true
    }

    async fn hand_over(&mut self) -> bool {
        let buf = std::mem::take(&mut self.filling);
        let len = buf.len();
        let pooled = Bytes::from_owner(Pooled { buf, len, pool: self.pool.clone() });
        self.tx.send(Ok(pooled)).await.is_ok()
    }

    /// Hands over what is left: the body ended.
    pub(crate) async fn finish(mut self) {
        if !self.filling.is_empty() {
            self.hand_over().await;
        }
    }

    /// Ends the body with the transfer's error.
    pub(crate) async fn cut(self, cut: TransferCut) {
        let _ = self.tx.send(Err(cut)).await;
    }
}

/// The reading end of a download's body.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    rx: mpsc::Receiver<Result<Bytes, TransferCut>>,
    current: Bytes,
    count: u64,
}

impl ChunkReader {
    /// The next chunk as it arrived (the plain download writes these as they are).
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        match self.rx.blocking_recv() {
            None => Ok(None),
            Some(Err(cut)) => Err(io::Error::other(cut)),
            Some(Ok(chunk)) => {
                self.count += chunk.len() as u64;
                Ok(Some(chunk))
            }
        }
    }

    /// Reads what is left (a decryptor may stop before trailing bytes, and the verdict on
    /// the size and digest comes after the last one) and returns how many bytes arrived.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        while self.next_chunk()?.is_some() {}
        Ok(self.count)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.current.is_empty()
            && let Some(chunk) = self.next_chunk()?
        {
            self.current = chunk;
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        let _ = self.current.split_to(n.min(self.current.len()));
    }
}
