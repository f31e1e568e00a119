//! # backup-server
//!
//! A drop-in replacement for riotkit-org's backup-repository server, built on the backup
//! engine: the same flags and environment variables, the same manifests, the same HTTP API
//! (backup-maker and curl scripts work unchanged), without its known failures: downloads
//! stream, unknown versions are 404s, every refusal is a JSON reason, revoked keys and deleted
//! users fail closed, uploads are crash-safe.
//!
//! ```text
//! cargo run --release -p backup-server -- --config-local-path examples/server/config --listen 127.0.0.1:8080
//! ```
//!
//! With no other flag it keeps everything under `./data/server`: blobs on local disk (fsync
//! on) and metadata in SQLite. `--storage-url s3://…` and `--catalog-url postgres://…` (or
//! backup-repository's `--db-*` flags) move them; several instances can share one PostgreSQL
//! database and one bucket.
//!
//! Under `/ui/` it serves a dashboard: server-rendered pages, no script, over the same engine
//! calls and permission decisions as the API (the README's "Dashboard" has what it shows and
//! how its sessions are kept safe).
//!
//! [`run`] is the whole server; [`build`] and [`app`] give the state and the router, for a
//! program that serves the routes itself. The crate's `README.md` has the flags, the routes
//! and what differs from backup-repository.

#![deny(missing_docs)]

mod api;
mod app;
mod config;
mod embed;
mod format;
mod http;
mod ops;
mod state;
#[cfg(test)]
mod testing;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use backup_core::{Clock, Engine};
use backup_policy::{
    Directory, OpenPgpRule, PolicyAuthorizer, RateLimitConfig, RateLimits, TokenKey, TokenService, manifest,
};
use backup_store::{StoreOptions, open_catalog, open_store};

pub use app::app;
pub use config::manifests::ManifestSource;
pub use config::{Args, Schedule};
pub use embed::{RunningServer, ServerConfig, router, spawn};
pub use ops::audit::verify_audit;
pub use ops::import::import_backup_repository;
pub use ops::notify::{Retry, Target, deliver};
pub use ops::recovery::rebuild_catalog;
pub use state::{AppState, StateParts};

/// Builds everything from the command line: catalog, store, manifests (validated; errors stop
/// the start), engine, tokens. Collections of the manifests are created or updated in the
/// catalog, and `recover()` runs once.
///
/// # Errors
/// A line naming what is wrong (the file, field and reason for manifests).
pub async fn build(args: &Args) -> Result<AppState, String> {
    build_from(&ServerConfig::from_args(args.clone())?).await
}

/// [`build`] from a [`ServerConfig`].
pub(crate) async fn build_from(config: &ServerConfig) -> Result<AppState, String> {
    let args = config.args();
    // A start refused before the repository is checked (a wrong or empty catalog in front of
    // a repository's storage, a storage folder that holds none) leaves the folders as it found
    // them: the catalog file and the folders it created go again. Past the check, a new
    // repository's catalog and marker exist together, and stay.
    let created = config::local::Created::before_opening(args);
    let opened = match open_checked(config).await {
        Ok(opened) => opened,
        Err(e) => {
            created.undo();
            return Err(e);
        }
    };
    serve_state(args, opened).await
}

/// What [`open_checked`] opened: the catalog and storage of one repository.
struct Opened {
    prepared: Prepared,
    engine: Engine,
    repository: backup_core::RepositoryId,
}

/// Opens the catalog and the storage and checks that they belong to one repository, before
/// anything is written to either.
async fn open_checked(config: &ServerConfig) -> Result<Opened, String> {
    let args = config.args();
    let prepared = prepare(config).await?;
    let p = &prepared;
    let replicas = ops::replicate::replicas(args, &p.manifests)?;
    let engine =
        engine(args, &p.storage_url, p.catalog.clone(), p.clock.clone(), p.directory.clone(), args.adopt_storage)?;
    engine.set_replicas(replicas).map_err(|e| format!("replicas: {e}"))?;
    if let Some(name) = &args.promote_replica {
        tracing::warn!(replica = %name, storage = %storage_url_shown(&p.storage_url), "--promote-replica: the replica is the primary store now");
    }
    let repository = engine.open_repository().await.map_err(|e| format!("repository: {e}"))?;
    Ok(Opened { prepared, engine, repository })
}

