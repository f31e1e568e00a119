//! The server in another program: a configuration built from code ([`ServerConfig`]), started
//! in-process on a free port ([`spawn`]), stopped on demand ([`RunningServer::shutdown`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use backup_policy::StoredPassword;
use backup_policy::manifest::{Document, DocumentKind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::manifests::ManifestSource;
use crate::config::{Args, Schedule};
use crate::state::AppState;

/// Everything a server needs: the settings of its command line and its manifests, from
/// files or from code (validated by the same loader).
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
    documents: Vec<Document>,
    secrets: Vec<(String, String)>,
    /// Users given by [`ServerConfig::user`], written as manifests when the server starts.
    users: Vec<UserEntry>,
    folder: bool,
    /// Values given to [`ServerConfig::user`] or [`ServerConfig::collection`] that cannot go
    /// into a manifest as they are: [`spawn`] refuses to start with them.
    refused: Vec<String>,
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
            documents: Vec::new(),
            secrets: Vec::new(),
            users: Vec::new(),
            folder: false,
            refused: Vec::new(),
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
            documents: Vec::new(),
            secrets: Vec::new(),
            users: Vec::new(),
            folder: true,
            refused: Vec::new(),
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
        self.check("user name", name, plain_name);
        self.check_roles(roles);
        let Some(encoded) = self.hashed(&format!("user {name:?}"), password) else { return self };
        self.secrets.push((name.to_owned(), encoded));
        self.folder = false;
        self.users.push(UserEntry {
            name: name.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            keys: Vec::new(),
        });
        self
    }

    /// An access key of a user given before (log in as `user$key`), with its own password
    /// and roles on collections only (`backupUploader`, `backupDownloader`, …).
    pub fn access_key(mut self, user: &str, key: &str, password: &str, access: &[(&str, &[&str])]) -> Self {
        self.check("access key name", key, plain_name);
        for (collection, roles) in access {
            self.check("collection id", collection, plain_name);
            self.check_roles(roles);
        }
        let Some(encoded) = self.hashed(&format!("access key {key:?}"), password) else { return self };
        let Some(owner) = self.users.iter_mut().find(|u| u.name == user) else {
            self.refused.push(format!("access key {key:?}: no user {user:?} was given before it"));
            return self;
        };
        owner.keys.push(KeyEntry {
            name: key.to_owned(),
            access: access
                .iter()
                .map(|(c, roles)| ((*c).to_owned(), roles.iter().map(|r| (*r).to_owned()).collect()))
                .collect(),
        });
        self.secrets.push((format!("{user}--{key}"), encoded));
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
        self.check("collection id", id, plain_name);
        for size in [max_version_size, max_collection_size] {
            self.check("size", size, |s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        }
        for (user, roles) in access {
            self.check("user name", user, plain_name);
            self.check_roles(roles);
        }
        let acl: String = access
            .iter()
            .map(|(user, roles)| {
                let roles: String = roles.iter().map(|r| format!("\n              - {r}")).collect();
                format!("\n        - name: {user}\n          type: user\n          roles:{roles}")
            })
            .collect();
        let yaml = format!(
            "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupCollection\nmetadata:\n    name: {id}\nspec:\n    \
             filenameTemplate: {id}-${{version}}\n    maxBackupsCount: {max_versions}\n    \
             maxOneVersionSize: {max_version_size}\n    maxCollectionSize: {max_collection_size}\n    \
             strategyName: fifo\n    contentRule: none\n    accessControl:{}\n",
            if acl.is_empty() { " []".to_owned() } else { acl }
        );
        self.manifest(DocumentKind::Collection, id, yaml)
    }

    /// Notes the roles that are not a role's name (letters only).
    fn check_roles(&mut self, roles: &[&str]) {
        for r in roles {
            self.check("role", r, |r| r.bytes().all(|b| b.is_ascii_alphabetic()));
        }
    }

    /// A password in backup-repository's stored form, or `None` after noting that `whose`
    /// cannot have it.
    fn hashed(&mut self, whose: &str, password: &str) -> Option<String> {
        let encoded = StoredPassword::hash(password.as_bytes()).ok().and_then(|h| h.to_backup_repository_form());
        if encoded.is_none() {
            self.refused.push(format!("{whose}: the password cannot be hashed"));
        }
        encoded
    }

    /// Notes a value that cannot be written into a manifest as it is (it would change the
    /// YAML around it); the manifest loader checks the rest.
    fn check(&mut self, what: &str, value: &str, ok: impl Fn(&str) -> bool) {
        if value.is_empty() || !ok(value) {
            self.refused.push(format!("{what} {value:?}: letters, digits, '.', '-', '_' and '@' only"));
        }
    }

    /// A manifest as text (a `BackupUser`, `BackupCollection` or `Secret`, as in
    /// backup-repository's folders), named `name` (its `metadata.name`).
    pub fn manifest(mut self, kind: DocumentKind, name: &str, yaml: impl Into<String>) -> Self {
        self.folder = false;
        let folder = match kind {
            DocumentKind::User => "backupusers",
            DocumentKind::Collection => "backupcollections",
            DocumentKind::Secret => "secrets",
        };
        self.documents.push(Document {
            file: PathBuf::from(format!("<code>/{folder}/{name}.yaml")),
            kind,
            text: yaml.into(),
        });
        self
    }

    /// Where the manifests come from.
    pub(crate) fn manifest_source(&self) -> ManifestSource {
        if self.folder {
            return ManifestSource::Folder { root: self.args.config_root(), namespace: self.args.namespace.clone() };
        }
        let mut documents = self.documents.clone();
        documents.extend(self.users.iter().map(UserEntry::document));
        if !self.secrets.is_empty() {
            let data: String = self.secrets.iter().map(|(k, v)| format!("\n    {k}: \"{v}\"")).collect();
            documents.push(Document {
                file: PathBuf::from(format!("<code>/secrets/{SECRETS}.yaml")),
                kind: DocumentKind::Secret,
                text: format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n    name: {SECRETS}\ntype: Opaque\ndata:{data}\n"
                ),
            });
        }
        ManifestSource::Documents(documents)
    }

    /// The values [`ServerConfig::user`] and [`ServerConfig::collection`] refused.
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

