//! The quota stream fed arbitrary chunkings and limits, checked against a model: it forwards
//! the longest prefix of whole chunks within the limit, fails on the first chunk past it,
//! and once it ends cleanly reports the exact size and digest.
#![no_main]

use arbitrary::Arbitrary;
use backup_core::{Digest, DigestAlgorithm, Error, QuotaStream};
use bytes::Bytes;
use futures::StreamExt;
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    allowed: u16,
    expected: Option<u16>,
    sha256: bool,
    chunks: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let algorithm = if input.sha256 { DigestAlgorithm::Sha256 } else { DigestAlgorithm::Blake3 };
    let allowed = u64::from(input.allowed);
    let body = futures::stream::iter(input.chunks.iter().cloned().map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
    let mut stream = QuotaStream::new(body, allowed, algorithm);
    let mut limit = allowed;
    if let Some(e) = input.expected {
        stream = stream.with_expected_size(u64::from(e));
        limit = limit.min(u64::from(e));
    }

    // The model.
    let mut forwarded_model = Vec::new();
    let mut failure_at = None;
    for c in &input.chunks {
        let next = (forwarded_model.len() + c.len()) as u64;
        if next > limit {
            failure_at = Some(next);
            break;
        }
        forwarded_model.extend_from_slice(c);
    }

    let mut forwarded = Vec::new();
    let mut error = None;
    while let Some(item) = block_on(stream.next()) {
        match item {
            Ok(b) => forwarded.extend_from_slice(&b),
            Err(e) => {
                error = Some(e);
                assert!(block_on(stream.next()).is_none(), "the stream ends after an error");
                break;
            }
        }
    }
    assert_eq!(forwarded, forwarded_model);
    match (error, failure_at) {
        (Some(Error::QuotaExceeded { allowed: a, received_at_least }), Some(at)) => {
            assert_eq!(a, limit);
            assert_eq!(received_at_least, at);
            assert!(stream.summary().is_none());
        }
        (Some(Error::Body { .. }), None) => {
            // Only a body shorter than announced ends this way.
            let expected = input.expected.map(u64::from).expect("an announced size");
            assert!((forwarded.len() as u64) < expected);
        }
        (None, None) => {
            let summary = stream.summary().expect("a clean end has a summary");
            assert_eq!(summary.size, forwarded.len() as u64);
            assert_eq!(summary.digest, Digest::of(algorithm, &forwarded));
            if let Some(e) = input.expected {
                assert_eq!(summary.size, u64::from(e));
            }
        }
        (e, f) => panic!("stream said {e:?}, model expected failure at {f:?}"),
    }
});
