//! [`object_store_from_url`]: a blob store by URL.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::store::UploadLeftovers;
use backup_core::{EngineBuilder, Error, ObjectLocks, Result};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::multipart::PartId;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::path::Path;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::prefix::PrefixStore;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::{MultipartId, PutPayload, PutResult};

use crate::url::redact;

/// Options for [`object_store_from_url`]: backend settings by the names `object_store`'s
/// builders read (`access_key_id`, `secret_access_key`, `region`, `endpoint`, `allow_http`,
/// `service_account_key`, `account_name`, …). They win over the URL's query and over the
/// standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), which are read too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Setting name → value.
    pub options: BTreeMap<String, String>,
}

impl StoreOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one setting.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

fn supported() -> String {
    let mut s = vec!["memory://", "file:///PATH"];
    if cfg!(feature = "aws") {
        s.push("s3://BUCKET");
    }
    if cfg!(feature = "gcp") {
        s.push("gs://BUCKET");
    }
    if cfg!(feature = "azure") {
        s.push("az://CONTAINER");
    }
    s.join(", ")
}

fn invalid(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid("storage URL", format!("{:?}: {reason}", redact(url)))
}

/// Builds the blob store a URL names:
///
/// | URL | store |
/// |---|---|
/// | `memory://` | in memory |
/// | `file:///var/backups` | local disk, the folder created, fsync on |
/// | `s3://bucket[/prefix]?endpoint=…&region=…` | S3 or a compatible server (feature `aws`) |
/// | `gs://bucket[/prefix]` | Google Cloud Storage (feature `gcp`) |
/// | `az://container[/prefix]` | Azure Blob Storage (feature `azure`) |
///
/// Query parameters and `options` set the backend (see [`StoreOptions`]). For S3,
/// backup-repository's gocloud parameters are understood too: `endpoint=host:9000`,
/// `disableSSL=true`, `s3ForcePathStyle=true`, `region=…`. Requests are path-style unless
/// `virtual_hosted_style_request=true`.
///
/// `object_lock=true` (S3 only; `false` is the default) makes the bucket enforce version
/// locks: [`OpenedStore::object_locks`] sets each locked version's object and description
/// to S3 Object Lock retention until its lock ends (`S3ObjectLock`). The bucket must have
/// been created with Object Lock enabled; `ObjectLocks::check` tells.
///
/// ```
/// use backup_store::{StoreOptions, object_store_from_url};
///
/// let store = object_store_from_url("memory://", &StoreOptions::default())?;
/// let e = object_store_from_url("ftp://host/backups", &StoreOptions::default()).unwrap_err();
/// assert!(e.to_string().contains("memory://, file:///PATH"), "{e}");
/// # Ok::<(), backup_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown scheme (listing the supported ones), a scheme whose
/// feature is off, settings the backend refuses, or an `object_lock` other than `true` or
/// `false`.
pub fn object_store_from_url(url: &str, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    open_store(url, options).map(|opened| opened.store)
}

/// A store opened from a URL by [`open_store`].
#[derive(Clone)]
#[non_exhaustive]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// For object stores whose multipart uploads outlive a killed process (S3, GCS, Azure),
    /// the same store as a [`MultipartStore`], for
    /// [`backup_core::EngineBuilder::multipart_store`].
    pub multipart: Option<Arc<dyn MultipartStore>>,
    /// For local disk, the same folder without fsync, for the versions' descriptions
    /// ([`backup_core::EngineBuilder::description_store`]): copies of the catalog's records,
    /// which a scrub writes again if a power cut lost one.
    pub descriptions: Option<Arc<dyn ObjectStore>>,
    /// What finds an unfinished upload's remains by its key
    /// ([`backup_core::EngineBuilder::upload_leftovers`]): the staging files of local disk,
    /// the open multipart uploads of S3 (also those whose id was never recorded).
    pub leftovers: Option<Arc<dyn UploadLeftovers>>,
    /// The store's own enforcement of version locks
    /// ([`backup_core::EngineBuilder::object_locks`]): read-only files on local disk
    /// ([`crate::local_disk::ReadOnlyFiles`]), S3 Object Lock retention for `s3://` URLs with
    /// `object_lock=true` (`S3ObjectLock`, feature `aws`).
    pub object_locks: Option<Arc<dyn ObjectLocks>>,
}

impl OpenedStore {
    /// A folder on local disk as a repository's store: the blobs written with fsync
    /// ([`crate::local_disk_store`]), the descriptions beside them without it
    /// ([`crate::local_disk::description_store`]), the staging files a killed process left
    /// as its leftovers ([`crate::local_disk::StagingFiles`]), and locked versions' files
    /// made read-only ([`crate::local_disk::ReadOnlyFiles`]). What `open_store` gives for
    /// `file://` URLs and [`crate::local_repository`] for its `blobs` folder.
    ///
    /// # Errors
    /// [`backup_core::ErrorKind::InvalidInput`] when the folder cannot be created or opened.
    pub fn local_disk(folder: impl AsRef<std::path::Path>) -> Result<OpenedStore> {
        let folder = folder.as_ref();
        Ok(OpenedStore {
            store: crate::local_disk::local_disk_store(folder)?,
            multipart: None,
            descriptions: Some(crate::local_disk::description_store(folder)?),
            leftovers: Some(Arc::new(crate::local_disk::StagingFiles::new(folder))),
            object_locks: Some(Arc::new(crate::local_disk::ReadOnlyFiles::new(folder)?)),
        })
    }

