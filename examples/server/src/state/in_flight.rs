//! The idempotency keys of the uploads running on this instance (see
//! [`crate::api::idempotency`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The keys of the uploads running on this instance, per collection and user.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Arc<Mutex<HashSet<(String, String, String)>>>,
}

impl InFlight {
    /// Claims `key` for `user`'s upload into `collection` until the claim is dropped;
    /// `None` when an upload with that key is running already.
    pub(crate) fn claim(&self, collection: &str, user: &str, key: &str) -> Option<Claim> {
        let entry = (collection.to_owned(), user.to_owned(), key.to_owned());
        if !self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(entry.clone()) {
            return None;
        }
        Some(Claim { keys: self.keys.clone(), entry })
    }
}

/// A claimed key, released when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    keys: Arc<Mutex<HashSet<(String, String, String)>>>,
    entry: (String, String, String),
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.entry);
    }
}
