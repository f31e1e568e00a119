//! Tools to break the engine on purpose (feature `testing`): fault-injecting wrappers for the
//! object store and the catalog, bodies that fail at a chosen byte, and checks of the
//! invariants I1–I5 (and of the descriptions that keep I4 across a lost catalog).
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::testing::{FaultMode, Faults, FaultyCatalog, FaultyStore};
//! use backup_core::{Engine, MemoryCatalog};
//!
//! let faults = Faults::new();
//! let engine = Engine::builder()
//!     .catalog(Arc::new(FaultyCatalog::new(Arc::new(MemoryCatalog::new()), faults.clone())))
//!     .store(Arc::new(FaultyStore::new(Arc::new(object_store::memory::InMemory::new()), faults.clone())))
//!     .build()?;
//! faults.fail_call(3, FaultMode::Before); // the third call from now, to either, fails
//! # Ok::<(), backup_core::Error>(())
//! ```

mod body;
mod catalog;
mod faults;
mod invariants;
mod store;

pub use body::{body_of, failing_body, pattern};
pub use catalog::FaultyCatalog;
pub use faults::{FaultMode, Faults};
pub use invariants::{Violation, check_described, check_invariants, check_limits, check_recovered};
pub use store::FaultyStore;