/// A store that claims to enforce locks (an S3 URL with `object_lock=true`) must really do so
/// before a compliance collection is served on it: a bucket without Object Lock would let the
/// bucket's credentials delete what the collection promises to keep.
async fn check_object_locks(engine: &Engine, manifests: &backup_policy::manifest::Manifests) -> Result<(), String> {
    let Some(locks) = engine.object_locks() else { return Ok(()) };
    let compliance =
        manifests.collections.iter().find(|c| c.spec.lock.is_some_and(|l| l.mode == backup_core::LockMode::Compliance));
    if let Some(c) = compliance {
        locks.check().await.map_err(|e| {
            format!("collection {} has a compliance lock, and the storage cannot enforce it: {e}", c.id)
        })?;
    }
    tracing::info!(enforcement = %locks.describe(), "the storage enforces retention locks");
    Ok(())
}

/// The state of a server on an opened repository: manifests declared, tokens, recovery run.
async fn serve_state(args: &Args, opened: Opened) -> Result<AppState, String> {
    let Opened { prepared, engine, repository } = opened;
    let Prepared { source, manifests, storage_url, catalog, clock, directory } = prepared;
    tracing::info!(%repository, catalog = %catalog.location(), storage = %storage_url_shown(&storage_url), "serving repository");
    if args.adopt_storage {
        tracing::warn!(%repository, catalog = %catalog.location(), "--adopt-storage: the catalog and the storage are paired as this repository");
    }
    check_object_locks(&engine, &manifests).await?;
    ops::sync::collections(&engine, &manifests).await.map_err(|e| format!("configuration: {e}"))?;
    let key = match &args.jwt_secret_key {
        Some(secret) => TokenKey::hs256(secret.as_bytes(), None).map_err(|e| format!("--jwt-secret-key: {e}"))?,
        None => {
            tracing::warn!("no --jwt-secret-key: using a random one; tokens will not survive a restart");
            let random: Vec<u8> = (0..2).flat_map(|_| uuid::Uuid::new_v4().into_bytes()).collect();
            TokenKey::hs256(&random, None).map_err(|e| e.to_string())?
        }
    };
    let tokens = TokenService::new(key, catalog, clock)
        .and_then(|t| t.with_lifetime(args.token_lifetime))
        .and_then(|t| t.with_max_chain(args.token_max_refresh))
        .map_err(|e| format!("tokens: {e}"))?;
    let rate_limits = RateLimits::new(RateLimitConfig {
        login_per_minute: args.rate_auth_limit,
        default_per_second: args.rate_default_limit,
        collection_health_per_minute: args.rate_collection_health_limit,
        health_per_minute: args.rate_server_health_limit,
        ..RateLimitConfig::default()
    });
    let report = engine.recover().await.map_err(|e| format!("recover: {e}"))?;
    ops::sync::log_recovery(&report, "start-up recovery");
    if let Some(root) = storage_url.strip_prefix("file://") {
        let removed =
            backup_store::local_disk::remove_stale_staging_files(std::path::Path::new(root), Duration::from_secs(900))
                .map_err(|e| format!("storage: {e}"))?;
        tracing::info!(removed, "stale staging files removed");
    }
    let space = match space_reserve_folder(args, &storage_url) {
        Some(folder) => crate::state::space::SpaceReserve::keep_in(&folder, args.disk_reserve),
        None => crate::state::space::SpaceReserve::none(),
    };
    Ok(AppState::with_space(
        StateParts {
            engine,
            directory,
            tokens,
            rate_limits,
            trusted_proxies: args.trusted_proxies.clone(),
            health_key: args.health_check_key.clone(),
            manifests: source,
            upload_grace: args.upload_confirm_grace,
            upload_timeout: args.http_upload_timeout.min(args.storage_io_timeout),
            download_timeout: args.http_download_timeout,
            storage_health_timeout: args.storage_health_timeout,
            max_uploads_per_user: args.max_uploads_per_user,
            max_downloads_per_user: args.max_downloads_per_user,
            login_timeout: args.login_timeout,
        },
        space,
        args.progress_interval,
    ))
}

/// Where the disk reserve goes: beside the SQLite catalog, else in the local storage's folder;
/// none when both live elsewhere (PostgreSQL, an object store).
fn space_reserve_folder(args: &Args, storage_url: &str) -> Option<std::path::PathBuf> {
    let catalog = args.catalog();
    if let Some(path) = catalog.strip_prefix("sqlite://") {
        let path = std::path::Path::new(path.split('?').next().unwrap_or(path));
        return path.parent().map(std::path::Path::to_path_buf);
    }
    storage_url.strip_prefix("file://").map(std::path::PathBuf::from)
}

