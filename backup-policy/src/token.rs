//! Tokens: scoped JWTs registered as sessions in the catalog, so they can be listed and
//! revoked; verification fails closed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backup_core::catalog::{Catalog, CatalogExt};
use backup_core::{AuditEvent, Clock, Session, SessionId};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::identity::{OperationsScope, User};
use crate::role::Role;

/// The longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The shortest HS256 secret accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// How long tokens live unless configured: 6 hours, as in backup-repository.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// Selects jsonwebtoken's crypto provider (aws-lc-rs) once per process. jsonwebtoken panics
/// at the first use when it cannot tell which provider to use (for example when feature
/// unification enables two), so it is installed explicitly.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already, which is fine.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

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
    fn new(kind: Rejection, reason: impl Into<String>) -> Self {
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

/// A key to sign or check tokens with, and its id (`kid`) for rotation.
#[derive(Clone)]
pub struct TokenKey {
    kid: String,
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl TokenKey {
    /// An HS256 key; its id is derived from the secret unless given.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for a secret under 16 bytes.
    pub fn hs256(secret: &[u8], kid: Option<&str>) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::invalid("JWT secret", format!("must be at least {MIN_SECRET_LEN} bytes long")));
        }
        let kid = kid.map_or_else(|| hex::encode(&sha2::Sha256::digest(secret)[..6]), str::to_owned);
        Ok(TokenKey {
            kid,
            algorithm: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(secret)),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// An Ed25519 (EdDSA) key pair from PEM files (`openssl genpkey -algorithm ed25519` and
    /// `openssl pkey -pubout`), to sign and check. The pair is checked at once: a signature
    /// made with the private key must verify with the public one.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for keys that do not parse, or do not belong
    /// together.
    pub fn ed25519_pem(kid: &str, private_pem: &[u8], public_pem: &[u8]) -> Result<Self> {
        install_crypto_provider();
        let encoding = EncodingKey::from_ed_der(&ed25519_private_der(private_pem)?);
        let decoding = DecodingKey::from_ed_der(&ed25519_public_key(public_pem)?);
        let probe = b"backup-policy key check";
        let signature = jsonwebtoken::crypto::sign(probe, &encoding, Algorithm::EdDSA)
            .map_err(|e| Error::invalid("Ed25519 private key", e.to_string()))?;
        match jsonwebtoken::crypto::verify(&signature, probe, &decoding, Algorithm::EdDSA) {
            Ok(true) => {}
            _ => return Err(Error::invalid("Ed25519 key pair", "the public key does not match the private key")),
        }
        Ok(TokenKey { kid: kid.to_owned(), algorithm: Algorithm::EdDSA, encoding: Some(encoding), decoding })
    }

    /// An Ed25519 public key only: checks tokens another instance signed.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for a key that does not parse.
    pub fn ed25519_public_pem(kid: &str, public_pem: &[u8]) -> Result<Self> {
        let decoding = DecodingKey::from_ed_der(&ed25519_public_key(public_pem)?);
        Ok(TokenKey { kid: kid.to_owned(), algorithm: Algorithm::EdDSA, encoding: None, decoding })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The PKCS#8 document of an Ed25519 private key in PEM (`PRIVATE KEY`), which
/// jsonwebtoken's signer reads itself.
fn ed25519_private_der(pem_text: &[u8]) -> Result<Vec<u8>> {
    let what = "Ed25519 private key";
    let pem = pem::parse(pem_text).map_err(|e| Error::invalid(what, e.to_string()))?;
    if pem.tag() != "PRIVATE KEY" {
        return Err(Error::invalid(what, format!("a PEM `PRIVATE KEY` (PKCS#8), not `{}`", pem.tag())));
    }
    Ok(pem.into_contents())
}

/// The DER of an Ed25519 `SubjectPublicKeyInfo` is always these 12 bytes (SEQUENCE,
/// AlgorithmIdentifier with OID 1.3.101.112 and no parameters, BIT STRING of 33 bytes with
/// no unused bits) and then the 32-byte key (RFC 8410 §4).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The 32 bytes of an Ed25519 public key in PEM (`PUBLIC KEY`), as jsonwebtoken's verifier
/// takes it.
fn ed25519_public_key(pem_text: &[u8]) -> Result<Vec<u8>> {
    let what = "Ed25519 public key";
    let pem = pem::parse(pem_text).map_err(|e| Error::invalid(what, e.to_string()))?;
    if pem.tag() != "PUBLIC KEY" {
        return Err(Error::invalid(what, format!("a PEM `PUBLIC KEY`, not `{}`", pem.tag())));
    }
    match pem.contents().strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => Ok(key.to_vec()),
        _ => Err(Error::invalid(what, "not an Ed25519 SubjectPublicKeyInfo (RFC 8410)")),
    }
}

/// The claims of a token. The names of backup-repository's claims are kept (`login`,
/// `accessKeyName`, `operationsScope`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    login: String,
    #[serde(rename = "accessKeyName", default)]
    access_key_name: String,
    #[serde(rename = "operationsScope", default, skip_serializing_if = "Option::is_none")]
    operations_scope: Option<OperationsScope>,
    jti: String,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    single_use: bool,
    /// A browser session's token, carried in a cookie (see [`TokenRequest::browser_session`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    browser: bool,
}

/// What to put in a new token.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TokenRequest {
    /// Limit the token to these objects and roles (it can only narrow the user's rights).
    pub scope: Option<OperationsScope>,
    /// Valid for exactly one successful upload.
    pub single_use: bool,
    /// A browser session's token (see [`TokenRequest::browser_session`]).
    pub browser_session: bool,
    /// A lifetime other than the service's (at most that).
    pub lifetime: Option<Duration>,
    /// Where the login came from.
    pub requester_addr: Option<String>,
    /// Why it is issued ("Login" when empty).
    pub description: String,
    /// For a refresh: when the chain of refreshes began (the login). A chain ends
    /// [`TokenService::max_chain`] after its login, however often it is refreshed.
    pub chain_started_at: Option<backup_core::Timestamp>,
}

