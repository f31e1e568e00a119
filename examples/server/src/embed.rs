//! The server in another program: a configuration built from code ([`ServerConfig`]), started
//! in-process on a free port ([`spawn`]), stopped on demand ([`RunningServer::shutdown`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{Clock, CollectionId, CollectionSpec, Limits, LockPolicy, RetentionSpec};
use backup_policy::manifest::{CollectionDefinition, Definitions, Document, DocumentKind, code_file, spec_error};
use backup_policy::{AccessKey, Role, StoredPassword, User, parse_size};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::manifests::ManifestSource;
use crate::config::{Args, Schedule};
use crate::state::AppState;

/// Everything a server needs: the settings of its command line and its users and
/// collections: manifests from files, or from code as values and as text (validated by the
/// same rules).
///
/// ```
/// use backup_server::ServerConfig;
///
/// let config = ServerConfig::for_tests()
///     .user("admin", "a password", &["systemAdmin"])
///     .access_key("admin", "ci", "another password", &[("db", &["backupUploader"])])
///     .collection("db", 3, "1M", "5M", &[("admin", &["collectionManager"])]);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    args: Args,
    listen: Vec<SocketAddr>,
    /// Users and collections given by code: values, and manifests as text.
    definitions: Definitions,
    folder: bool,
    /// Values given to [`ServerConfig::user`], [`ServerConfig::access_key`] or
    /// [`ServerConfig::collection`] that cannot be what they should: [`spawn`] refuses to
    /// start with them.
    refused: Vec<String>,
    /// The engine's clock, when a test drives time ([`ServerConfig::clock`]).
    clock: Option<Arc<dyn Clock>>,
}

impl ServerConfig {
    /// The production defaults of every flag (as `backup-server` with no flag and no
    /// environment), listening on `127.0.0.1:0`, with no user and no collection: add them
    /// with [`ServerConfig::user`], [`ServerConfig::collection`] and
    /// [`ServerConfig::manifest`]. Data goes to `--data-dir` (`./data/server`). Servers that
    /// share a catalog need their own `instance_name` (the default is `HOSTNAME:PORT`, here
    /// `HOSTNAME:0`).
    pub fn new() -> Self {
        let mut args = Args::defaults();
        args.listen = "127.0.0.1:0".to_owned();
        ServerConfig {
            args,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            definitions: Definitions::new(),
            folder: false,
            refused: Vec::new(),
            clock: None,
        }
    }

    /// The command line: manifests from `--config-local-path`, listening where `--listen`
    /// says.
    ///
    /// # Errors
    /// A `--listen` that is not `HOST:PORT` or `:PORT`.
    pub fn from_args(args: Args) -> Result<Self, String> {
        let listen = args.listen_addrs()?;
        Ok(ServerConfig {
            args,
            listen,
            definitions: Definitions::new(),
            folder: true,
            refused: Vec::new(),
            clock: None,
        })
    }

    /// **For tests only**: memory storage and catalog (nothing on disk, nothing kept), no
    /// confirmation grace before a commit (an upload is a version as soon as its body ends),
    /// rate limits lifted, no scheduled scrub or snapshot, a fixed JWT key. Never serve
    /// anything real with it: what it stores dies with the process.
    pub fn for_tests() -> Self {
        let mut config = ServerConfig::new();
        let a = &mut config.args;
        a.storage_url = Some("memory://".to_owned());
        a.catalog_url = Some("memory://".to_owned());
        a.upload_confirm_grace = Duration::ZERO;
        a.rate_default_limit = 1_000_000;
        a.rate_auth_limit = 1_000_000;
        a.rate_collection_health_limit = 1_000_000;
        a.rate_server_health_limit = 1_000_000;
        a.scrub_schedule = Schedule(None);
        a.catalog_snapshot_schedule = Schedule(None);
        a.jwt_secret_key = Some("a key for tests only, never for real data".to_owned());
        a.shutdown_timeout = Duration::from_secs(5);
        a.log_level = "warn".to_owned();
        // Its own catalog: no other instance can share its name.
        a.instance_name = Some(format!("test-{}", uuid::Uuid::new_v4().simple()));
        config
    }

