//! Where versions go: the engine embedded in this process, or a backup server over HTTP.
//! Both stream the bundle file in and out; neither holds it in memory.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use backup_core::{Actor, CollectionId, Engine, Metadata, UploadOptions, Version, VersionQuery, VersionSelector};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::config::{Destination, Repository};

/// What the tool needs to know of a version.
#[derive(Debug, Clone)]
pub(crate) struct VersionInfo {
    /// The version's unique id: a later upload never has the same one.
    pub(crate) id: String,
    /// Who uploaded it (the user the token or the embedded actor is).
    pub(crate) user: String,
    pub(crate) number: u64,
    pub(crate) size: u64,
    pub(crate) committed_at: Option<DateTime<Utc>>,
    pub(crate) metadata: Metadata,
}

impl From<&Version> for VersionInfo {
    fn from(v: &Version) -> Self {
        VersionInfo {
            id: v.id.to_string(),
            user: v.uploader.user.clone(),
            number: v.number,
            size: v.size,
            committed_at: Some(v.committed_at.to_datetime()),
            metadata: v.metadata.clone(),
        }
    }
}

impl From<backup_client::Version> for VersionInfo {
    fn from(v: backup_client::Version) -> Self {
        VersionInfo {
            id: v.id,
            user: v.user,
            number: v.number,
            size: v.size,
            committed_at: v.created_at,
            metadata: v.metadata,
        }
    }
}

/// The collection's versions, as `status` shows them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) bytes: u64,
    pub(crate) latest: Option<VersionInfo>,
}

/// A destination, opened.
#[derive(Debug)]
pub(crate) enum Target {
    Embedded { engine: Engine, actor: Actor },
    Server { client: backup_client::Client },
}

