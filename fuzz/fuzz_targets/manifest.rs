//! Any YAML as a collection, a user and a secret manifest: loading never panics, and what
//! loads is valid (a spec that validates, users with names).
#![no_main]

use std::path::PathBuf;

use arbitrary::Arbitrary;
use backup_policy::manifest::{Document, DocumentKind, load_documents};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    collection: String,
    user: String,
    secret: String,
}

fuzz_target!(|input: Input| {
    let docs = [
        Document {
            file: PathBuf::from("backupcollections/c.yaml"),
            kind: DocumentKind::Collection,
            text: input.collection,
        },
        Document { file: PathBuf::from("backupusers/u.yaml"), kind: DocumentKind::User, text: input.user },
        Document { file: PathBuf::from("secrets/s.yaml"), kind: DocumentKind::Secret, text: input.secret },
    ];
    if let Ok(m) = load_documents(&docs) {
        for c in &m.collections {
            c.spec.validate().expect("a loaded spec validates");
            assert_eq!(c.id.as_str(), "c");
        }
        for u in &m.users {
            assert_eq!(u.name, "u");
        }
    }
});
