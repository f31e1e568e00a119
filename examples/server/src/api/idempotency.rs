//! `Idempotency-Key` on uploads: a retry of an upload whose answer was lost gets the version
//! already committed instead of a second copy.
//!
//! The key is recorded with the version (the engine's [`backup_core::IDEMPOTENCY_KEY`]
//! metadata), so it survives restarts and rebuilds and any instance sharing the catalog finds
//! it. Two requests with the same key at once on one instance: the second is refused with
//! `409` while the first runs (it cannot know yet whether the first will commit; the claims
//! are [`crate::state::in_flight::InFlight`]).

use axum::http::HeaderMap;

use crate::http::json::ApiError;

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";

/// The answer's header on a replay.
pub(crate) const REPLAYED: &str = "idempotent-replayed";

/// The key a request carries, checked; `None` without one.
///
/// # Errors
/// `400` for a malformed key, or more than one.
pub(crate) fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request("more than one Idempotency-Key header"));
    }
    let key = value.to_str().map_err(|_| ApiError::bad_request("Idempotency-Key is not visible ASCII"))?;
    backup_core::check_idempotency_key(key).map_err(|e| ApiError::bad_request(format!("Idempotency-Key: {e}")))?;
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_claimed_once_at_a_time() {
        let mut headers = HeaderMap::new();
        assert_eq!(key_of(&headers).unwrap(), None);
        headers.insert(HEADER, "3f1c-nightly".parse().unwrap());
        assert_eq!(key_of(&headers).unwrap().as_deref(), Some("3f1c-nightly"));
        headers.insert(HEADER, "has space".parse().unwrap());
        assert!(key_of(&headers).is_err());
        headers.insert(HEADER, "a".parse().unwrap());
        headers.append(HEADER, "b".parse().unwrap());
        assert!(key_of(&headers).is_err());

        let running = crate::state::in_flight::InFlight::default();
        let first = running.claim("db", "alice", "k").unwrap();
        assert!(running.claim("db", "alice", "k").is_none(), "one at a time");
        let _other_user = running.claim("db", "bob", "k").unwrap();
        drop(first);
        assert!(running.claim("db", "alice", "k").is_some());
    }
}
