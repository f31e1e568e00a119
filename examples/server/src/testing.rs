//! Unit tests' helpers: a server state on a store of the test's, requests through the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use backup_core::{Catalog, Clock, Engine, MemoryCatalog, SystemClock};
use backup_policy::{Directory, PolicyAuthorizer, RateLimitConfig, RateLimits, TokenKey, TokenService};
use object_store::ObjectStore;
use tower::ServiceExt;

use crate::{AppState, ManifestSource, StateParts};

/// The code that opens `/ready` on a state of [`state_on`].
pub(crate) const HEALTH_CODE: &str = "a health code";

/// A server's state on `store` and an in-memory catalog, without users or collections; the
/// storage probe of `/ready` times out after `storage_health_timeout`.
pub(crate) async fn state_on(store: Arc<dyn ObjectStore>, storage_health_timeout: Duration) -> AppState {
    let manifests = ManifestSource::Documents(Vec::new());
    let directory = Arc::new(Directory::new(manifests.load().unwrap().policy_set()));
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::builder()
        .catalog(catalog.clone())
        .store(store)
        .clock(clock.clone())
        .authorizer(Arc::new(PolicyAuthorizer::new(directory.clone())))
        .build()
        .unwrap();
    engine.open_repository().await.unwrap();
    let key = TokenKey::hs256(b"a key for unit tests, long enough", None).unwrap();
    AppState::new(StateParts {
        engine,
        directory,
        tokens: TokenService::new(key, catalog, clock).unwrap(),
        rate_limits: RateLimits::new(RateLimitConfig::default()),
        trusted_proxies: Vec::new(),
        health_key: HEALTH_CODE.to_owned(),
        manifests,
        upload_grace: Duration::ZERO,
        upload_timeout: Duration::from_secs(60),
        download_timeout: Duration::from_secs(60),
        storage_health_timeout,
        max_uploads_per_user: 4,
        max_downloads_per_user: 4,
        login_timeout: Duration::from_secs(15),
    })
}

/// `request` through the router, from a client on loopback.
pub(crate) async fn send(state: &AppState, mut request: Request<Body>) -> Response<Body> {
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    crate::app(state.clone()).oneshot(request).await.unwrap()
}

/// A response's body as text.
pub(crate) async fn text(response: Response<Body>) -> String {
    String::from_utf8_lossy(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).into_owned()
}
