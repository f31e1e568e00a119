//! The repository identity in the catalog.

use crate::error::{Error, Result};
use crate::id::RepositoryId;
use crate::protocol::Decision;
use crate::protocol::mutation::Mutation;
use crate::protocol::state::LoadedState;

/// Decides whether a catalog takes `id` as its repository id: one without an id takes it,
/// one with the same id keeps it; one with another id refuses.
///
/// # Errors
/// [`Error::Conflict`] naming both ids when the catalog belongs to another repository.
pub fn decide_claim_repository(state: &LoadedState, id: RepositoryId) -> Result<Decision<RepositoryId>> {
    match state.repository {
        None => Ok(Decision::new(vec![Mutation::SetRepository(id)], id)),
        Some(current) if current == id => Ok(Decision::new(vec![], id)),
        Some(current) => Err(Error::conflict(format!("the catalog belongs to repository {current}, not {id}"))),
    }
}