    /// The clock of the engine, the tokens and every schedule (maintenance, scrub, snapshots,
    /// manifest reloads): the system's by default. A test gives a
    /// [`ManualClock`](backup_core::ManualClock) and moves time instead of waiting: expired
    /// tokens, closed backup windows, a trash retention run out, a maintenance run due.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use backup_core::ManualClock;
    ///
    /// let clock = Arc::new(ManualClock::starting_now());
    /// let config = backup_server::ServerConfig::for_tests().clock(clock.clone());
    /// // … spawn(config), then clock.advance(chrono::Duration::hours(1)) runs what was due.
    /// # let _ = config;
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The clock [`ServerConfig::clock`] set, or the system's.
    pub(crate) fn engine_clock(&self) -> Arc<dyn Clock> {
        self.clock.clone().unwrap_or_else(|| Arc::new(backup_core::SystemClock))
    }

    /// Every other setting, by its flag's name (`args_mut().trash_retention = …`).
    pub fn args_mut(&mut self) -> &mut Args {
        &mut self.args
    }

    /// The settings.
    pub fn args(&self) -> &Args {
        &self.args
    }

    /// Where to listen (default `127.0.0.1:0`: a free port on loopback).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = vec![addr];
        self.args.listen = addr.to_string();
        self
    }

    /// A user with a password and global roles (`systemAdmin`, `collectionManager`,
    /// `usersManager`, …). The password is hashed here (argon2id, 64 MiB: see the README's
    /// "for embedders" about debug builds).
    pub fn user(mut self, name: &str, password: &str, roles: &[&str]) -> Self {
        self.folder = false;
        let roles = self.roles(&code_file(DocumentKind::User, name), "spec.roles", roles);
        let Some(password) = self.hashed(&format!("user {name:?}"), password) else { return self };
        let user = User::new(name, password).with_email(format!("{name}@localhost")).with_roles(roles);
        self.definitions.users.push(user);
        self
    }

    /// An access key of a user given before (log in as `user$key`), with its own password
    /// and roles on collections only (`backupUploader`, `backupDownloader`, …).
    pub fn access_key(mut self, user: &str, key: &str, password: &str, access: &[(&str, &[&str])]) -> Self {
        let Some(owner) = self.definitions.users.iter().position(|u| u.name == user) else {
            self.refused.push(format!("access key {key:?}: no user {user:?} was given before it"));
            return self;
        };
        let file = code_file(DocumentKind::User, user);
        let field = format!("spec.accessKeys[{}]", self.definitions.users[owner].access_keys.len());
        let mut grants = Vec::new();
        for (j, (collection, roles)) in access.iter().enumerate() {
            grants.push((*collection, self.roles(&file, &format!("{field}.objects[{j}].roles"), roles)));
        }
        let Some(password) = self.hashed(&format!("access key {key:?}"), password) else { return self };
        let key = grants.into_iter().fold(AccessKey::new(key, password), |k, (c, roles)| k.with_collection(c, roles));
        self.definitions.users[owner].access_keys.push(key);
        self
    }

    /// A collection of at most `max_versions` versions of `max_version_size` each and
    /// `max_collection_size` in all (backup-repository's sizes: `1M`, `500MiB`, `2G`), FIFO,
    /// any content, files named `<id>-<N>`, and users with roles on it
    /// (`collectionManager`, `backupUploader`, `backupDownloader`, …). Anything else:
    /// [`ServerConfig::manifest`].
    pub fn collection(
        mut self,
        id: &str,
        max_versions: u32,
        max_version_size: &str,
        max_collection_size: &str,
        access: &[(&str, &[&str])],
    ) -> Self {
        self.folder = false;
        let file = code_file(DocumentKind::Collection, id);
        let parsed = CollectionId::new(id).map_err(|e| self.refuse(&file, "metadata.name", e.to_string())).ok();
        let soft = self.size(&file, "spec.maxOneVersionSize", max_version_size);
        let hard = self.size(&file, "spec.maxCollectionSize", max_collection_size);
        let mut acl = Vec::new();
        for (i, (user, roles)) in access.iter().enumerate() {
            acl.push((*user, self.roles(&file, &format!("spec.accessControl[{i}].roles"), roles)));
        }
        let (Some(id), Some(soft), Some(hard)) = (parsed, soft, hard) else { return self };
        let limits = match Limits::new(max_versions, soft, hard) {
            Ok(limits) => limits,
            Err(e) => {
                self.refused.push(spec_error(&file, e).to_string());
                return self;
            }
        };
        let spec =
            CollectionSpec::new(format!("{id}-${{version}}"), limits).with_retention(RetentionSpec::named("fifo"));
        let collection =
            acl.into_iter().fold(CollectionDefinition::new(id, spec), |c, (user, roles)| c.with_acl(user, roles));
        self.definitions.collections.push(collection);
        self
    }

    /// Locks every version committed to collection `id` (declared before with
    /// [`ServerConfig::collection`]) under `policy`, as a manifest's `spec.lock` does.
    ///
    /// ```
    /// use backup_core::{LockMode, LockPolicy};
    ///
    /// let config = backup_server::ServerConfig::for_tests()
    ///     .user("ci", "a password for tests", &[])
    ///     .collection("vault", 30, "1G", "30G", &[("ci", &["backupUploader"])])
    ///     .lock("vault", LockPolicy::new(LockMode::Compliance, chrono::Duration::days(30)));
    /// # let _ = config;
    /// ```
    pub fn lock(mut self, id: &str, policy: LockPolicy) -> Self {
        let file = code_file(DocumentKind::Collection, id);
        if let Err(e) = policy.validate() {
            self.refuse(&file, "spec.lock.minRetention", e.to_string());
            return self;
        }
        match self.definitions.collections.iter_mut().rev().find(|c| c.id.as_str() == id) {
            Some(c) => c.spec.lock = Some(policy),
            None => self.refuse(&file, "spec.lock", format!("collection {id:?} is not declared before its lock")),
        }
        self
    }

    /// The roles named, each name that is not a role noted as its manifest's loader reports
    /// it (`field[i]`).
    fn roles(&mut self, file: &Path, field: &str, names: &[&str]) -> Vec<Role> {
        let mut roles = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match name.parse::<Role>() {
                Ok(role) => roles.push(role),
                Err(e) => self.refuse(file, format!("{field}[{i}]"), e.to_string()),
            }
        }
        roles
    }

    /// A size (`1M`), or `None` after noting it as its manifest's loader reports it.
    fn size(&mut self, file: &Path, field: &str, text: &str) -> Option<u64> {
        parse_size(text).map_err(|e| self.refuse(file, field, e.to_string())).ok()
    }

    /// A hashed password, or `None` after noting that `whose` cannot have it.
    fn hashed(&mut self, whose: &str, password: &str) -> Option<StoredPassword> {
        let hashed = StoredPassword::hash(password.as_bytes()).ok();
        if hashed.is_none() {
            self.refused.push(format!("{whose}: the password cannot be hashed"));
        }
        hashed
    }

    /// Notes a value refused as a manifest's loader would refuse it: file, field, reason.
    fn refuse(&mut self, file: &Path, field: impl Into<String>, reason: String) {
        let e = backup_policy::Error::Manifest { file: file.to_owned(), field: field.into(), reason };
        self.refused.push(e.to_string());
    }

    /// A manifest as text (a `BackupUser`, `BackupCollection` or `Secret`, as in
    /// backup-repository's folders), named `name` (its `metadata.name`).
    pub fn manifest(mut self, kind: DocumentKind, name: &str, yaml: impl Into<String>) -> Self {
        self.folder = false;
        self.definitions.documents.push(Document { file: code_file(kind, name), kind, text: yaml.into() });
        self
    }

    /// Where the manifests come from.
    pub(crate) fn manifest_source(&self) -> ManifestSource {
        if self.folder {
            return ManifestSource::Folder { root: self.args.config_root(), namespace: self.args.namespace.clone() };
        }
        ManifestSource::Values(self.definitions.clone())
    }

    /// The values [`ServerConfig::user`], [`ServerConfig::access_key`] and
    /// [`ServerConfig::collection`] refused.
    pub(crate) fn check_values(&self) -> Result<(), String> {
        match self.refused.first() {
            None => Ok(()),
            Some(first) => Err(format!("configuration: {first}")),
        }
    }

    pub(crate) fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new()
    }
}