impl TokenRequest {
    /// A plain login token.
    pub fn login() -> Self {
        TokenRequest { description: "Login".into(), ..Self::default() }
    }

    /// Limits it to a scope.
    pub fn with_scope(mut self, scope: OperationsScope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Makes it single-use.
    pub fn single_use(mut self) -> Self {
        self.single_use = true;
        self
    }

    /// Marks it as a browser session's: a token a web page keeps in a cookie. It is registered
    /// and revoked like any other, and [`VerifiedToken::is_browser_session`] tells it apart,
    /// so an API that reads bearer tokens can refuse it and a page can refuse anything else
    /// (a cookie is sent by the browser on its own, a bearer token only by a client that
    /// chose to: each is accepted only where its protections apply).
    pub fn browser_session(mut self) -> Self {
        self.browser_session = true;
        self
    }

    /// Records the requester's address.
    pub fn from_addr(mut self, addr: impl Into<String>) -> Self {
        self.requester_addr = Some(addr.into());
        self
    }

    /// Shortens its lifetime.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// A refresh of `token`: same chain (and so the same end of chain).
    pub fn refreshing(mut self, token: &VerifiedToken) -> Self {
        self.chain_started_at = Some(token.chain_started_at);
        self
    }
}

/// A token just issued, and its session.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token to give the client.
    pub token: String,
    /// Its registration.
    pub session: Session,
}

/// A token that passed every check: signature, algorithm, key, expiry, registration. Put it
/// into [`backup_core::Actor::extensions`] for the [`crate::PolicyAuthorizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    user: String,
    access_key: Option<String>,
    scope: OperationsScope,
    session: SessionId,
    single_use: bool,
    browser_session: bool,
    expires_at: DateTime<Utc>,
    credential: Option<String>,
    chain_started_at: backup_core::Timestamp,
}

impl VerifiedToken {
    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The access key the token was issued for.
    pub fn access_key(&self) -> Option<&str> {
        self.access_key.as_deref()
    }

    /// The scope (empty: not limited).
    pub fn scope(&self) -> &OperationsScope {
        &self.scope
    }

    /// The session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Whether it is valid for one upload only.
    pub fn is_single_use(&self) -> bool {
        self.single_use
    }

    /// Whether it is a browser session's token ([`TokenRequest::browser_session`]).
    pub fn is_browser_session(&self) -> bool {
        self.browser_session
    }

    /// When it expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The fingerprint of the credential its login proved (see [`User::credential`]).
    pub fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// When the login that began its chain of refreshes happened.
    pub fn chain_started_at(&self) -> backup_core::Timestamp {
        self.chain_started_at
    }

    /// Whether it carries less than its user's rights: an access key's, a scope, or a
    /// one-time upload token.
    pub fn is_narrowed(&self) -> bool {
        self.access_key.is_some() || self.scope.is_limiting() || self.single_use
    }

