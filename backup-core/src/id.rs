//! Identifiers: validated collection ids, version ids, session ids and repository ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The longest collection id, in bytes.
pub const MAX_COLLECTION_ID_LEN: usize = 64;

/// A rule a collection id must follow; [`Error::InvalidCollectionId`] names the one broken.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdRule {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_COLLECTION_ID_LEN`] bytes.
    TooLong,
    /// The id contains `/`.
    Slash,
    /// The id contains `\`.
    Backslash,
    /// The id contains `..`.
    DotDot,
    /// The id starts with `.` (a hidden or relative path segment).
    LeadingDot,
    /// The id contains a control character.
    Control,
    /// The id contains white space.
    Whitespace,
    /// The id contains a character outside `[A-Za-z0-9._-]`.
    Charset,
}

impl fmt::Display for IdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdRule::Empty => "must not be empty",
            IdRule::TooLong => "must be at most 64 bytes long",
            IdRule::Slash => "must not contain '/'",
            IdRule::Backslash => "must not contain '\\'",
            IdRule::DotDot => "must not contain '..'",
            IdRule::LeadingDot => "must not start with '.'",
            IdRule::Control => "must not contain control characters",
            IdRule::Whitespace => "must not contain white space",
            IdRule::Charset => "may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
        })
    }
}

/// The id of a collection: a slug of 1 to 64 bytes from `[A-Za-z0-9._-]`, never a path.
///
/// ```
/// use backup_core::{CollectionId, ErrorKind};
///
/// let id: CollectionId = "iwa-ait".parse()?;
/// assert_eq!(id.as_str(), "iwa-ait");
///
/// let refused = CollectionId::new("../etc").unwrap_err();
/// assert_eq!(refused.kind(), ErrorKind::InvalidInput);
/// assert_eq!(refused.to_string(), r#"invalid collection id "../etc": must not contain '/'"#);
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CollectionId(String);

impl CollectionId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`Error::InvalidCollectionId`] naming the first [`IdRule`] broken.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        match Self::check(&id) {
            Ok(()) => Ok(CollectionId(id)),
            Err(rule) => Err(Error::InvalidCollectionId { id: truncate(&id, 32), rule }),
        }
    }

    /// The first rule `id` breaks, if any.
    pub fn check(id: &str) -> Result<(), IdRule> {
        if id.is_empty() {
            return Err(IdRule::Empty);
        }
        if id.len() > MAX_COLLECTION_ID_LEN {
            return Err(IdRule::TooLong);
        }
        for c in id.chars() {
            let rule = match c {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => continue,
                '/' => IdRule::Slash,
                '\\' => IdRule::Backslash,
                c if c.is_control() => IdRule::Control,
                c if c.is_whitespace() => IdRule::Whitespace,
                _ => IdRule::Charset,
            };
            return Err(rule);
        }
        if id.contains("..") {
            return Err(IdRule::DotDot);
        }
        if id.starts_with('.') {
            return Err(IdRule::LeadingDot);
        }
        Ok(())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CollectionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        CollectionId::new(s)
    }
}

impl TryFrom<&str> for CollectionId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        CollectionId::new(s)
    }
}

impl TryFrom<String> for CollectionId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        CollectionId::new(s)
    }
}

impl AsRef<str> for CollectionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CollectionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CollectionId::new(s).map_err(serde::de::Error::custom)
    }
}

/// The unique id of a version (and of the upload that produced it), never reused.
///
/// It is a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionId(uuid::Uuid);

impl VersionId {
    /// A fresh id.
    pub fn generate() -> Self {
        VersionId(uuid::Uuid::now_v7())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// Rebuilds an id from its UUID (for catalogs reading their rows).
    pub fn from_uuid(u: uuid::Uuid) -> Self {
        VersionId(u)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for VersionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        uuid::Uuid::parse_str(s).map(VersionId).map_err(|e| Error::invalid("version id", e.to_string()))
    }
}

/// The identity of a repository: written to the store as a marker object and to the catalog
/// when the two are first used together, and checked at every start so that a wrong catalog
/// can never be paired with a store (see [`crate::Engine::open_repository`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepositoryId(uuid::Uuid);

impl RepositoryId {
    /// A fresh id.
    pub fn generate() -> Self {
        RepositoryId(uuid::Uuid::new_v4())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// Rebuilds an id from its UUID (for catalogs reading their rows).
    pub fn from_uuid(u: uuid::Uuid) -> Self {
        RepositoryId(u)
    }
}

impl fmt::Display for RepositoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RepositoryId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        uuid::Uuid::parse_str(s).map(RepositoryId).map_err(|e| Error::invalid("repository id", e.to_string()))
    }
}

/// The id of a session (a registered token): the lowercase hex SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Validates a session id: 64 lowercase hex digits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when it is not 64 lowercase hex digits.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(SessionId(id))
        } else {
            Err(Error::invalid("session id", "must be 64 lowercase hex digits"))
        }
    }

    /// The session id of a token: the hex SHA-256 of its text.
    pub fn of_token(token: &str) -> Self {
        use sha2::Digest as _;
        SessionId(hex::encode(sha2::Sha256::digest(token.as_bytes())))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        SessionId::new(s)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SessionId::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn rule(id: &str) -> IdRule {
        match CollectionId::new(id) {
            Err(Error::InvalidCollectionId { rule, .. }) => rule,
            other => panic!("{id:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn every_rule_refuses_with_its_name() {
        assert_eq!(rule(""), IdRule::Empty);
        assert_eq!(rule(&"a".repeat(65)), IdRule::TooLong);
        assert_eq!(rule("a/b"), IdRule::Slash);
        assert_eq!(rule("a\\b"), IdRule::Backslash);
        assert_eq!(rule("a..b"), IdRule::DotDot);
        assert_eq!(rule(".."), IdRule::DotDot);
        assert_eq!(rule(".hidden"), IdRule::LeadingDot);
        assert_eq!(rule("."), IdRule::LeadingDot);
        assert_eq!(rule("a\u{0}b"), IdRule::Control);
        assert_eq!(rule("a\nb"), IdRule::Control);
        assert_eq!(rule("a b"), IdRule::Whitespace);
        assert_eq!(rule("a\u{a0}b"), IdRule::Whitespace);
        assert_eq!(rule("zażółć"), IdRule::Charset);
        assert_eq!(rule("a:b"), IdRule::Charset);
        assert_eq!(rule("a%2fb"), IdRule::Charset);
    }

    #[test]
    fn valid_ids_pass_and_keep_their_text() {
        for id in ["a", "iwa-ait", "A.b_c-9", &"x".repeat(64), "v1.2.3"] {
            assert_eq!(CollectionId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn errors_are_invalid_input_and_truncate_the_id() {
        let e = CollectionId::new("/".repeat(500)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<CollectionId>("\"ok\"").is_ok());
        let e = serde_json::from_str::<CollectionId>("\"a/b\"").unwrap_err();
        assert!(e.to_string().contains("must not contain '/'"), "{e}");
    }

    #[test]
    fn session_ids_are_sha256_hex() {
        let s = SessionId::of_token("abc");
        assert_eq!(s.as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(SessionId::new("ABC").is_err());
        assert!(SessionId::new(s.as_str()).is_ok());
    }
}
