//! [`QuotaStream`]: counts, hashes and checks an upload in one pass while it flows.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use pin_project_lite::pin_project;

use crate::content_rule::{ContentRule, MAX_RULE_WINDOW};
use crate::digest::{Digest, DigestAlgorithm, Hasher};
use crate::error::{BoxError, Error};

/// What a [`QuotaStream`] saw, once its input ended cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    /// The number of bytes.
    pub size: u64,
    /// Their digest.
    pub digest: Digest,
}

pin_project! {
    /// Wraps a body stream: counts bytes, hashes them in the same pass, and fails with
    /// [`Error::QuotaExceeded`] the moment more than `allowed` bytes arrived, without reading
    /// the rest. A [`ContentRule`] sees the first bytes as soon as they arrive and the last
    /// bytes at the end. `size_hint` is forwarded.
    ///
    /// After the first error the stream ends. Once it ended cleanly,
    /// [`QuotaStream::summary`] gives the size and digest.
    ///
    /// ```
    /// use backup_core::{DigestAlgorithm, Error, QuotaStream};
    /// use bytes::Bytes;
    /// use futures::{StreamExt, executor::block_on, stream};
    ///
    /// let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from("hello ")), Ok(Bytes::from("world"))]);
    /// let mut s = QuotaStream::new(body, 8, DigestAlgorithm::Blake3);
    /// assert!(block_on(s.next()).unwrap().is_ok());
    /// match block_on(s.next()) {
    ///     Some(Err(Error::QuotaExceeded { allowed: 8, received_at_least: 11 })) => {}
    ///     other => panic!("{other:?}"),
    /// }
    /// assert!(block_on(s.next()).is_none());
    /// assert!(s.summary().is_none());
    /// ```
    #[derive(Debug)]
    pub struct QuotaStream<S> {
        #[pin]
        inner: S,
        allowed: u64,
        received: u64,
        hasher: Hasher,
        rule: Option<RuleState>,
        expected: Option<u64>,
        finished: bool,
        summary: Option<StreamSummary>,
    }
}

#[derive(Debug)]
struct RuleState {
    rule: Arc<dyn ContentRule>,
    head_len: usize,
    tail_len: usize,
    head: Vec<u8>,
    head_checked: bool,
    tail: Vec<u8>,
}

impl RuleState {
    fn new(rule: Arc<dyn ContentRule>) -> Self {
        let head_len = rule.head_len().min(MAX_RULE_WINDOW);
        let tail_len = rule.tail_len().min(MAX_RULE_WINDOW);
        RuleState { rule, head_len, tail_len, head: Vec::new(), head_checked: false, tail: Vec::new() }
    }

    fn reject(&self, reason: String, at_end: bool) -> Error {
        Error::ContentRejected { rule: self.rule.name().to_owned(), reason, at_end }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if !self.head_checked {
            let want = self.head_len - self.head.len();
            self.head.extend_from_slice(&chunk[..want.min(chunk.len())]);
            if self.head.len() == self.head_len {
                self.head_checked = true;
                self.rule.check_head(&self.head, false).map_err(|r| self.reject(r, false))?;
            }
        }
        if self.tail_len > 0 {
            if chunk.len() >= self.tail_len {
                self.tail.clear();
                self.tail.extend_from_slice(&chunk[chunk.len() - self.tail_len..]);
            } else {
                let excess = (self.tail.len() + chunk.len()).saturating_sub(self.tail_len);
                self.tail.drain(..excess);
                self.tail.extend_from_slice(chunk);
            }
        }
        Ok(())
    }

    fn finish(&mut self, total: u64) -> Result<(), Error> {
        if !self.head_checked {
            self.head_checked = true;
            self.rule.check_head(&self.head, true).map_err(|r| self.reject(r, false))?;
        }
        self.rule.check_tail(&self.head, &self.tail, total).map_err(|r| self.reject(r, true))
    }
}

impl<S> QuotaStream<S> {
    /// Wraps `inner`, allowing at most `allowed` bytes, hashing with `algorithm`.
    pub fn new(inner: S, allowed: u64, algorithm: DigestAlgorithm) -> Self {
        QuotaStream {
            inner,
            allowed,
            received: 0,
            hasher: algorithm.hasher(),
            rule: None,
            expected: None,
            finished: false,
            summary: None,
        }
    }

