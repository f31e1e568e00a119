//! [`Requester`]: who acts on sessions, and how far.

use backup_core::SessionId;

use crate::identity::User;

/// Who acts on sessions: a user with its roles, limited to one session for a narrowed token
/// (see [`crate::VerifiedToken::requester`]).
#[derive(Debug, Clone)]
pub struct Requester {
    user: User,
    only_session: Option<SessionId>,
}

impl From<&User> for Requester {
    /// A user acting with all its rights (an administrator's tool, a full login).
    fn from(user: &User) -> Self {
        Requester { user: user.clone(), only_session: None }
    }
}

impl From<&Requester> for Requester {
    fn from(r: &Requester) -> Self {
        r.clone()
    }
}

impl Requester {
    /// `user` acting through a narrowed token (an access key's, a scoped or a one-time one):
    /// none of the user's global roles, and only the token's own `session`.
    pub(super) fn narrowed(user: &User, session: SessionId) -> Self {
        Requester { user: User { roles: Vec::new(), ..user.clone() }, only_session: Some(session) }
    }

    /// The user as far as it acts on sessions (a narrowed token's has no global roles).
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The one session a narrowed token may see and revoke.
    pub fn only_session(&self) -> Option<&SessionId> {
        self.only_session.as_ref()
    }
}
