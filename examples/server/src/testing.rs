//! Unit tests' helpers: a server state on a store of the test's, requests through the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use backup_core::catalog::Catalog;
use backup_core::{Clock, Engine, MemoryCatalog, SystemClock};
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

/// Collects the progress lines (`backup_server::progress`) logged on this thread while the
/// guard lives.
pub(crate) fn progress_lines() -> (Arc<std::sync::Mutex<Vec<String>>>, tracing::subscriber::DefaultGuard) {
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let guard = tracing::subscriber::set_default(Collect(lines.clone()));
    (lines, guard)
}

/// Records the messages of `backup_server::progress` events.
pub(crate) struct Collect(Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for Collect {
    /// Asked at each event, never cached: callsites are shared by every test of the binary, and
    /// an interest cached while another test's thread registered the callsite (with no
    /// collector of its own) would hide this thread's events.
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "backup_server::progress"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
