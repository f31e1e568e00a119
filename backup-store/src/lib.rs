//! # backup-store
//!
//! Durable [`backup_core::Catalog`] implementations and object stores built from URLs.
//! (Being built; the in-memory catalog lives in `backup-core`.)

#![deny(missing_docs)]

pub use backup_core::MemoryCatalog;