impl Target {
    /// Opens the destination: the engine on its store and catalog (finishing what an
    /// interrupted run left), or the server's address with the token from the environment.
    pub(crate) async fn open(destination: &Destination) -> Result<Target, String> {
        match destination {
            Destination::Embedded { data_dir, store_url, catalog_url } => {
                let e = |e: backup_core::Error| e.to_string();
                let builder = match (store_url, catalog_url) {
                    // The embedded default: the whole repository in the data folder.
                    (None, None) => backup_store::local_repository(data_dir).await.map_err(e)?,
                    (store_url, catalog_url) => {
                        let builder = match store_url {
                            Some(url) => backup_store::open_store(url, &backup_store::StoreOptions::default())
                                .map_err(e)?
                                .configure(Engine::builder()),
                            None => backup_store::OpenedStore::local_disk(data_dir.join(backup_store::BLOBS_FOLDER))
                                .map_err(e)?
                                .configure(Engine::builder()),
                        };
                        let catalog = match catalog_url {
                            Some(url) => backup_store::open_catalog(url).await.map_err(e)?,
                            None => {
                                std::fs::create_dir_all(data_dir)
                                    .map_err(|err| format!("cannot create {}: {err}", data_dir.display()))?;
                                let file = data_dir.join(backup_store::CATALOG_FILE);
                                Arc::new(backup_store::SqliteCatalog::open(file).await.map_err(e)?)
                            }
                        };
                        builder.catalog(catalog)
                    }
                };
                let engine = builder.instance("git-backup").build().map_err(e)?;
                let report = engine.recover().await.map_err(e)?;
                for warning in report.warnings() {
                    tracing::warn!("{warning}");
                }
                Ok(Target::Embedded { engine, actor: Actor::user("git-backup") })
            }
            Destination::Server { url, token_env } => {
                let token = std::env::var(token_env)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("server: no token in the environment variable {token_env}"))?;
                let client = backup_client::Client::builder()
                    .with_server(url)
                    .with_token(token)
                    .with_user_agent(concat!("git-backup/", env!("CARGO_PKG_VERSION")))
                    .with_retry_notifier(|e, pause| tracing::warn!("{e}; trying again in {pause:.1?}"))
                    .build()
                    .map_err(|e| format!("server: {e}"))?;
                Ok(Target::Server { client })
            }
        }
    }

    /// Makes the collection exist with the configured spec (embedded). A server's manifests
    /// define its collections: the listing each run starts with finds a missing one.
    pub(crate) async fn prepare(&self, repo: &Repository) -> Result<(), String> {
        match self {
            Target::Embedded { engine, .. } => engine
                .declare_collection(&repo.collection, repo.spec.clone(), "git-backup configuration")
                .await
                .map(|_| ())
                .map_err(|e| format!("collection {}: {e}", repo.collection)),
            Target::Server { .. } => Ok(()),
        }
    }

    /// The collection's versions: how many, their bytes, the newest.
    pub(crate) async fn summary(&self, collection: &CollectionId) -> Result<Summary, String> {
        match self {
            Target::Embedded { engine, actor } => {
                let mut summary = Summary::default();
                let mut query = VersionQuery::first(1000);
                loop {
                    let page = engine.versions(actor, collection, query).await.map_err(|e| e.to_string())?;
                    for v in &page.items {
                        summary.count += 1;
                        summary.bytes += v.size;
                        summary.latest = Some(VersionInfo::from(v));
                    }
                    match page.next {
                        Some(n) => query = VersionQuery::first(1000).after(n),
                        None => return Ok(summary),
                    }
                }
            }
            Target::Server { .. } => {
                let versions = self.server_versions(collection).await?;
                Ok(Summary {
                    count: versions.len(),
                    bytes: versions.iter().map(|v| v.size).sum(),
                    latest: versions.last().cloned(),
                })
            }
        }
    }

    /// Streams `file` into the collection as a new version with `metadata`.
    pub(crate) async fn upload(
        &self,
        collection: &CollectionId,
        file: &Path,
        metadata: Metadata,
    ) -> Result<VersionInfo, String> {
        let opened = tokio::fs::File::open(file).await.map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        let size = opened.metadata().await.map_err(|e| e.to_string())?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(opened, 256 * 1024);
        match self {
            Target::Embedded { engine, actor } => {
                let mut options = UploadOptions::new().expected_size(size);
                for (k, v) in metadata {
                    options = options.metadata(k, v);
                }
                let staged =
                    engine.begin_upload(actor, collection, stream, options).await.map_err(|e| e.to_string())?;
                staged.commit().await.map(|v| VersionInfo::from(&v)).map_err(|e| e.to_string())
            }
            Target::Server { client } => {
                let mut options = backup_client::UploadOptions::new().content_length(size);
                for (k, v) in metadata {
                    options = options.metadata(k, v);
                }
                let uploaded = client.upload(collection.as_str(), stream, options).await.map_err(|e| e.to_string())?;
                if let Some(lost) = &uploaded.lost_answer {
                    tracing::warn!("the answer was lost ({lost}); the server had stored the version");
                }
                Ok(VersionInfo::from(uploaded.version))
            }
        }
    }

    /// Downloads a version (`latest`, `N`) to `to`, verified; its description.
    pub(crate) async fn download(
        &self,
        collection: &CollectionId,
        which: &str,
        to: &Path,
    ) -> Result<VersionInfo, String> {
        let mut file = tokio::fs::File::create(to).await.map_err(|e| format!("cannot create {}: {e}", to.display()))?;
        let info = match self {
            Target::Embedded { engine, actor } => {
                let selector = VersionSelector::from_str(which).map_err(|e| e.to_string())?;
                let download = engine.download(actor, collection, selector).await.map_err(|e| e.to_string())?;
                let (version, mut stream) = download.into_parts();
                // The engine checks the digest as the bytes stream: damage fails here.
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| format!("version {} of {collection}: {e}", version.number))?;
                    file.write_all(&chunk).await.map_err(|e| format!("cannot write {}: {e}", to.display()))?;
                }
                VersionInfo::from(&version)
            }
            Target::Server { .. } => self.download_http(collection, which, &mut file).await?,
        };
        file.sync_all().await.map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        Ok(info)
    }

    async fn download_http(
        &self,
        collection: &CollectionId,
        which: &str,
        file: &mut tokio::fs::File,
    ) -> Result<VersionInfo, String> {
        let Target::Server { client } = self else { unreachable!("only for servers") };
        // The version's number and metadata come from the listing.
        let versions = self.server_versions(collection).await?;
        let info = match which {
            "latest" => versions.last().cloned().ok_or_else(|| format!("{collection} has no versions"))?,
            n => {
                let number: u64 =
                    n.trim_start_matches('v').parse().map_err(|_| format!("{n:?} is not latest or a number"))?;
                versions
                    .into_iter()
                    .find(|v| v.number == number)
                    .ok_or_else(|| format!("{collection} has no version {number}"))?
            }
        };
        let number = info.number;
        // The library checks the announced size and digest as the bytes stream: damage fails
        // at the end, before the bundle is used.
        let mut download = client.download(collection.as_str(), number).await.map_err(|e| e.to_string())?;
        let mut received = 0u64;
        while let Some(chunk) = download.next().await {
            let chunk = chunk.map_err(|e| format!("version {number} of {collection}: {e}"))?;
            received += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        if received != info.size {
            return Err(format!("version {number}: received {received} bytes of {}", info.size));
        }
        Ok(info)
    }

    /// A server's listing of the collection's versions, by number.
    async fn server_versions(&self, collection: &CollectionId) -> Result<Vec<VersionInfo>, String> {
        let Target::Server { client } = self else { unreachable!("only for servers") };
        let versions = client.versions(collection.as_str()).await.map_err(|e| e.to_string())?;
        Ok(versions.into_iter().map(VersionInfo::from).collect())
    }
}
