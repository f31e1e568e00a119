//! The server behind the HTTP fuzz targets: the example manifests, an in-memory engine, and
//! tokens for a user who may upload and one who manages the collection, built once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use backup_core::{Clock, Engine, SystemClock};
use backup_policy::{
    Directory, OpenPgpRule, PolicyAuthorizer, RateLimitConfig, RateLimits, TokenKey, TokenRequest, TokenService,
};
use backup_server::{AppState, StateParts, app};
use tower::ServiceExt;

/// The router and tokens the targets use.
pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub router: axum::Router,
    /// `some-user$uploader` (uploads to iwa-ait), `some-user` (manages), `unprivileged`.
    pub tokens: [String; 3],
}

/// The fixture, built at the first call.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server/config");
        let manifests = backup_policy::manifest::load(&root, "backup-repository").unwrap();
        let directory = Arc::new(Directory::new(manifests.policy_set()));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let catalog: Arc<dyn backup_core::catalog::Catalog> = Arc::new(backup_core::MemoryCatalog::new());
        let engine = Engine::builder()
            .catalog(catalog.clone())
            .authorizer(Arc::new(PolicyAuthorizer::new(directory.clone())))
            .content_rule(Arc::new(OpenPgpRule))
            .clock(clock.clone())
            .build()
            .unwrap();
        rt.block_on(manifests.declare_collections(&engine)).unwrap();
        let key = TokenKey::hs256(b"fuzzing secret, long enough", None).unwrap();
        let tokens = TokenService::new(key, catalog, clock).unwrap();
        let user = |name: &str| manifests.users.iter().find(|u| u.name == name).unwrap().clone();
        let issue = |name: &str, key: Option<&str>| {
            rt.block_on(tokens.issue(&user(name), key, TokenRequest::login())).unwrap().token
        };
        let issued = [issue("some-user", Some("uploader")), issue("some-user", None), issue("unprivileged", None)];
        let state = AppState::new(StateParts {
            engine,
            directory,
            tokens,
            rate_limits: RateLimits::new(RateLimitConfig {
                login_per_minute: 0,
                default_per_second: 0,
                collection_health_per_minute: 0,
                health_per_minute: 0,
                ..RateLimitConfig::default()
            }),
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            health_key: "health".into(),
            manifests: backup_server::ManifestSource::Folder { root, namespace: "backup-repository".into() },
            upload_grace: Duration::ZERO,
            upload_timeout: Duration::from_secs(5),
            download_timeout: Duration::from_secs(5),
            storage_health_timeout: Duration::from_secs(1),
            max_uploads_per_user: 4,
            max_downloads_per_user: 4,
            login_timeout: Duration::from_secs(5),
        });
        Fixture { rt, router: app(state), tokens: issued }
    })
}

/// Sends a request through the router and reads the answer (at most 16 MiB); its status.
pub fn send(request: http::Request<Body>) -> u16 {
    let f = fixture();
    f.rt.block_on(async {
        let response = f.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let _ = axum::body::to_bytes(response.into_body(), 16 << 20).await;
        status
    })
}
