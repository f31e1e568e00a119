//! # backup-store
//!
//! Where a repository lives: durable [`backup_core::catalog::Catalog`]s and object stores built from
//! URLs.
//!
//! | catalog | when | URL |
//! |---|---|---|
//! | [`SqliteCatalog`] | the embedded default: one machine, nothing else to install | `sqlite://PATH` |
//! | `PostgresCatalog` (feature `postgres`) | several server instances sharing one repository | `postgres://…` |
//! | [`backup_core::MemoryCatalog`] | tests, examples | `memory://` |
//!
//! [`open_catalog`] picks one by URL; [`object_store_from_url`] does the same for blobs
//! (`memory://`, `file:///path`, `s3://`, `gs://`, `az://`). [`snapshot`] exports a catalog
//! to the blob store as JSON lines and imports it into an empty catalog of either kind.
//!
//! A repository on local disk (the embedded default) is opened in one call,
//! [`local_repository`]: the SQLite catalog, the fsync store, the descriptions and the clean-up
//! of what a killed process left, in one folder. Hosts that choose each part by URL use
//! [`open_catalog`] and [`open_store`], whose [`OpenedStore::configure`] wires what comes with
//! the store.
//!
//! What a killed process leaves of its uploads goes at the next `recover()` when the engine
//! knows how to find it: on local disk the staging files ([`local_disk::StagingFiles`] for
//! [`backup_core::EngineBuilder::upload_leftovers`]), on S3, GCS and Azure the open multipart
//! uploads by the id the catalog recorded ([`open_store`] gives the store's
//! [`OpenedStore::multipart`] for [`backup_core::EngineBuilder::multipart_store`]), and on S3
//! also those whose id was never recorded, found by the bucket's listing (`S3OpenUploads`, in
//! [`OpenedStore::leftovers`]).
//!
//! Version locks hold against the store's own credentials when the store enforces them
//! ([`OpenedStore::object_locks`], for [`backup_core::EngineBuilder::object_locks`]): on S3 a
//! bucket with Object Lock, opened with `object_lock=true` (`S3ObjectLock`), keeps a locked
//! version's objects until the lock ends; on local disk [`local_disk::ReadOnlyFiles`] makes
//! them read-only, which stops overwrites but not their owner deleting them.
//!
//! ```
//! use backup_core::{Actor, CollectionSpec, Limits};
//! use backup_store::{StoreOptions, open_catalog, open_store};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! // The embedded default: everything in one folder.
//! let engine = backup_store::local_repository(dir.path().join("repo")).await?.build()?;
//! let id = "db".parse()?;
//! engine.create_collection(&Actor::user("me"), &id, CollectionSpec::new("db-${version}", Limits::new(3, 100, 300)?)).await?;
//!
//! // Each part by URL (here the same kinds, elsewhere PostgreSQL and S3).
//! let catalog = open_catalog(&format!("sqlite://{}/catalog.db", dir.path().display())).await?;
//! let store = open_store(&format!("file://{}/blobs", dir.path().display()), &StoreOptions::default())?;
//! let engine = store.configure(backup_core::Engine::builder().catalog(catalog)).build()?;
//! # let _ = engine;
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```
//!
//! ## Features
//!
//! | feature | adds |
//! |---|---|
//! | `postgres` | `PostgresCatalog` (tokio-postgres with a deadpool connection pool) |
//! | `aws` | `s3://` object stores (Amazon S3 and compatible servers) |
//! | `gcp` | `gs://` object stores |
//! | `azure` | `az://` object stores |
#![cfg_attr(feature = "testing", doc = "| `testing` | [`testing`]: test service URLs and an S3 server in-process |")]
#![cfg_attr(not(feature = "testing"), doc = "| `testing` | `testing`: test service URLs and an S3 server in-process |")]
#![deny(missing_docs)]

mod error;
pub mod local_disk;
mod local_repository;
mod metadata_column;
mod object_store_url;
mod open;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "aws")]
mod s3_object_lock;
#[cfg(feature = "aws")]
mod s3_uploads;
pub mod snapshot;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod url;

pub use local_disk::local_disk_store;
pub use local_repository::{BLOBS_FOLDER, CATALOG_FILE, STALE_STAGING_AGE, local_repository};
pub use object_store_url::{OpenedStore, StoreOptions, object_store_from_url, open_store};
pub use open::open_catalog;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresCatalog, PostgresCatalogBuilder};
#[cfg(feature = "aws")]
pub use s3_object_lock::S3ObjectLock;
#[cfg(feature = "aws")]
pub use s3_uploads::S3OpenUploads;
pub use sqlite::SqliteCatalog;
