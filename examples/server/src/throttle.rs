//! Per-user caps on requests that hold resources for long: uploads and downloads in
//! progress. A user at the cap is answered 429 at once instead of queueing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::json::ApiError;

/// At most `per_user` `what`s (uploads, downloads) at once for each user. Only authenticated
/// users get here, so the map holds at most one entry per user of the manifests.
#[derive(Debug)]
pub(crate) struct PerUser {
    per_user: u32,
    what: &'static str,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl PerUser {
    pub(crate) fn new(per_user: u32, what: &'static str) -> Self {
        PerUser { per_user: per_user.max(1), what, slots: Mutex::default() }
    }

    /// A slot of `user`'s, held until the permit is dropped.
    ///
    /// # Errors
    /// A 429 saying so when all of `user`'s slots are taken.
    pub(crate) fn acquire(&self, user: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        self.try_acquire(user).ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{} {} of yours are in progress already; retry when one ends", self.per_user, self.what),
            )
        })
    }

    /// A slot of `user`'s, held until the permit is dropped; `None` when all are taken.
    fn try_acquire(&self, user: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(user.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.per_user as usize))).clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_its_own_slots() {
        let caps = PerUser::new(2, "uploads");
        let a1 = caps.try_acquire("a").unwrap();
        let _a2 = caps.try_acquire("a").unwrap();
        assert!(caps.try_acquire("a").is_none(), "at the cap");
        assert!(caps.try_acquire("b").is_some(), "another user");
        drop(a1);
        assert!(caps.try_acquire("a").is_some(), "a slot came back");
        let _a3 = caps.try_acquire("a").unwrap();
        let e = caps.acquire("a").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.message, "2 uploads of yours are in progress already; retry when one ends");
    }
}