/// A server running in this process; stop it with [`RunningServer::shutdown`] (dropping it
/// stops it too, without waiting).
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (the engine, the tokens, the directory).
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A token for `login` (`user`, or `user$key` for an access key) and its password, checked
    /// and registered as `POST /api/stable/auth/login` does for a client on loopback, so a test
    /// can call the API without logging in over HTTP first:
    ///
    /// ```no_run
    /// # async fn call(server: backup_server::RunningServer) -> Result<(), String> {
    /// let token = server.token("alice", "a password").await?;
    /// let authorization = format!("Bearer {token}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Why the login is refused (an unknown name or a wrong password, a deactivated user, an
    /// address restriction that excludes loopback), or the session could not be registered.
    pub async fn token(&self, login: &str, password: &str) -> Result<String, String> {
        let name: backup_policy::LoginName = login.parse().map_err(|e| format!("login {login:?}: {e}"))?;
        let loopback = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
        let inner = &self.state.inner;
        let who = inner.directory.authenticate(&name, password, Some(loopback)).await.map_err(|e| e.to_string())?;
        let request = backup_policy::TokenRequest::login().from_addr(loopback.to_string());
        let issued =
            inner.tokens.issue(&who.user, who.access_key.as_deref(), request).await.map_err(|e| e.to_string())?;
        Ok(issued.token)
    }

    /// Stops it gracefully (requests in flight get `--shutdown-timeout`), waits for the
    /// clean-ups of cancelled uploads, and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The server's router on `config`, built as [`spawn`] builds it (catalog, storage,
