//! Upload bodies for tests: deterministic bytes in chunks, optionally failing at a chosen
//! byte.

use bytes::Bytes;
use futures::Stream;

/// `len` deterministic pseudo-random bytes derived from `seed`.
pub fn pattern(seed: u64, len: usize) -> Bytes {
    // xorshift64*: cheap, deterministic, not all zeros.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = v.len().min(len - out.len());
        out.extend_from_slice(&v[..take]);
    }
    Bytes::from(out)
}

/// A body yielding `data` in chunks of `chunk` bytes.
pub fn body_of(data: Bytes, chunk: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    failing_body(data, chunk, None)
}

/// Like [`body_of`], but the stream fails with an I/O error instead of delivering byte
/// `fail_at` (so exactly `fail_at` bytes are delivered first).
pub fn failing_body(
    data: Bytes,
    chunk: usize,
    fail_at: Option<u64>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    Body { data, chunk: chunk.max(1), fail_at, sent: 0, failed: false }
}

struct Body {
    data: Bytes,
    chunk: usize,
    fail_at: Option<u64>,
    sent: u64,
    failed: bool,
}

impl Stream for Body {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.failed {
            return Poll::Ready(None);
        }
        let mut take = self.chunk.min(self.data.len());
        if let Some(at) = self.fail_at {
            let left = at.saturating_sub(self.sent) as usize;
            if left == 0 {
                self.failed = true;
                return Poll::Ready(Some(Err(std::io::Error::other(format!("injected body failure at byte {at}")))));
            }
            take = take.min(left);
        }
        if take == 0 {
            return Poll::Ready(None);
        }
        let chunk = self.data.split_to(take);
        self.sent += take as u64;
        Poll::Ready(Some(Ok(chunk)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // In chunks, as the Stream contract says.
        let n = self.data.len().div_ceil(self.chunk);
        (n, Some(n + usize::from(self.fail_at.is_some())))
    }
}