/// A user given by code, written as a `BackupUser` manifest.
#[derive(Debug, Clone)]
struct UserEntry {
    name: String,
    roles: Vec<String>,
    keys: Vec<KeyEntry>,
}

/// An access key of a [`UserEntry`].
#[derive(Debug, Clone)]
struct KeyEntry {
    name: String,
    /// Roles by collection.
    access: Vec<(String, Vec<String>)>,
}

impl UserEntry {
    fn document(&self) -> Document {
        let list = |items: &[String], indent: &str| -> String {
            if items.is_empty() { " []".to_owned() } else { items.iter().map(|i| format!("\n{indent}- {i}")).collect() }
        };
        let name = &self.name;
        let keys: String = self
            .keys
            .iter()
            .map(|k| {
                let objects: String = k
                    .access
                    .iter()
                    .map(|(c, roles)| {
                        format!(
                            "\n              - name: {c}\n                type: collection\n                roles:{}",
                            list(roles, "                    ")
                        )
                    })
                    .collect();
                format!(
                    "\n        - name: {}\n          passwordFromRef:\n              name: {SECRETS}\n              \
                     entry: {name}--{}\n          objects:{}",
                    k.name,
                    k.name,
                    if objects.is_empty() { " []".to_owned() } else { objects }
                )
            })
            .collect();
        let text = format!(
            "apiVersion: backups.riotkit.org/v1alpha1\nkind: BackupUser\nmetadata:\n    name: {name}\nspec:\n    \
             email: {name}@localhost\n    passwordFromRef:\n        name: {SECRETS}\n        entry: {name}\n    \
             roles:{}{}\n",
            list(&self.roles, "        "),
            if keys.is_empty() { String::new() } else { format!("\n    accessKeys:{keys}") }
        );
        Document { file: PathBuf::from(format!("<code>/backupusers/{name}.yaml")), kind: DocumentKind::User, text }
    }
}

/// A name as backup-repository's manifests have them (Kubernetes-style), safe in YAML.
fn plain_name(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
}

/// The secret that [`ServerConfig::user`]'s passwords are kept in.
const SECRETS: &str = "server-config-passwords";

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
    let (stop, stopped) = oneshot::channel::<()>();
    let served = state.clone();
    let task = tokio::spawn(async move {
        let background = crate::ops::sync::background(served.clone(), &args);
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