    /// Gives `builder` the store and everything opened with it (multipart store,
    /// description store, leftovers, object locks), so that no part is forgotten.
    ///
    /// ```
    /// use backup_store::{StoreOptions, open_store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let opened = open_store(&format!("file://{}", dir.path().display()), &StoreOptions::default())?;
    /// let engine = opened.configure(backup_core::Engine::builder()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn configure(self, builder: EngineBuilder) -> EngineBuilder {
        let mut builder = builder.store(self.store);
        if let Some(multipart) = self.multipart {
            builder = builder.multipart_store(multipart);
        }
        if let Some(descriptions) = self.descriptions {
            builder = builder.description_store(descriptions);
        }
        if let Some(leftovers) = self.leftovers {
            builder = builder.upload_leftovers(leftovers);
        }
        if let Some(locks) = self.object_locks {
            builder = builder.object_locks(locks);
        }
        builder
    }
}

impl OpenedStore {
    /// The store as a replica called `name` (see [`backup_core::replica`]), with everything
    /// opened with it: the descriptions' store, the leftovers of a killed copy, the store's
    /// own enforcement of version locks, as [`OpenedStore::configure`] gives them to an
    /// engine's primary.
    ///
    /// ```
    /// use backup_store::{StoreOptions, open_store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let replica = open_store(&format!("file://{}", dir.path().display()), &StoreOptions::default())?.replica("cold")?;
    /// let engine = backup_core::Engine::builder().replica(replica).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`backup_core::ErrorKind::InvalidInput`] for a name `backup_core::replica::check_name`
    /// refuses.
    pub fn replica(self, name: &str) -> Result<backup_core::replica::Replica> {
        let mut replica = backup_core::replica::Replica::new(name, self.store)?;
        if let Some(descriptions) = self.descriptions {
            replica = replica.description_store(descriptions);
        }
        if let Some(leftovers) = self.leftovers {
            replica = replica.leftovers(leftovers);
        }
        if let Some(locks) = self.object_locks {
            replica = replica.object_locks(locks);
        }
        Ok(replica)
    }
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore")
            .field("store", &self.store)
            .field("multipart", &self.multipart.is_some())
            .field("descriptions", &self.descriptions.is_some())
            .field("leftovers", &self.leftovers)
            .field("object_locks", &self.object_locks)
            .finish()
    }
}

/// [`object_store_from_url`], with the store also as a [`MultipartStore`] where a killed
/// process can leave multipart uploads behind, so that the engine records their ids and
/// `recover()` aborts them:
///
/// ```
/// use backup_store::{StoreOptions, open_store};
///
/// let opened = open_store("memory://", &StoreOptions::default())?;
/// let mut builder = backup_core::Engine::builder().store(opened.store);
/// if let Some(multipart) = opened.multipart {
///     builder = builder.multipart_store(multipart);
/// }
/// let engine = builder.build()?;
/// # Ok::<(), backup_core::Error>(())
/// ```
///
/// # Errors
/// As [`object_store_from_url`].
pub fn open_store(url: &str, options: &StoreOptions) -> Result<OpenedStore> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, e))?;
    match parsed.scheme() {
        // A process that dies takes its memory along; local disk leaves staging files, which
        // `local_disk::StagingFiles` removes.
        "memory" => Ok(OpenedStore {
            store: Arc::new(InMemory::new()),
            multipart: None,
            descriptions: None,
            leftovers: None,
            object_locks: None,
        }),
        "file" => {
            let path = parsed.to_file_path().map_err(|()| invalid(url, "expected file:///absolute/path"))?;
            OpenedStore::local_disk(path)
        }
        "s3" | "s3a" => s3(url, &parsed, options),
        "gs" => gcs(url, &parsed, options),
        "az" | "azure" | "abfs" | "abfss" => azure(url, &parsed, options),
        other => Err(invalid(url, format!("the scheme {other}:// is not one of {}", supported()))),
    }
}

/// The bucket and the optional key prefix of `scheme://bucket/prefix`.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn bucket_and_prefix(url: &str, parsed: &url::Url) -> Result<(String, Option<Path>)> {
    let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| invalid(url, "the bucket is missing"))?;
    let prefix = parsed.path().trim_matches('/');
    let prefix = if prefix.is_empty() { None } else { Some(Path::parse(prefix).map_err(|e| invalid(url, e))?) };
    Ok((bucket.to_owned(), prefix))
}