    /// `user` (this token's) as far as the token may act on sessions: a narrowed token (an
    /// access key's, a scoped or a one-time one) sees and revokes only its own session, and
    /// carries none of the user's global roles. Pass this as the requester of
    /// [`TokenService::sessions`], [`TokenService::revoke`] and [`TokenService::revoke_all`]
    /// for a request made with the token.
    pub fn requester(&self, user: &User) -> Requester {
        if self.is_narrowed() {
            Requester { user: User { roles: Vec::new(), ..user.clone() }, only_session: Some(self.session.clone()) }
        } else {
            Requester::from(user)
        }
    }

    /// An engine actor for this token, with the token attached for the authorizer.
    pub fn actor(&self, client_addr: Option<std::net::IpAddr>) -> backup_core::Actor {
        let mut actor =
            backup_core::Actor::user(self.user.clone()).with_session(self.session.clone()).with_extension(self.clone());
        actor.access_key = self.access_key.clone();
        actor.client_addr = client_addr;
        actor
    }
}

/// Who acts on sessions: a user with its roles, limited to one session for a narrowed token
/// (see [`VerifiedToken::requester`]).
#[derive(Debug, Clone)]
pub struct Requester {
    user: User,
    only_session: Option<SessionId>,
}

impl From<&User> for Requester {
    /// A user acting with all its rights (an administrator's tool, a full login).
    fn from(user: &User) -> Self {
        Requester { user: user.clone(), only_session: None }
    }
}

impl From<&Requester> for Requester {
    fn from(r: &Requester) -> Self {
        r.clone()
    }
}

impl Requester {
    /// The user as far as it acts on sessions (a narrowed token's has no global roles).
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The one session a narrowed token may see and revoke.
    pub fn only_session(&self) -> Option<&SessionId> {
        self.only_session.as_ref()
    }
}

/// How long a chain of refreshed tokens lives after its login unless configured: 24 hours.
pub const DEFAULT_MAX_CHAIN: Duration = Duration::from_secs(24 * 3600);

/// Issues and verifies tokens; every token is registered as a session in the catalog.
#[derive(Debug, Clone)]
pub struct TokenService {
    signing: TokenKey,
    retired: Vec<TokenKey>,
    lifetime: Duration,
    max_chain: Duration,
    catalog: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
}

