//! The rules of the catalog, once: pure decisions that read a [`LoadedState`] and say what to
//! write, as [`Mutation`]s.
//!
//! Every atomic step of the engine (a reservation, a commit, a deletion, a session
//! revocation, …) is a [`StateQuery`] and a decision. A [`crate::catalog::Catalog`] provides the
//! atomicity only: in one transaction (or under one lock) it loads what the query asks for,
//! calls the decision, and applies the mutations it returns, all or nothing. So every catalog
//! enforces the same rules, and a third-party catalog implements storage, not arithmetic.
//!
//! The state a step loads is bounded: a collection's row with its [`Counters`] (committed
//! count and bytes, overage, next number), its pending uploads, and only the committed
//! versions the retention strategy asks for ([`crate::RotationStrategy::needs`]). The cost of
//! a commit does not grow with the collection's history.
//!
//! The decisions are plain functions, tested without any catalog:
//!
//! ```
//! use backup_core::catalog::protocol::{self, CollectionState, Counters, LoadedState, Mutation, ReserveRequest, SizeHint};
//! use backup_core::{Collection, CollectionSpec, Limits, Timestamp, Uploader, VersionId};
//! use chrono::Duration;
//!
//! let now = Timestamp::UNIX_EPOCH;
//! let spec = CollectionSpec::new("db-${version}", Limits::new(2, 10, 30)?);
//! let collection = Collection::new("db".parse()?, spec, now);
//! let state = LoadedState::new(
//!     Some(CollectionState::new(collection, Counters::empty(), vec![], vec![], vec![])),
//!     vec![], vec![], None,
//! );
//! let request = ReserveRequest::new(
//!     VersionId::generate(), "db".parse()?, "data/db/1".into(), Uploader::user("ci"),
//!     SizeHint::exact(15), now, now + Duration::minutes(1),
//! );
//! let decision = protocol::decide_reservation(&state, &request, &Default::default())?;
//! assert!(matches!(&decision.mutations[..], [Mutation::InsertPending(p)] if (p.reserved, p.pool_share) == (15, 5)));
//! # Ok::<(), backup_core::Error>(())
//! ```

mod collections;
mod descriptions;
mod import;
mod integrity;
mod mutation;
mod protection;
mod repository;
mod retention;
mod sessions;
mod state;
mod upload;
mod versions;

pub use collections::lock_policy_weakened;
pub use collections::{
    CollectionChange, SpecRules, decide_create_collection, decide_delete_collection, decide_put_collection,
    decide_update_collection, update_needs,
};
pub use descriptions::{decide_described, description_mark};
pub use import::ImportCheck;
pub use integrity::{Adoption, Verification, decide_adopt_versions, decide_resume_numbering, decide_verification};
pub use mutation::Mutation;
pub use protection::{ProtectionChange, decide_lock, decide_protect};
pub use repository::decide_claim_repository;
pub use retention::{
    RetentionOutcome, allowance_now, decide_apply_retention, held_space_reason, plan_retention, retention_needs,
};
pub use sessions::{
    decide_delete_expired_sessions, decide_insert_session, decide_revoke_session, decide_revoke_user_sessions,
};
pub use state::{
    ChooseVersions, CollectionQuery, CollectionState, Counters, LoadedState, StateQuery, VersionRange, VersionRow,
    VersionsNeeded,
};
pub use upload::{
    AbortCondition, AbortOutcome, CommitRequest, Committed, GROWTH_STEP, GrowRequest, Growth, Renewal, ReserveRequest,
    SizeHint, decide_abort, decide_commit, decide_growth, decide_renewal, decide_reservation, decide_staging,
};
pub use versions::{LockBypass, decide_purge, decide_restore, decide_trash};

/// A decision's answer: what to write, and what the caller learns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision<T> {
    /// The writes, applied in order, all or nothing.
    pub mutations: Vec<Mutation>,
    /// What the step returns once applied.
    pub output: T,
}

impl<T> Decision<T> {
    /// A decision.
    pub fn new(mutations: Vec<Mutation>, output: T) -> Self {
        Decision { mutations, output }
    }
}

/// The collection a state must hold, or [`crate::Error::CollectionNotFound`].
pub(crate) fn collection_of<'a>(
    state: &'a LoadedState,
    id: &crate::CollectionId,
) -> crate::Result<&'a CollectionState> {
    state
        .collection
        .as_ref()
        .filter(|c| &c.collection.id == id)
        .ok_or_else(|| crate::Error::CollectionNotFound { collection: id.clone() })
}
