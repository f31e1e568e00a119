//! What every handler shares: the engine, the policy, the limits, and their parts.

pub(crate) mod in_flight;
pub(crate) mod metrics;
pub(crate) mod per_user;
pub(crate) mod space;

use std::sync::Arc;
use std::time::Duration;

use backup_core::Engine;
use backup_policy::{Directory, KnownLogins, RateLimits, TokenService};
use ipnet::IpNet;

use metrics::Metrics;
use per_user::PerUser;

/// Retention simulations running at once on the server. Each holds its request (up to 16
/// MiB), the plan and the answer being sent until the client has read it: a few at a time
/// bound the memory.
pub(crate) const MAX_SIMULATIONS: usize = 2;

/// Retention simulations running at once per user.
pub(crate) const MAX_SIMULATIONS_PER_USER: u32 = 1;

/// How long a successful login from an address exempts the user's later logins from there
/// from the per-user limit.
const KNOWN_LOGIN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How many (user, address) pairs are remembered at most.
const KNOWN_LOGINS: usize = 100_000;

/// The server's state, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) directory: Arc<Directory>,
    pub(crate) tokens: TokenService,
    pub(crate) rate_limits: RateLimits,
    /// Who logged in from where lately: those logins skip the per-user limit.
    pub(crate) known_logins: KnownLogins,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) health_key: String,
    pub(crate) manifests: crate::ManifestSource,
    pub(crate) upload_grace: Duration,
    pub(crate) upload_timeout: Duration,
    pub(crate) download_timeout: Duration,
    pub(crate) storage_health_timeout: Duration,
    pub(crate) metrics: Metrics,
    pub(crate) uploads_per_user: PerUser,
    pub(crate) downloads_per_user: PerUser,
    pub(crate) login_timeout: Duration,
    /// One verification (`POST …/verify`) at a time: each reads a whole collection back.
    pub(crate) verifying: Arc<tokio::sync::Semaphore>,
    /// Retention simulations running (until their answers are read), on the server and per
    /// user: each holds its request, plan and answer in memory.
    pub(crate) simulations: Arc<tokio::sync::Semaphore>,
    pub(crate) simulations_per_user: PerUser,
    /// Disk space given back when the disk fills (see `space`).
    pub(crate) space: crate::state::space::SpaceReserve,
    /// The idempotency keys of the uploads running here.
    pub(crate) idempotent_uploads: crate::state::in_flight::InFlight,
    /// How often verifications log their progress (`--progress-interval`).
    pub(crate) progress_interval: Duration,
}

/// What [`AppState::new`] needs.
#[derive(Debug)]
pub struct StateParts {
    /// The engine (its authorizer should be a [`backup_policy::PolicyAuthorizer`] on
    /// `directory`).
    pub engine: Engine,
    /// The users and collection policies.
    pub directory: Arc<Directory>,
    /// Issues and verifies tokens.
    pub tokens: TokenService,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The code of `/ready` and `/metrics` (empty: open).
    pub health_key: String,
    /// Where the manifests come from: read again at reloads and by `/ready`.
    pub manifests: crate::ManifestSource,
    /// How long to wait for a client to cancel after the end of an upload's body.
    pub upload_grace: Duration,
    /// Upload request timeout.
    pub upload_timeout: Duration,
    /// Download request timeout.
    pub download_timeout: Duration,
    /// Storage probe timeout of `/ready`.
    pub storage_health_timeout: Duration,
    /// Uploads in progress per user at once.
    pub max_uploads_per_user: u32,
    /// Downloads in progress per user at once.
    pub max_downloads_per_user: u32,
    /// How long a login may take, its body included.
    pub login_timeout: Duration,
}

impl AppState {
    /// The state of a server.
    pub fn new(parts: StateParts) -> Self {
        AppState::with_space(parts, crate::state::space::SpaceReserve::none(), crate::config::DEFAULT_PROGRESS_INTERVAL)
    }

    /// The state of a server whose local disk has a space reserve, logging the progress of
    /// verifications every `progress_interval`.
    pub(crate) fn with_space(
        parts: StateParts,
        space: crate::state::space::SpaceReserve,
        progress_interval: Duration,
    ) -> Self {
        let engine = parts.engine;
        AppState {
            inner: Arc::new(Shared {
                engine,
                directory: parts.directory,
                tokens: parts.tokens,
                rate_limits: parts.rate_limits,
                known_logins: KnownLogins::new(KNOWN_LOGIN_TTL, KNOWN_LOGINS),
                trusted_proxies: parts.trusted_proxies,
                health_key: parts.health_key,
                manifests: parts.manifests,
                upload_grace: parts.upload_grace,
                upload_timeout: parts.upload_timeout,
                download_timeout: parts.download_timeout,
                storage_health_timeout: parts.storage_health_timeout,
                metrics: Metrics::default(),
                verifying: Arc::new(tokio::sync::Semaphore::new(1)),
                simulations: Arc::new(tokio::sync::Semaphore::new(MAX_SIMULATIONS)),
                simulations_per_user: PerUser::new(MAX_SIMULATIONS_PER_USER, "retention simulations"),
                uploads_per_user: PerUser::new(parts.max_uploads_per_user, "uploads"),
                downloads_per_user: PerUser::new(parts.max_downloads_per_user, "downloads"),
                login_timeout: parts.login_timeout,
                space,
                idempotent_uploads: crate::state::in_flight::InFlight::default(),
                progress_interval,
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The rate limits (for periodic clean-up).
    pub fn rate_limits(&self) -> &RateLimits {
        &self.inner.rate_limits
    }
}