    /// Also checks the content with `rule`.
    pub fn with_content_rule(mut self, rule: Arc<dyn ContentRule>) -> Self {
        self.rule = Some(RuleState::new(rule));
        self
    }

    /// Requires exactly `bytes` bytes: more fail with [`Error::QuotaExceeded`] (the allowed
    /// size becomes at most `bytes`), fewer with [`Error::Body`] at the end.
    pub fn with_expected_size(mut self, bytes: u64) -> Self {
        self.allowed = self.allowed.min(bytes);
        self.expected = Some(bytes);
        self
    }

    /// Bytes forwarded so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The size and digest, once the input ended cleanly and every check passed.
    pub fn summary(&self) -> Option<StreamSummary> {
        self.summary
    }
}

impl<S, E> Stream for QuotaStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        let item = match this.inner.poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let outcome: Result<(), Error> = match item {
            Some(Ok(chunk)) => {
                let received = this.received.saturating_add(chunk.len() as u64);
                if received > *this.allowed {
                    Err(Error::QuotaExceeded { allowed: *this.allowed, received_at_least: received })
                } else {
                    *this.received = received;
                    this.hasher.update(&chunk);
                    match this.rule.as_mut().map(|r| r.feed(&chunk)) {
                        Some(Err(e)) => Err(e),
                        _ => return Poll::Ready(Some(Ok(chunk))),
                    }
                }
            }
            Some(Err(e)) => Err(Error::Body { source: e.into() }),
            None => {
                *this.finished = true;
                if let Some(expected) = *this.expected
                    && *this.received != expected
                {
                    let reason = format!("the body ended after {} of the {expected} bytes announced", this.received);
                    return Poll::Ready(Some(Err(Error::Body { source: reason.into() })));
                }
                if let Some(Err(e)) = this.rule.as_mut().map(|r| r.finish(*this.received)) {
                    return Poll::Ready(Some(Err(e)));
                }
                *this.summary = Some(StreamSummary { size: *this.received, digest: this.hasher.finalize() });
                return Poll::Ready(None);
            }
        };
        *this.finished = true;
        Poll::Ready(outcome.err().map(Err))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished { (0, Some(0)) } else { self.inner.size_hint() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::{StreamExt, stream};
    use proptest::prelude::*;

    fn body(chunks: &[&[u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + use<> {
        let v: Vec<_> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        stream::iter(v)
    }

    fn drain<S: Stream<Item = Result<Bytes, Error>> + Unpin>(s: &mut S) -> (Vec<u8>, Option<Error>) {
        let mut out = Vec::new();
        while let Some(item) = block_on(s.next()) {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    assert!(block_on(s.next()).is_none(), "the stream ends after an error");
                    return (out, Some(e));
                }
            }
        }
        (out, None)
    }

    #[derive(Debug)]
    struct StartsAndEnds;
    impl ContentRule for StartsAndEnds {
        fn name(&self) -> &str {
            "ab"
        }
        fn head_len(&self) -> usize {
            3
        }
        fn tail_len(&self) -> usize {
            3
        }
        fn check_head(&self, head: &[u8], _complete: bool) -> Result<(), String> {
            if head.starts_with(b"AAA") { Ok(()) } else { Err("no AAA".into()) }
        }
        fn check_tail(&self, _head: &[u8], tail: &[u8], _total: u64) -> Result<(), String> {
            if tail.ends_with(b"ZZZ") { Ok(()) } else { Err(format!("tail {:?}", String::from_utf8_lossy(tail))) }
        }
    }

    #[test]
    fn exactly_allowed_passes_with_digest() {
        let mut s = QuotaStream::new(body(&[b"abc", b"def"]), 6, DigestAlgorithm::Sha256);
        let (out, err) = drain(&mut s);
        assert!(err.is_none());
        assert_eq!(out, b"abcdef");
        let sum = s.summary().unwrap();
        assert_eq!(sum.size, 6);
        assert_eq!(sum.digest, Digest::of(DigestAlgorithm::Sha256, b"abcdef"));
    }

    #[test]
    fn quota_fails_before_reading_the_rest() {
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = polled.clone();
        let endless = stream::repeat_with(move || {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from_static(&[0u8; 10]))
        });
        let mut s = QuotaStream::new(endless, 25, DigestAlgorithm::Blake3);
        let (out, err) = drain(&mut s);
        assert_eq!(out.len(), 20);
        assert!(matches!(err, Some(Error::QuotaExceeded { allowed: 25, received_at_least: 30 })), "{err:?}");
        assert_eq!(polled.load(std::sync::atomic::Ordering::SeqCst), 3, "not one chunk more is read");
    }

    #[test]
    fn body_errors_are_kept_as_source() {
        let s = stream::iter([Ok(Bytes::from_static(b"x")), Err(std::io::Error::other("producer died"))]);
        let mut s = QuotaStream::new(s, 100, DigestAlgorithm::Blake3);
        let (_, err) = drain(&mut s);
        let err = err.unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Interrupted);
        assert!(err.to_string().contains("producer died"));
        assert!(s.summary().is_none());
    }

    #[test]
    fn content_rule_refuses_early_by_head() {
        let mut s = QuotaStream::new(body(&[b"AB", b"CDEF", b"ZZZ"]), 100, DigestAlgorithm::Blake3)
            .with_content_rule(Arc::new(StartsAndEnds));
        let (out, err) = drain(&mut s);
        assert_eq!(out, b"AB", "refused on the chunk completing the head");
        assert!(matches!(err, Some(Error::ContentRejected { ref reason, .. }) if reason == "no AAA"), "{err:?}");
    }

    #[test]
    fn content_rule_checks_tail_across_chunks() {
        let mut s = QuotaStream::new(body(&[b"AAA", b"xxZ", b"Z", b"Z"]), 100, DigestAlgorithm::Blake3)
            .with_content_rule(Arc::new(StartsAndEnds));
        let (_, err) = drain(&mut s);
        assert!(err.is_none(), "{err:?}");
        assert!(s.summary().is_some());

        let mut s = QuotaStream::new(body(&[b"AAA", b"ZZZ", b"x"]), 100, DigestAlgorithm::Blake3)
            .with_content_rule(Arc::new(StartsAndEnds));
        let (_, err) = drain(&mut s);
        assert!(matches!(err, Some(Error::ContentRejected { .. })), "{err:?}");
        assert!(s.summary().is_none(), "a refused upload has no summary");
    }

    #[test]
    fn short_and_empty_bodies_reach_the_rule_complete() {
        let mut s =
            QuotaStream::new(body(&[]), 100, DigestAlgorithm::Blake3).with_content_rule(Arc::new(StartsAndEnds));
        let (_, err) = drain(&mut s);
        assert!(matches!(err, Some(Error::ContentRejected { .. })), "{err:?}");
    }

    #[test]
    fn size_hint_is_forwarded() {
        let s = QuotaStream::new(body(&[b"a", b"b"]), 100, DigestAlgorithm::Blake3);
        assert_eq!(s.size_hint(), (2, Some(2)));
    }

    proptest! {
        /// Arbitrary chunkings and limits against a model: the stream forwards the longest
        /// prefix of whole chunks within the limit and fails on the first chunk past it.
        #[test]
        fn matches_the_model(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..20),
            allowed in 0u64..600,
        ) {
            let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
            let mut expected = Vec::new();
            let mut expected_err = None;
            for c in &chunks {
                if (expected.len() + c.len()) as u64 > allowed {
                    expected_err = Some((expected.len() + c.len()) as u64);
                    break;
                }
                expected.extend_from_slice(c);
            }
            let input: Vec<Result<Bytes, std::io::Error>> = chunks.iter().map(|c| Ok(Bytes::from(c.clone()))).collect();
            let mut s = QuotaStream::new(stream::iter(input), allowed, DigestAlgorithm::Blake3);
            let (out, err) = drain(&mut s);
            prop_assert_eq!(&out, &expected);
            match (err, expected_err) {
                (None, None) => {
                    prop_assert!(total <= allowed);
                    let sum = s.summary().unwrap();
                    prop_assert_eq!(sum.size, total);
                    prop_assert_eq!(sum.digest, Digest::of(DigestAlgorithm::Blake3, &expected));
                }
                (Some(Error::QuotaExceeded { allowed: a, received_at_least: r }), Some(at)) => {
                    prop_assert_eq!(a, allowed);
                    prop_assert_eq!(r, at);
                    prop_assert!(r > allowed);
                }
                (e, x) => prop_assert!(false, "got {:?}, expected failure at {:?}", e, x),
            }
        }
    }
}
