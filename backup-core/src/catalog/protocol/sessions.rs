//! Steps on the sessions registry.

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::protocol::Decision;
use crate::protocol::mutation::Mutation;
use crate::protocol::state::LoadedState;
use crate::session::Session;
use crate::time::Timestamp;

/// Decides the registration of a session.
///
/// # Errors
/// [`Error::AlreadyExists`] if the id is taken (the same token issued twice).
pub fn decide_insert_session(state: &LoadedState, session: &Session) -> Result<Decision<()>> {
    if state.session(&session.id).is_some() {
        return Err(Error::AlreadyExists { what: format!("session {}", session.id) });
    }
    Ok(Decision::new(vec![Mutation::InsertSession(session.clone())], ()))
}

/// Decides the revocation of one session (revoking twice keeps the first time); returns it
/// as it becomes.
///
/// # Errors
/// [`Error::SessionNotFound`].
pub fn decide_revoke_session(state: &LoadedState, id: &SessionId, audit: &AuditEvent) -> Result<Decision<Session>> {
    let s = state.session(id).ok_or_else(|| Error::SessionNotFound { session: id.to_string() })?;
    let mut revoked = s.clone();
    revoked.revoked_at.get_or_insert(audit.at);
    Ok(Decision::new(
        vec![Mutation::RevokeSession { id: id.clone(), at: audit.at }, Mutation::AppendAudit(audit.clone())],
        revoked,
    ))
}

/// Decides the revocation of every active session of a user (loaded with
/// [`crate::protocol::StateQuery::sessions_of`]); returns how many.
///
/// # Errors
/// None.
pub fn decide_revoke_user_sessions(state: &LoadedState, user: &str, audit: &AuditEvent) -> Result<Decision<u64>> {
    let mut mutations: Vec<Mutation> = state
        .sessions
        .iter()
        .filter(|s| s.user == user && s.revoked_at.is_none())
        .map(|s| Mutation::RevokeSession { id: s.id.clone(), at: audit.at })
        .collect();
    let n = mutations.len() as u64;
    mutations.push(Mutation::AppendAudit(audit.clone()));
    Ok(Decision::new(mutations, n))
}

/// Decides the removal of sessions expired before `before`: a revoked or expired session
/// refuses its token whether or not its row exists, so old rows only take room.
///
/// # Errors
/// None.
pub fn decide_delete_expired_sessions(before: Timestamp) -> Result<Decision<()>> {
    Ok(Decision::new(vec![Mutation::DeleteSessionsExpiredBefore(before)], ()))
}
