//! Authorization: who may do what, decided by a pluggable [`Authorizer`].

use std::fmt::{self, Debug};
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::health::Window;
use crate::id::SessionId;
use crate::version::{Collection, Uploader};

/// Who asks: an authenticated user, possibly through an access key and a session.
///
/// The host authenticates (checks a password or a token) and builds the actor; the
/// [`Authorizer`] decides. Verified credentials that a policy needs (a token's scope, say)
/// travel in [`Actor::extensions`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Actor {
    /// The user name.
    pub user: String,
    /// The access key the user logged in with, if any.
    pub access_key: Option<String>,
    /// The session (token registration) of the request, if any.
    pub session: Option<SessionId>,
    /// The client's address, if known.
    pub client_addr: Option<IpAddr>,
    /// Typed values an authorizer reads, for example verified token claims.
    pub extensions: http::Extensions,
}

impl Actor {
    /// A user acting without access key or session.
    pub fn user(name: impl Into<String>) -> Self {
        Actor { user: name.into(), ..Actor::default() }
    }

    /// Sets the access key.
    pub fn with_access_key(mut self, key: impl Into<String>) -> Self {
        self.access_key = Some(key.into());
        self
    }

    /// Sets the session.
    pub fn with_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    /// Sets the client address.
    pub fn with_client_addr(mut self, addr: IpAddr) -> Self {
        self.client_addr = Some(addr);
        self
    }

    /// Adds a typed value for the authorizer.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The uploader record of versions this actor uploads.
    pub fn uploader(&self) -> Uploader {
        Uploader::user(self.user.clone()).with_access_key(self.access_key.clone()).with_session(self.session.clone())
    }
}

impl Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actor")
            .field("user", &self.user)
            .field("access_key", &self.access_key)
            .field("session", &self.session)
            .field("client_addr", &self.client_addr)
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

/// What an actor wants to do.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create a collection.
    CreateCollection,
    /// Read a collection's specification and usage.
    ReadCollection,
    /// List collections (decided per collection: only those the actor may read are shown).
    ListCollections,
    /// Change a collection's specification.
    UpdateCollection,
    /// Delete an empty collection.
    DeleteCollection,
    /// List a collection's versions.
    ListVersions,
    /// Upload a version.
    Upload,
    /// Download a version.
    Download,
    /// Delete (trash) a version.
    DeleteVersion,
    /// Restore a trashed version.
    RestoreVersion,
    /// Put a hold or a protection deadline on a version, or lift it.
    ProtectVersion,
    /// Re-read versions and check their digests (a scrub).
    VerifyVersions,
    /// Lengthen a version's retention lock (or lock a version).
    LockVersion,
    /// Lift or shorten a governance-mode lock, or weaken a governance lock policy, when the
    /// caller asks to ([`crate::protocol::LockBypass`]). An authorizer should grant it only
    /// by a dedicated permission, not as part of administration; compliance locks never give
    /// way to anyone.
    BypassGovernance,
    /// Read the audit log: of one collection (with the collection), or all of it (without,
    /// which includes the events of no collection, such as logins).
    ReadAudit,
}

impl Action {
    /// A stable lowercase name (`upload`, `download`, …) for logs and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Action::CreateCollection => "collection.create",
            Action::ReadCollection => "collection.read",
            Action::ListCollections => "collection.list",
            Action::UpdateCollection => "collection.update",
            Action::DeleteCollection => "collection.delete",
            Action::ListVersions => "version.list",
            Action::Upload => "version.upload",
            Action::Download => "version.download",
            Action::DeleteVersion => "version.delete",
            Action::RestoreVersion => "version.restore",
            Action::ProtectVersion => "version.protect",
            Action::VerifyVersions => "version.verify",
            Action::LockVersion => "version.lock",
            Action::BypassGovernance => "lock.bypass",
            Action::ReadAudit => "audit.read",
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AuthzRequest<'a> {
    /// Who asks.
    pub actor: &'a Actor,
    /// What for.
    pub action: Action,
    /// On which collection (none for creating or listing collections).
    pub collection: Option<&'a Collection>,
    /// When (the engine's clock).
    pub now: DateTime<Utc>,
}