/// manifests, engine, recovery) but without a socket, a schedule or a reload: for tests of its
/// answers that send requests through [`tower::ServiceExt::oneshot`]. Every request comes from
/// `127.0.0.1` (IP allow-lists and rate limits see loopback).
///
/// ```
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use tower::ServiceExt;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = backup_server::router(&backup_server::ServerConfig::for_tests()).await?;
/// let health = app.oneshot(Request::get("/health").body(Body::empty())?).await?;
/// assert_eq!(health.status(), StatusCode::OK);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
///
/// # Errors
/// As [`spawn`], but the address.
pub async fn router(config: &ServerConfig) -> Result<axum::Router, String> {
    let state = crate::build_from(config).await?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 40000));
    Ok(crate::app(state).layer(axum::extract::connect_info::MockConnectInfo(loopback)))
}

/// Starts a server in this process on `config` and returns once it listens: builds it as
/// [`crate::run`] does (catalog, storage, manifests, engine, recovery), binds (by default
/// `127.0.0.1:0`), and serves with the client address of every connection known (IP
/// allow-lists and rate limits see the real client), the maintenance schedule and the
/// manifest reloads running.
///
/// Another project's integration test:
///
/// ```
/// use backup_server::{ServerConfig, spawn};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let config = ServerConfig::for_tests()
///     .user("ci", "a password", &[])
///     .collection("db", 2, "1M", "5M", &[("ci", &["collectionManager"])]);
/// let server = spawn(config).await?;
/// let http = reqwest::Client::new();
/// let login = serde_json::json!({"username": "ci", "password": "a password"});
/// let reply: serde_json::Value =
///     http.post(server.url("/api/stable/auth/login")).json(&login).send().await?.json().await?;
/// let token = reply["data"]["token"].as_str().unwrap().to_owned();
/// for body in ["one", "two", "three"] {
///     let url = server.url("/api/alpha/repository/collection/db/version");
///     assert!(http.post(url).bearer_auth(&token).body(body).send().await?.status().is_success());
/// }
/// let list: serde_json::Value = http
///     .get(server.url("/api/stable/repository/collection/db/version"))
///     .bearer_auth(&token).send().await?.json().await?;
/// let numbers: Vec<u64> = list["data"]["versions"].as_array().unwrap()
///     .iter().map(|v| v["versionNumber"].as_u64().unwrap()).collect();
/// assert_eq!(numbers, [2, 3], "the rotation kept the newest two");
/// server.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
///
/// # Errors
/// A line naming what is wrong (a manifest's file, field and reason; the catalog; the
/// storage; the address).
pub async fn spawn(config: ServerConfig) -> Result<RunningServer, String> {
    let args = config.args.clone();
    let state = crate::build_from(&config).await?;
    let listener = crate::bind(config.listen_addrs()).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Every notification target is checked before the server answers: a bad one stops the
    // start, naming it.
    let manifests = state.inner.manifests.load_async().await?;
    let (notifications, targets) =
        crate::ops::notify::Notifications::new(state.engine().clone(), &args, &[addr], &manifests)?;
    let owner = args.instance_name()?;
    let replication = crate::ops::replicate::Replication::start(state.engine().clone(), &args, &manifests, owner);
    let (stop, stopped) = oneshot::channel::<()>();
    let served = state.clone();
    let task = tokio::spawn(async move {
        let background = crate::ops::sync::background(served.clone(), &args, notifications, targets, replication);
        let limits = crate::http::serve::ConnectionLimits {
            max: args.max_connections,
            per_address: args.max_connections_per_address,
            idle: args.idle_timeout,
            stall: args.stall_timeout,
            trusted: args.trusted_proxies.clone(),
        }
        .within_descriptor_limit();
        let shutdown = async {
            let _ = stopped.await;
        };
        crate::http::serve::serve(listener, crate::app(served.clone()), limits, shutdown, args.shutdown_timeout).await;
        background.abort();
        if tokio::time::timeout(Duration::from_secs(30), served.engine().wait_for_cleanups()).await.is_err() {
            tracing::warn!("clean-ups did not finish; recover() finishes them at the next start");
        }
    });
    Ok(RunningServer { addr, state, stop: Some(stop), task: Some(task) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users, keys and collections given by code are what the manifests written for them
    /// before gave.
    #[test]
    fn values_from_code_load_as_their_manifests_did() {
        let config = ServerConfig::for_tests()
            .user("ci", "a password", &["usersManager"])
            .access_key("ci", "pipeline", "a key password", &[("db", &["backupUploader"])])
            .collection("db", 2, "1M", "5M", &[("ci", &["collectionManager"])]);
        let values = config.manifest_source().load().unwrap();
        let phc = |p: &StoredPassword| p.to_phc().unwrap();
        let (user, key) = (phc(&values.users[0].password), phc(&values.users[0].access_keys[0].password));
        let user = format!(
            "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupUser\nmetadata:\n    name: ci\nspec:\n    \
             email: ci@localhost\n    password: \"{user}\"\n    roles: [usersManager]\n    accessKeys:\n        \
             - name: pipeline\n          password: \"{key}\"\n          objects:\n              - name: db\n                \
             type: collection\n                roles: [backupUploader]\n"
        );
        let collection = "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: db\n\
             spec:\n    filenameTemplate: db-${version}\n    maxBackupsCount: 2\n    maxOneVersionSize: 1M\n    \
             maxCollectionSize: 5M\n    strategyName: fifo\n    contentRule: none\n    accessControl:\n        \
             - name: ci\n          type: user\n          roles: [collectionManager]\n";
        let text = ServerConfig::new()
            .manifest(DocumentKind::User, "ci", user)
            .manifest(DocumentKind::Collection, "db", collection)
            .manifest_source()
            .load()
            .unwrap();
        assert_eq!(values.users, text.users);
        assert_eq!(values.collections, text.collections);
    }

    #[test]
    fn values_that_cannot_be_are_refused_with_their_field() {
        let refusal = |config: ServerConfig| config.check_values().unwrap_err();
        let e = refusal(ServerConfig::for_tests().user("ci", "a password", &["root"]));
        assert!(e.starts_with("configuration: <code>/backupusers/ci.yaml: spec.roles[0]: "), "{e}");
        let e = refusal(ServerConfig::for_tests().access_key("ci", "k", "a password", &[]));
        assert_eq!(e, "configuration: access key \"k\": no user \"ci\" was given before it");
        let e = refusal(ServerConfig::for_tests().collection("db", 2, "lots", "5M", &[]));
        assert!(e.starts_with("configuration: <code>/backupcollections/db.yaml: spec.maxOneVersionSize: "), "{e}");
        let e = refusal(ServerConfig::for_tests().collection("db", 0, "1M", "5M", &[]));
        assert_eq!(e, "configuration: <code>/backupcollections/db.yaml: spec.maxBackupsCount: must be at least 1");
        let e = refusal(ServerConfig::for_tests().collection("../db", 2, "1M", "5M", &[("ci", &["owner"])]));
        assert!(e.contains("metadata.name"), "{e}");
    }
}