/// What every mode reads first: the manifests, the storage URL, the catalog.
struct Prepared {
    source: ManifestSource,
    manifests: manifest::Manifests,
    storage_url: String,
    catalog: Arc<dyn backup_core::catalog::Catalog>,
    clock: Arc<dyn Clock>,
    directory: Arc<Directory>,
}

async fn prepare(config: &ServerConfig) -> Result<Prepared, String> {
    config.check_values()?;
    let args = config.args();
    if args.provider != "filesystem" {
        return Err(format!("--provider {:?}: only \"filesystem\" is supported by this server", args.provider));
    }
    let source = config.manifest_source();
    let manifests = source.load().map_err(|e| format!("configuration: {e}"))?;
    let storage_url = args.storage()?;
    let catalog = open_catalog(&args.catalog()).await.map_err(|e| format!("catalog: {e}"))?;
    let directory = Arc::new(Directory::new(manifests.policy_set()));
    Ok(Prepared { source, manifests, storage_url, catalog, clock: config.engine_clock(), directory })
}

/// The engine on the storage and catalog the flags name.
fn engine(
    args: &Args,
    storage_url: &str,
    catalog: Arc<dyn backup_core::catalog::Catalog>,
    clock: Arc<dyn Clock>,
    directory: Arc<Directory>,
    adopt: bool,
) -> Result<Engine, String> {
    let part_size = args.upload_part_size.unwrap_or(default_part_size(storage_url));
    if storage_url.starts_with("s3://") && part_size < 5 << 20 {
        return Err(format!("--upload-part-size {part_size}: S3 refuses parts under 5 MiB"));
    }
    let opened = open_store(storage_url, &StoreOptions::default()).map_err(|e| format!("storage: {e}"))?;
    // What a killed process left of its uploads (local staging files, open multipart uploads
    // of an object store, by recorded id and by S3's listing) goes when the restarted
    // instance or the next maintenance run releases them.
    opened
        .configure(Engine::builder())
        .catalog(catalog)
        .clock(clock)
        .authorizer(Arc::new(PolicyAuthorizer::new(directory)))
        .content_rule(Arc::new(OpenPgpRule))
        .trash_retention(args.trash_retention)
        .part_size(part_size)
        // backup-repository keeps `<collection>/<file>` at the bucket root, and collection
        // names start with a letter or digit: under this prefix the engine's orphan sweep can
        // never touch the original's objects in a shared bucket.
        .key_prefix(KEY_PREFIX)
        .instance(args.instance_name()?)
        .adopt_store(adopt)
        .max_uploads_per_collection(args.max_uploads_per_collection)
        .audit_retention(args.audit_retention())
        .build()
        .map_err(|e| format!("engine: {e}"))
}

/// A storage URL for the log, secrets hidden.
pub(crate) fn storage_url_shown(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

/// Where the server's objects live in the bucket.
const KEY_PREFIX: &str = "_backup-server";

/// Parts only pipeline writes on local disk and in memory, so small ones keep the memory of
/// an upload low there; object stores want large ones (S3: at least 5 MiB).
fn default_part_size(storage_url: &str) -> usize {
    if storage_url.starts_with("file://") || storage_url.starts_with("memory://") { 2 << 20 } else { 8 << 20 }
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully: no new connections,
/// requests in flight get `--shutdown-timeout` to finish (uploads commit, or abort when cut),
/// clean-ups of cancelled uploads run.
///
/// # Errors
/// A line naming what is wrong, at start-up.
pub async fn run(args: Args) -> Result<(), String> {
    let config = ServerConfig::from_args(args)?;
    let shutdown = shutdown_signal();
    let server = spawn(config).await?;
    tracing::info!(local = %server.addr, "listening");
    // Tests read this line to learn the port.
    println!("listening on {}", server.addr);
    shutdown.await;
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Binds the first address that works.
pub(crate) async fn bind(addrs: &[std::net::SocketAddr]) -> Result<tokio::net::TcpListener, String> {
    let mut failures = Vec::new();
    for addr in addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("--listen: {}", failures.join("; ")))
}

/// Resolves at SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: a signal sent right after the "listening" line must not kill
/// the process with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait(term) => {},
            () = wait(interrupt) => {},
        }
        tracing::info!("shutting down");
    }
}