impl TokenService {
    /// Signs with `key`; tokens live [`DEFAULT_LIFETIME`].
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] when `key` cannot sign (a public key only).
    pub fn new(key: TokenKey, catalog: Arc<dyn Catalog>, clock: Arc<dyn Clock>) -> Result<Self> {
        install_crypto_provider();
        if key.encoding.is_none() {
            return Err(Error::invalid("signing key", format!("key {} has no private part", key.kid)));
        }
        Ok(TokenService {
            signing: key,
            retired: Vec::new(),
            lifetime: DEFAULT_LIFETIME,
            max_chain: DEFAULT_MAX_CHAIN,
            catalog,
            clock,
        })
    }

    /// Sets how long tokens live.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for zero or more than a year.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Result<Self> {
        if lifetime.is_zero() || lifetime > Duration::from_secs(366 * 24 * 3600) {
            return Err(Error::invalid("token lifetime", "must be between 1 s and a year"));
        }
        self.lifetime = lifetime;
        Ok(self)
    }

    /// Sets how long a chain of refreshes may go on after its login.
    ///
    /// # Errors
    /// [`backup_core::Error::InvalidInput`] for zero or more than a year.
    pub fn with_max_chain(mut self, max_chain: Duration) -> Result<Self> {
        if max_chain.is_zero() || max_chain > Duration::from_secs(366 * 24 * 3600) {
            return Err(Error::invalid("refresh chain", "must be between 1 s and a year"));
        }
        self.max_chain = max_chain;
        Ok(self)
    }

    /// How long a chain of refreshes may go on after its login.
    pub fn max_chain(&self) -> Duration {
        self.max_chain
    }

    /// Also accepts tokens signed with an older key (key rotation).
    pub fn accepting(mut self, retired: TokenKey) -> Self {
        self.retired.push(retired);
        self
    }

    /// The default lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Issues a token for an authenticated user and registers its session, bound to the
    /// credential the login proved (a changed password or key ends it) and to its chain of
    /// refreshes (which ends [`TokenService::max_chain`] after the login).
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] for an access key the user does not have, or a
    /// refresh past the end of its chain; [`Error::Core`] if the session cannot be registered
    /// (a token that could not be registered is never handed out).
    pub async fn issue(&self, user: &User, access_key: Option<&str>, request: TokenRequest) -> Result<IssuedToken> {
        let now = backup_core::Timestamp::from(self.clock.now());
        let credential = user.credential(access_key).ok_or_else(|| {
            Error::unauthenticated(format!("user {} has no access key {}", user.name, access_key.unwrap_or_default()))
        })?;
        let chain_started_at = request.chain_started_at.unwrap_or(now);
        let chain_ends = chain_started_at
            + chrono::Duration::from_std(self.max_chain).map_err(|e| Error::invalid("refresh chain", e.to_string()))?;
        if chain_ends <= now {
            return Err(Error::unauthenticated(format!(
                "this token's refreshes began at {chain_started_at}, longer ago than {}s: log in again",
                self.max_chain.as_secs()
            )));
        }
        let lifetime = request.lifetime.map_or(self.lifetime, |l| l.min(self.lifetime));
        let expires_at = (now
            + chrono::Duration::from_std(lifetime).map_err(|e| Error::invalid("token lifetime", e.to_string()))?)
        .min(chain_ends);
        let scope = request.scope.filter(OperationsScope::is_limiting);
        let claims = Claims {
            sub: user.name.clone(),
            login: user.name.clone(),
            access_key_name: access_key.unwrap_or_default().to_owned(),
            operations_scope: scope.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now.to_datetime().timestamp(),
            exp: expires_at.to_datetime().timestamp(),
            single_use: request.single_use,
            browser: request.browser_session,
        };
        let mut header = Header::new(self.signing.algorithm);
        header.kid = Some(self.signing.kid.clone());
        let key = self.signing.encoding.as_ref().ok_or_else(|| Error::internal("signing key without private part"))?;
        let token =
            jsonwebtoken::encode(&header, &claims, key).map_err(|e| Error::internal(format!("signing: {e}")))?;
        let mut session = Session::new(
            SessionId::of_token(&token),
            user.name.clone(),
            now,
            expires_at,
            if request.description.is_empty() { "Login".to_owned() } else { request.description },
        )
        .with_single_use(request.single_use)
        .with_credential(credential)
        .with_chain_started_at(chain_started_at);
        session.access_key = access_key.map(str::to_owned);
        session.requester_addr = request.requester_addr;
        session.scope = scope.as_ref().map(|s| serde_json::to_string(s).unwrap_or_default());
        self.catalog.insert_session(&session).await?;
        Ok(IssuedToken { token, session })
    }

    fn key_for(&self, kid: Option<&str>) -> Option<&TokenKey> {
        match kid {
            // Tokens without a key id were signed with the current key (as backup-repository's).
            None => Some(&self.signing),
            Some(kid) => std::iter::once(&self.signing).chain(&self.retired).find(|k| k.kid == kid),
        }
    }

    /// Verifies a token: its size, algorithm (never `none`, only the key's own), key id,
    /// signature, expiry at the clock's `now`, and that its session is registered, not revoked
    /// and not expired.
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] with the reason for any failed check; [`Error::Core`] when
    /// the catalog cannot be asked.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken> {
        self.verify_token(token).await.map_err(Error::from)
    }

    /// [`TokenService::verify`], telling why a token was refused (an HTTP layer answers a
    /// revoked token differently from a malformed one).
    ///
    /// # Errors
    /// The [`TokenRejection`].
    pub async fn verify_token(&self, token: &str) -> std::result::Result<VerifiedToken, TokenRejection> {
        let now = self.clock.now();
        let claims = self.check_signature(token, now)?;
        let session = match self.catalog.get_session(&SessionId::of_token(token)).await {
            Ok(s) => s,
            Err(e) if e.kind() == backup_core::ErrorKind::NotFound => {
                return Err(TokenRejection::new(
                    Rejection::Unregistered,
                    "the token is not registered (never issued here, or its records were lost)",
                ));
            }
            Err(e) => return Err(TokenRejection::new(Rejection::Unavailable, e.to_string())),
        };
        if session.revoked_at.is_some() {
            return Err(TokenRejection::new(Rejection::Revoked, "the token was revoked"));
        }
        if !session.is_active(now) {
            return Err(TokenRejection::new(Rejection::Expired, "the token expired"));
        }
        let access_key = (!claims.access_key_name.is_empty()).then_some(claims.access_key_name);
        if session.user != claims.sub || session.access_key != access_key {
            return Err(TokenRejection::new(Rejection::Unregistered, "the token does not match its registration"));
        }
        Ok(VerifiedToken {
            user: claims.sub,
            access_key,
            scope: claims.operations_scope.unwrap_or_default(),
            session: session.id,
            single_use: claims.single_use,
            browser_session: claims.browser,
            expires_at: session.expires_at.to_datetime(),
            chain_started_at: session.chain_started_at.unwrap_or(session.issued_at),
            credential: session.credential,
        })
    }

    /// The checks that need no catalog: size, header, key, algorithm, signature, expiry.
    fn check_signature(&self, token: &str, now: DateTime<Utc>) -> std::result::Result<Claims, TokenRejection> {
        use Rejection::*;
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenRejection::new(Malformed, "the token is too long"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenRejection::new(Malformed, format!("malformed token: {e}")))?;
        let key = self
            .key_for(header.kid.as_deref())
            .ok_or_else(|| TokenRejection::new(BadSignature, "the token was signed with an unknown key"))?;
        if header.alg != key.algorithm {
            return Err(TokenRejection::new(BadAlgorithm, format!("algorithm {:?} is not accepted", header.alg)));
        }
        let mut validation = Validation::new(key.algorithm);
        // Expiry is checked against the service's clock below, not the system's.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| {
            let kind = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => BadSignature,
                _ => Malformed,
            };
            TokenRejection::new(kind, format!("invalid token: {e}"))
        })?;
        if data.claims.exp <= now.timestamp() {
            return Err(TokenRejection::new(Expired, "the token expired"));
        }
        Ok(data.claims)
    }

    /// The sessions of `user` (the requester's own when `None`), newest first: a user sees
    /// their own, a `systemAdmin` anyone's, a narrowed token only its own session.
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`] for someone else's sessions without `systemAdmin`.
    pub async fn sessions(
        &self,
        requester: impl Into<Requester>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Session>> {
        let requester = requester.into();
        let me = &requester.user;
        let of = user.unwrap_or(&me.name);
        if of != me.name && !me.roles.contains(&Role::SystemAdmin) {
            return Err(Error::denied("no permissions to act as other user"));
        }
        if let Some(own) = &requester.only_session {
            return Ok(vec![self.catalog.get_session(own).await?]);
        }
        Ok(self.catalog.list_sessions(Some(of), limit).await?)
    }

    /// Revokes one session: the owner's own, or anyone's for a `systemAdmin`; a narrowed token
    /// only its own. For others, an unknown session and someone else's are refused alike
    /// (nothing to enumerate).
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`]; [`Error::Core`] with `NotFound` (for a `systemAdmin`).
    pub async fn revoke(&self, requester: impl Into<Requester>, session: &SessionId) -> Result<Session> {
        let requester = requester.into();
        let me = &requester.user;
        let denied = || Error::denied("you don't have permissions to revoke session of other user");
        if requester.only_session.as_ref().is_some_and(|own| own != session) {
            return Err(denied());
        }
        let admin = me.roles.contains(&Role::SystemAdmin);
        let owner = match self.catalog.get_session(session).await {
            Ok(s) => Some(s.user),
            Err(e) if e.kind() == backup_core::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        match owner {
            Some(u) if u == me.name || admin => {}
            None if admin => return Err(backup_core::Error::SessionNotFound { session: session.to_string() }.into()),
            _ => return Err(denied()),
        }
        let audit =
            AuditEvent::new(self.clock.now(), me.name.clone(), "session.revoke").with_detail(session.to_string());
        Ok(self.catalog.revoke_session(session, &audit).await?)
    }

    /// Revokes every active session of `user`: their own, or anyone's for a `systemAdmin`;
    /// never for a narrowed token.
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`].
    pub async fn revoke_all(&self, requester: impl Into<Requester>, user: &str) -> Result<u64> {
        let requester = requester.into();
        let me = &requester.user;
        if requester.only_session.is_some() || (user != me.name && !me.roles.contains(&Role::SystemAdmin)) {
            return Err(Error::denied("you don't have permissions to revoke sessions of other users"));
        }
        let audit =
            AuditEvent::new(self.clock.now(), me.name.clone(), "session.revoke_all").with_detail(user.to_owned());
        Ok(self.catalog.revoke_user_sessions(user, &audit).await?)
    }
}