/// The URL's query followed by the options, the options winning.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn settings(parsed: &url::Url, options: &StoreOptions) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    all.extend(options.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn with_prefix<T: ObjectStore + MultipartStore>(store: Arc<T>, prefix: Option<Path>) -> OpenedStore {
    match prefix {
        Some(p) => OpenedStore {
            store: Arc::new(PrefixStore::new(store.clone() as Arc<dyn ObjectStore>, p.clone())),
            multipart: Some(Arc::new(PrefixedMultipart { inner: store, prefix: p })),
            descriptions: None,
            leftovers: None,
            object_locks: None,
        },
        None => OpenedStore {
            store: store.clone(),
            multipart: Some(store),
            descriptions: None,
            leftovers: None,
            object_locks: None,
        },
    }
}

/// A [`MultipartStore`] under a key prefix, as [`PrefixStore`] is for the store.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
#[derive(Debug)]
struct PrefixedMultipart<T> {
    inner: Arc<T>,
    prefix: Path,
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
impl<T> PrefixedMultipart<T> {
    fn full(&self, path: &Path) -> Path {
        self.prefix.parts().chain(path.parts()).collect()
    }
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
#[async_trait::async_trait]
impl<T: MultipartStore> MultipartStore for PrefixedMultipart<T> {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.inner.create_multipart(&self.full(path)).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        self.inner.put_part(&self.full(path), id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.inner.complete_multipart(&self.full(path), id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.inner.abort_multipart(&self.full(path), id).await
    }
}

#[cfg(feature = "aws")]
fn s3(url: &str, parsed: &url::Url, options: &StoreOptions) -> Result<OpenedStore> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let (bucket, prefix) = bucket_and_prefix(url, parsed)?;
    let all = settings(parsed, options);
    let plain_http = all.iter().any(|(k, v)| k == "disableSSL" && v == "true");
    let mut object_lock = false;
    let mut builder =
        AmazonS3Builder::from_env().with_bucket_name(bucket.clone()).with_virtual_hosted_style_request(false);
    for (key, value) in all {
        match key.as_str() {
            // backup-repository's gocloud parameters.
            "disableSSL" => builder = builder.with_allow_http(value == "true"),
            "s3ForcePathStyle" => builder = builder.with_virtual_hosted_style_request(value != "true"),
            "endpoint" if !value.contains("://") => {
                let scheme = if plain_http { "http" } else { "https" };
                builder = builder.with_endpoint(format!("{scheme}://{value}"));
            }
            // Ours, not object_store's: the bucket's Object Lock for version locks.
            "object_lock" => {
                object_lock = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        let shown: String = other.chars().take(40).collect();
                        return Err(invalid(url, format!("object_lock={shown:?}: expected true or false")));
                    }
                }
            }
            _ => {
                let key: AmazonS3ConfigKey = key.parse().map_err(|e| invalid(url, e))?;
                builder = builder.with_config(key, value);
            }
        }
    }
    let s3 = Arc::new(builder.build().map_err(|e| invalid(url, e))?);
    let leftovers = crate::s3_uploads::S3OpenUploads::new(s3.clone(), prefix.clone());
    let object_locks: Option<Arc<dyn ObjectLocks>> = if object_lock {
        Some(Arc::new(crate::s3_object_lock::S3ObjectLock::new(s3.clone(), bucket, prefix.clone())))
    } else {
        None
    };
    Ok(OpenedStore { leftovers: Some(Arc::new(leftovers)), object_locks, ..with_prefix(s3, prefix) })
}

#[cfg(not(feature = "aws"))]
fn s3(url: &str, _parsed: &url::Url, _options: &StoreOptions) -> Result<OpenedStore> {
    Err(invalid(url, format!("s3:// needs backup-store's `aws` feature; this build supports {}", supported())))
}

#[cfg(feature = "gcp")]
fn gcs(url: &str, parsed: &url::Url, options: &StoreOptions) -> Result<OpenedStore> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    let (bucket, prefix) = bucket_and_prefix(url, parsed)?;
    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    for (key, value) in settings(parsed, options) {
        let key: GoogleConfigKey = key.parse().map_err(|e| invalid(url, e))?;
        builder = builder.with_config(key, value);
    }
    Ok(with_prefix(Arc::new(builder.build().map_err(|e| invalid(url, e))?), prefix))
}

#[cfg(not(feature = "gcp"))]
fn gcs(url: &str, _parsed: &url::Url, _options: &StoreOptions) -> Result<OpenedStore> {
    Err(invalid(url, format!("gs:// needs backup-store's `gcp` feature; this build supports {}", supported())))
}

#[cfg(feature = "azure")]
fn azure(url: &str, parsed: &url::Url, options: &StoreOptions) -> Result<OpenedStore> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let (container, prefix) = bucket_and_prefix(url, parsed)?;
    let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
    for (key, value) in settings(parsed, options) {
        let key: AzureConfigKey = key.parse().map_err(|e| invalid(url, e))?;
        builder = builder.with_config(key, value);
    }
    Ok(with_prefix(Arc::new(builder.build().map_err(|e| invalid(url, e))?), prefix))
}

#[cfg(not(feature = "azure"))]
fn azure(url: &str, _parsed: &url::Url, _options: &StoreOptions) -> Result<OpenedStore> {
    Err(invalid(url, format!("az:// needs backup-store's `azure` feature; this build supports {}", supported())))
}
