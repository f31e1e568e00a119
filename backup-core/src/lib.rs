//! # backup-core
//!
//! The domain model, the traits and the crash-safe upload [`Engine`] of an embeddable backup
//! storage engine: **collections** hold immutable, numbered **versions**; uploads arrive as
//! byte streams checked against **quotas while they flow**; a **retention strategy** rotates
//! old versions out; an [`Authorizer`] decides who may do what.
//!
//! Blobs go to any [`object_store::ObjectStore`] (memory, local disk, S3, GCS, Azure);
//! metadata to a [`Catalog`](catalog::Catalog). This crate has the in-memory catalog; `backup-store` has the
//! embedded (SQLite) and PostgreSQL ones, `backup-policy` the users, tokens and windows.
//!
//! ## A first backup
//!
//! ```
//! use backup_core::{Actor, CollectionSpec, Engine, Limits, VersionQuery, VersionSelector};
//! use bytes::Bytes;
//! use futures::{TryStreamExt, stream};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let engine = Engine::in_memory();                       // memory catalog + store, allow-all
//! let me = Actor::user("me");
//! let id = "photos".parse()?;
//! // Keep 2 versions of up to 1 KiB each, 3 KiB in all (1 KiB of shared extra space).
//! let spec = CollectionSpec::new("photos-${version}.tar", Limits::new(2, 1024, 3072)?);
//! engine.create_collection(&me, &id, spec).await?;
//!
//! for day in ["mon", "tue", "wed"] {
//!     let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from(day))]);
//!     engine.upload(&me, &id, body).await?;
//! }
//! // FIFO rotation kept the newest two.
//! let page = engine.versions(&me, &id, VersionQuery::first(10)).await?;
//! assert_eq!(page.items.iter().map(|v| v.number).collect::<Vec<_>>(), [2, 3]);
//!
//! let latest = engine.download(&me, &id, VersionSelector::Latest).await?;
//! assert_eq!(latest.version().filename, "photos-3.tar");
//! let bytes: Vec<Bytes> = latest.into_stream().try_collect().await?;
//! assert_eq!(bytes.concat(), b"wed");
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```
//!
//! ## Retention that explains itself
//!
//! A collection names its retention strategy: `fifo` (the default), `gfs`
//! (grandfather-father-son, with restic's or Proxmox Backup Server's semantics) or
//! `fifo-plus-older` (backup-repository's). Every decision carries its reasons, and the
//! function a commit runs is the one [`Engine::retention_preview`] and [`rotation::plan`]
//! run, so what a user is shown is what happens. A held version stays through any policy.
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::catalog::protocol::ProtectionChange;
//! use backup_core::rotation::Mark;
//! use backup_core::{Actor, CollectionSpec, Engine, Limits, ManualClock, RetentionSpec};
//! use bytes::Bytes;
//! use chrono::{Duration, TimeZone, Utc};
//! use futures::stream;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 16, 23, 0, 0).unwrap()));
//! let engine = Engine::builder().clock(clock.clone()).build()?;
//! let me = Actor::user("me");
//! let id = "db".parse()?;
//! // The newest of each of the last 3 days and of the last 2 ISO weeks, days counted in
//! // Warsaw, by the time the server received each upload.
//! let policy = RetentionSpec::named("gfs")
//!     .with_option("keepDaily", "3")
//!     .with_option("keepWeekly", "2")
//!     .with_option("timezone", "Europe/Warsaw");
//! engine.create_collection(&me, &id, CollectionSpec::new("db-${version}.sql", Limits::new(20, 1024, 40_960)?).with_retention(policy)).await?;
//!
//! // A nightly dump at 23:00 UTC (00:00 in Warsaw, the next day) for ten nights.
//! for night in 0..10u8 {
//!     engine.upload(&me, &id, stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![night; 100]))])).await?;
//!     clock.advance(Duration::days(1));
//! }
//! // What the next commit would do, and why. The next upload (Nov 27 in Warsaw) will be the
//! // newest of its day and of week 48.
//! let plan = engine.retention_preview(&me, &id).await?;
//! let kept: Vec<(u64, String)> =
//!     plan.iter().filter(|d| d.mark == Mark::Keep).map(|d| (d.number, d.reasons.join(", "))).collect();
//! assert_eq!(kept, [
//!     (6, "weekly 2026-W47".to_owned()), // Saturday 23:00 UTC: Sunday Nov 22 in Warsaw
//!     (9, "daily 2026-11-25".to_owned()),
//!     (10, "daily 2026-11-26".to_owned()),
//! ]);
//! // The commits so far kept 6, 8, 9 and 10; the next one drops 8.
//! assert_eq!(plan.iter().map(|d| d.number).collect::<Vec<_>>(), [6, 8, 9, 10]);
//! let eight = plan.iter().find(|d| d.number == 8).unwrap();
//! assert_eq!((eight.mark, eight.reasons.as_slice()), (Mark::Evict, &["gfs: no rule keeps it".to_owned()][..]));
//!
//! // A legal hold: now it stays, and the explanation says why.
//! engine.protect_version(&me, &id, 8, ProtectionChange::hold()).await?;
//! let plan = engine.retention_preview(&me, &id).await?;
//! let eight = plan.iter().find(|d| d.number == 8).unwrap();
//! assert_eq!((eight.mark, eight.reasons.as_slice()), (Mark::Keep, &["held".to_owned()][..]));
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```
//!
//! ## After the upload: scrubs, quarantine, a lost catalog
//!
//! Bytes rot and catalogs get lost. [`Engine::scrub`] reads committed versions back (all,
//! a percentage, or those not verified for a while; throttled; resumable after a restart)
//! and **quarantines** a version whose bytes or object are gone: it stays listed, downloads
//! refuse it with [`Error::Corrupted`], and the audit log says why. Next to every version's
//! object the engine keeps a description ([`store::DESCRIPTION_SUFFIX`]), so
//! [`Engine::rebuild_catalog`] brings a lost catalog back from the store alone, or brings a
//! catalog restored from a snapshot up to date; its example is the whole drill.
//! [`Engine::import_version`] brings versions of another system in, keeping their numbers.
//! These read every version, so a rebuild and [`Engine::verify_collection_with`] report their
//! progress to a [`Progress`] of the caller's, at a bounded rate ([`ProgressTracker`]).
//!
//! A description is written after the catalog step that changes its version (a commit, a
//! deletion, a restore, a hold, a rotation), so a process can die in between. The step marks
//! the version in its own transaction, and [`Engine::recover`] writes the description of every
//! marked version, found from an index of the marks (the cost follows them, not the history).
//! A catalog lost in that window is still rebuilt without giving a number out twice: an
//! upload's intent stands where its description goes from its start, and the description of a
//! purged version goes only once a number mark or a newer description holds its number (see
//! [`Engine::rebuild_catalog`]).
//!
//! ## A second copy: replicas
//!
//! One store is one copy. A [`replica::Replica`] is another store that receives a
//! byte-identical copy of every committed version and its description, queued by the commit's
//! own audit event and copied by [`Engine::replicate`] (a batch per call; a host runs it in a
//! loop), each copy checked against the digest as it streams. Then a scrub or a download that
//! finds the primary's object missing or damaged copies it back from a replica whose copy
//! verifies instead of quarantining it, a deletion reaches the replica only after a delay
//! ([`Engine::restore_from_replica`] undoes one meanwhile), and a catalog lost with the primary
//! is rebuilt from the replica alone. [`Engine::replica_status`] says how far behind it is.
//! The [`replica`] module's example replicates a version.
//!
//! ## Knowing what happened: the audit log and alerts
//!
//! Every change is an [`AuditEvent`] appended in the change's own transaction, hash-chained to
//! the one before ([`audit`]); [`Engine::anchor_audit`] writes the chain's head to the store and
//! [`Engine::verify_audit`] finds a row changed, removed or rewritten behind the engine's back.
//! [`Engine::audit_events`] reads the log with permissions, and readers that must see every
//! event (a notification target) keep their place in the catalog ([`audit::LogCursor`],
//! [`Engine::claim_log_cursor`], [`Engine::advance_log_cursor`]): at least once, in order.
//! [`Engine::run_detectors`] is such a reader: it turns what happened and what did not (a
//! missed backup window, a version half the usual size, a burst of refusals) into alerts
//! ([`alerts`]) on the engine's [`Clock`], so tests move time instead of waiting:
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::alerts::AlertPolicy;
//! use backup_core::{Actor, CollectionSpec, Engine, Limits, ManualClock};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let clock = Arc::new(ManualClock::starting_now());
//! let engine = Engine::builder().clock(clock.clone()).build()?;
//! let (ci, id) = (Actor::user("ci"), "db".parse()?);
//! let alerts = AlertPolicy::default().with_stale_after(std::time::Duration::from_secs(86_400));
//! let spec = CollectionSpec::new("db-${version}", Limits::new(5, 1000, 5000)?).with_alerts(alerts);
//! engine.create_collection(&ci, &id, spec).await?;
//! engine.run_detectors("this-instance").await?;
//! clock.advance(chrono::Duration::hours(25)); // no backup for a day
//! let run = engine.run_detectors("this-instance").await?;
//! assert_eq!(run.alerts[0].action, "collection.stale");
//! assert!(engine.verify_audit().await?.is_intact());
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```
//!
//! ## Your own catalog
//!
//! A catalog provides storage and atomicity, not rules: [`Catalog::transact`](catalog::Catalog::transact) loads what a
//! [`protocol::StateQuery`] asks for, runs the decision once, and applies the
//! [`protocol::Mutation`]s it returns, all or nothing. The guide in [`catalog`] ("Implementing
//! a catalog") says what each method must guarantee, and `conformance::catalog` (feature
//! `conformance`) checks it: every catalog of this workspace passes the same suite, and so
//! does `examples/redb-catalog`, a catalog on redb written from the public API alone.
//!
//! ## Why it is built this way
//!
//! - **Streams all the way.** An upload flows through a [`QuotaStream`] (count, digest and
//!   content rule in one pass) into the store: one PUT for a body that fits in a part, a
//!   multipart put beyond; memory is bounded by the part size whatever the upload size. Downloads stream and verify as they flow.
//! - **The upload protocol keeps its invariants under faults.** A reservation (a pending row
//!   with a lease) is taken atomically before any byte is stored; the body goes to a fresh,
//!   never reused key; the commit assigns the number and applies the rotation in one catalog
//!   step; evicted objects are deleted only after it. Failures, cancellations (a dropped
//!   future) and crashes leave state that [`Engine::recover`] finishes. The invariants:
//!   - **I1** an acknowledged version is never lost through a later failed, cancelled,
//!     rejected or concurrent upload, nor through a crash at any step;
//!   - **I2** the committed total never exceeds the hard limit, and uploads in flight are
//!     bounded so that none of them can make it (see [`quota`] for the exact statement);
//!   - **I3** a version is visible only once committed, and a download returns exactly the
//!     committed bytes or fails loudly;
//!   - **I4** version numbers are unique and increasing, in commit order, without gaps left
//!     by failed uploads, from 1 to [`MAX_VERSION_NUMBER`]; a catalog rebuilt from the store
//!     after a loss gives out none of them again;
//!   - **I5** after `recover()`, no abandoned upload and no object the catalog recorded as its
//!     garbage remain; an object the catalog does not know is never deleted.
//! - **The arithmetic lives in one place.** Catalogs provide atomicity; the decisions of
//!   [`protocol`] say what to write, so every catalog enforces the same rules.
//! - **Decisions are pure.** Rotation strategies and quota arithmetic are functions of their
//!   inputs and the time; tests drive a [`ManualClock`].
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
#![cfg_attr(
    feature = "testing",
    doc = "| `testing` | [`testing`]: fault-injecting store and catalog wrappers, invariant checks |"
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "| `testing` | `testing`: fault-injecting store and catalog wrappers, invariant checks |"
)]
#![cfg_attr(
    feature = "conformance",
    doc = "| `conformance` | [`conformance`]: the suites every catalog and store must pass |"
)]
#![cfg_attr(
    not(feature = "conformance"),
    doc = "| `conformance` | `conformance`: the suites every catalog and store must pass |"
)]
#![deny(missing_docs)]

pub mod alerts;
pub mod audit;
mod authz;
pub mod catalog;
mod clock;
mod content_rule;
mod digest;
mod engine;
mod error;
pub mod health;
mod id;
pub mod lock;
mod progress;
pub mod quota;
mod quota_stream;
pub mod replica;
pub mod rotation;
mod session;
mod spec;
pub mod store;
mod time;
mod version;

/// The catalog's decisions, under their old path inside this crate.
pub(crate) use catalog::protocol;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use async_trait::async_trait;
pub use audit::AuditEvent;
pub use authz::{Action, Actor, AllowAll, Authorizer, AuthzRequest, Permit};
pub use catalog::VersionQuery;
pub use catalog::memory::MemoryCatalog;
/// The date and time crate of [`Clock`] and [`Timestamp`], re-exported so that callers use the
/// same version.
pub use chrono;
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use content_rule::{ContentRule, ContentRules, MAX_RULE_WINDOW};
pub use digest::{Digest, DigestAlgorithm, Hasher};
pub use engine::{
    DEFAULT_TRASH_RETENTION, Download, Engine, EngineBuilder, IDEMPOTENCY_KEY, IDEMPOTENCY_WINDOW, ImportOutcome,
    ImportedVersion, MAX_IDEMPOTENCY_KEY_LEN, Page, RebuildMode, RebuildOptions, RebuildReport, RecoveryReport,
    ScrubOptions, ScrubReport, ScrubSample, StagedUpload, UploadOptions, Usage, VersionCheck, check_idempotency_key,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use id::{CollectionId, IdRule, MAX_COLLECTION_ID_LEN, RepositoryId, SessionId, VersionId};
pub use lock::{LockMode, LockPolicy, ObjectLocks, VersionLock};
/// The object store crate the engine's [`Engine::store`] comes from, re-exported so that
/// callers build stores with the same version.
pub use object_store;
pub use progress::{Progress, ProgressTracker, ProgressUpdate};
pub use protocol::ProtectionChange;
pub use quota_stream::{QuotaStream, StreamSummary};
pub use rotation::RotationStrategy;
pub use session::Session;
pub use spec::{
    CollectionSpec, FilenameTemplate, Limits, MAX_DESCRIPTION_LEN, MAX_SIZE, MAX_TEMPLATE_LEN, RetentionSpec,
    VERSION_PLACEHOLDER,
};
pub use time::Timestamp;
pub use version::{
    Collection, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_VERSION_NUMBER, Metadata, Uploader, Version,
    VersionSelector, VersionState, check_metadata, check_version_number,
};
