//! Why a token is refused: the kind an HTTP layer branches on, and the reason in words.

use std::fmt;

use crate::error::Error;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a token this service could read (size, header, claims).
    Malformed,
    /// A foreign key or a bad signature.
    BadSignature,
    /// Signed with an algorithm the key does not use (`none` included).
    BadAlgorithm,
    /// Past its expiry.
    Expired,
    /// Well signed but not registered here (or not matching its registration).
    Unregistered,
    /// Revoked (logged out, used up, or revoked by an administrator).
    Revoked,
    /// The catalog could not be asked.
    Unavailable,
}

/// A refused token: why, and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejection {
    /// Why.
    pub kind: Rejection,
    /// In words fit for the client.
    pub reason: String,
}

impl TokenRejection {
    pub(super) fn new(kind: Rejection, reason: impl Into<String>) -> Self {
        TokenRejection { kind, reason: reason.into() }
    }
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for TokenRejection {}

impl From<TokenRejection> for Error {
    fn from(r: TokenRejection) -> Self {
        match r.kind {
            Rejection::Unavailable => Error::Core(backup_core::Error::backend(
                backup_core::ErrorKind::Unavailable,
                "session registry",
                "get session",
                r.reason,
            )),
            _ => Error::unauthenticated(r.reason),
        }
    }
}
