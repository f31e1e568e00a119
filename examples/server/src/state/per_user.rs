//! Per-user caps on requests that hold resources for long: uploads and downloads in
//! progress. A user at the cap is answered 429 at once instead of queueing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// [`Busy`] when all of `user`'s slots are taken (the API answers it 429).
    pub(crate) fn acquire(&self, user: &str) -> Result<OwnedSemaphorePermit, Busy> {
        self.try_acquire(user).ok_or(Busy { per_user: self.per_user, what: self.what })
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

/// All of a user's slots are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    per_user: u32,
    what: &'static str,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} of yours are in progress already; retry when one ends", self.per_user, self.what)
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
        assert_eq!(e.to_string(), "2 uploads of yours are in progress already; retry when one ends");
    }
}
