//! Any bytes, in any chunking, through the OpenPGP content rule: never a panic, and the
//! verdict does not depend on how the bytes are chunked.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use backup_core::{DigestAlgorithm, QuotaStream};
use backup_policy::OpenPgpRule;
use bytes::Bytes;
use futures::StreamExt;
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    body: Vec<u8>,
    cuts: Vec<u16>,
}

fn verdict(chunks: Vec<Bytes>) -> bool {
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut s = QuotaStream::new(body, u64::MAX, DigestAlgorithm::Blake3).with_content_rule(Arc::new(OpenPgpRule));
    while let Some(item) = block_on(s.next()) {
        if item.is_err() {
            return false;
        }
    }
    true
}

fuzz_target!(|input: Input| {
    let whole = verdict(vec![Bytes::from(input.body.clone())]);
    let mut chunks = Vec::new();
    let mut rest = Bytes::from(input.body);
    for cut in input.cuts {
        if rest.is_empty() {
            break;
        }
        let at = usize::from(cut) % (rest.len() + 1);
        chunks.push(rest.split_to(at));
    }
    chunks.push(rest);
    assert_eq!(verdict(chunks), whole, "chunking changed the verdict");
});
