//! # backup-policy
//!
//! Who may do what, when and from where, with backup-repository's semantics kept where they
//! are sound and its known bugs fixed: users with roles and argon2id passwords, access keys
//! (`user$key` logins limited to some collections), per-collection ACLs, scoped JWTs
//! registered as revocable sessions, backup windows, IP allow-lists, rate limits, the OpenPGP
//! content rule, and backup-repository's manifests as configuration.
//!
//! ## The pieces
//!
//! - [`manifest::load`] reads `BackupCollection`, `BackupUser` and `Secret` manifests from
//!   backup-repository's folder layout and validates them (file and field named);
//!   [`manifest::Definitions`] takes the same users and collections as values, built in code,
//!   and validates them alike.
//! - [`Directory`] holds the users and collection policies in force (swap them on reload) and
//!   checks logins ([`Directory::authenticate`]).
//! - [`TokenService`] issues JWTs (HS256 or EdDSA, with key ids for rotation), registers each
//!   as a session in the catalog, and verifies them, failing closed.
//! - [`PolicyAuthorizer`] is the engine's [`backup_core::Authorizer`]: it decides with the
//!   directory and the [`VerifiedToken`] in the actor's extensions.
//! - [`decide`] is the decision itself, a pure function: access keys and token scopes can only
//!   narrow what the ACL and global roles grant.
//! - [`BackupWindow`], [`RateLimits`], [`client_address`], [`OpenPgpRule`], [`parse_size()`].
//!
//! ## A login and an upload
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::{Engine, ManualClock, MemoryCatalog, SystemClock};
//! use backup_policy::{Directory, OpenPgpRule, PolicyAuthorizer, TokenKey, TokenRequest, TokenService, manifest};
//! use bytes::Bytes;
//! use futures::stream;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server/config");
//! let manifests = manifest::load(&root, "backup-repository")?;
//! let directory = Arc::new(Directory::new(manifests.policy_set()));
//! let catalog = Arc::new(MemoryCatalog::new());
//! let tokens = TokenService::new(TokenKey::hs256(b"a long and random secret", None)?, catalog.clone(), Arc::new(SystemClock))?;
//! // The example collection accepts uploads in 30-minute windows from every full and half
//! // hour; this engine's clock stands inside one (a real one uses `SystemClock`).
//! let clock = Arc::new(ManualClock::new("2026-12-07T10:15:00Z".parse()?));
//! let engine = Engine::builder()
//!     .clock(clock)
//!     .catalog(catalog)
//!     .authorizer(Arc::new(PolicyAuthorizer::new(directory.clone())))
//!     .content_rule(Arc::new(OpenPgpRule))
//!     .build()?;
//! // The manifests' collections, validated and audited by the engine.
//! manifests.declare_collections(&engine).await?;
//!
//! // POST /api/stable/auth/login as some-user$uploader (password "test").
//! let who = directory.authenticate(&"some-user$uploader".parse()?, "test", Some("10.0.0.1".parse().unwrap())).await?;
//! let issued = tokens.issue(&who.user, who.access_key.as_deref(), TokenRequest::login()).await?;
//!
//! // A later request with that bearer token.
//! let actor = tokens.verify(&issued.token).await?.actor(Some("10.0.0.1".parse().unwrap()));
//! let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from(
//!     "-----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\n",
//! ))]);
//! let version = engine.upload(&actor, &"iwa-ait".parse()?, body).await?;
//! assert_eq!(version.number, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! ## Fixed from backup-repository
//!
//! A removed access key, a deleted or deactivated user, a revoked or expired token all deny
//! (backup-repository widened a session whose key was removed to the full user, and panicked
//! on deleted users); `restrictByIP` and `deactivated` are enforced; an access key or scope
//! grants nothing outside its objects; both ACL spellings (`name`/`type` and `userName`) and
//! both role spellings (`userManager`, `usersManager`) work; binary OpenPGP is accepted and the
//! check is optional per collection; configuration errors stop the load instead of failing
//! uploads; rate limits have bounded memory and believe `X-Forwarded-For` only from trusted
//! proxies.

#![deny(missing_docs)]

mod authorizer;
mod decision;
mod directory;
mod error;
mod identity;
pub mod manifest;
mod openpgp;
mod password;
mod rate_limit;
mod role;
mod size;
mod token;
mod window;

pub use authorizer::PolicyAuthorizer;
pub use decision::{Asker, Subject, decide};
pub use directory::{Authenticated, CollectionPolicy, Directory, PolicySet};
pub use error::{Error, ErrorKind, Result};
pub use identity::{AccessKey, AclEntry, COLLECTION, LoginName, ObjectGrant, OperationsScope, User, canonical};
pub use openpgp::OpenPgpRule;
pub use password::{Argon2Kind, HashParams, StoredPassword, TARGET as PASSWORD_PARAMS};
pub use rate_limit::{Bucket, KnownLogins, RateInfo, RateKey, RateLimitConfig, RateLimits, client_address};
pub use role::{Permission, Permissions, Role, roles_allow};
pub use size::parse_size;
pub use token::{
    DEFAULT_LIFETIME as DEFAULT_TOKEN_LIFETIME, DEFAULT_MAX_CHAIN, IssuedToken, Rejection, Requester, TokenKey,
    TokenRejection, TokenRequest, TokenService, VerifiedToken,
};
pub use window::{BackupWindow, any_open};