impl<'a> AuthzRequest<'a> {
    /// A question from its parts.
    pub fn new(actor: &'a Actor, action: Action, collection: Option<&'a Collection>, now: DateTime<Utc>) -> Self {
        AuthzRequest { actor, action, collection, now }
    }
}

/// A positive decision, with what the engine must do because of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Permit {
    /// A single-use session to revoke atomically with the upload's commit.
    pub consume_session: Option<SessionId>,
    /// A session that must still be active when the upload commits: the token the upload
    /// came with, so that a logout during an upload stops it from becoming a version.
    pub require_session: Option<SessionId>,
}

impl Permit {
    /// A plain permit.
    pub fn allow() -> Self {
        Permit::default()
    }

    /// A permit that consumes a single-use session when the upload commits.
    pub fn consuming(session: SessionId) -> Self {
        Permit { consume_session: Some(session), require_session: None }
    }

    /// Requires `session` to be active when the upload commits.
    pub fn requiring(mut self, session: Option<SessionId>) -> Self {
        self.require_session = session;
        self
    }
}

/// The policy decision for (actor, action, collection, time, client address).
///
/// Contract: deny by returning [`crate::Error::PermissionDenied`],
/// [`crate::Error::Unauthenticated`], [`crate::Error::OutsideWindow`] or
/// [`crate::Error::RateLimited`]; fail closed on any doubt (an unknown user, a revoked
/// session); never panic.
///
/// The trait is `#[async_trait]`: an implementation outside this crate writes
/// `#[backup_core::async_trait]` on its `impl` (without it, rustc answers E0195, "lifetime
/// parameters or bounds do not match"):
///
/// ```
/// use backup_core::{Action, Actor, Authorizer, AuthzRequest, CollectionSpec, Engine, Error, ErrorKind, Limits, Permit};
///
/// /// Everyone reads; only `ops` changes anything.
/// #[derive(Debug)]
/// struct OpsWrites;
///
/// #[backup_core::async_trait]
/// impl Authorizer for OpsWrites {
///     async fn authorize(&self, request: &AuthzRequest<'_>) -> backup_core::Result<Permit> {
///         let reads = matches!(
///             request.action,
///             Action::ReadCollection | Action::ListCollections | Action::ListVersions | Action::Download
///         );
///         if reads || request.actor.user == "ops" {
///             Ok(Permit::allow())
///         } else {
///             Err(Error::PermissionDenied { reason: format!("{} may only read", request.actor.user) })
///         }
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let engine = Engine::builder().authorizer(std::sync::Arc::new(OpsWrites)).build()?;
/// let (ops, dev, id) = (Actor::user("ops"), Actor::user("dev"), "db".parse()?);
/// let spec = CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?);
/// let e = engine.create_collection(&dev, &id, spec.clone()).await.unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::PermissionDenied);
/// engine.create_collection(&ops, &id, spec).await?;
/// assert_eq!(engine.collection(&dev, &id).await?.id, id);
/// # Ok::<(), backup_core::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait Authorizer: Debug + Send + Sync + 'static {
    /// Decides one request.
    ///
    /// # Errors
    /// The denial, as above; or a backend error when the decision could not be made.
    async fn authorize(&self, request: &AuthzRequest<'_>) -> Result<Permit>;

    /// The backup windows of `collection`, for the window check of its health
    /// ([`crate::health`]): none by default, and then the health makes no window check. A
    /// policy that keeps windows answers with them (`backup-policy`'s `PolicyAuthorizer` with
    /// the windows of the collection's policy), the same windows it opens uploads by.
    ///
    /// # Errors
    /// A backend error when the policy could not be read.
    async fn backup_windows(&self, _collection: &Collection) -> Result<Vec<Arc<dyn Window>>> {
        Ok(Vec::new())
    }
}

/// Allows everything: for hosts that authorize before calling the engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    async fn authorize(&self, _request: &AuthzRequest<'_>) -> Result<Permit> {
        Ok(Permit::allow())
    }
}
