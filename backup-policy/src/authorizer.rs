//! [`PolicyAuthorizer`]: the core's [`Authorizer`] on the policy — users, access keys, token
//! scopes, ACLs, windows, IP restrictions — failing closed.

use std::sync::Arc;

use async_trait::async_trait;
use backup_core::health::Window;
use backup_core::{Action, Authorizer, AuthzRequest, Collection, Permit};

use crate::decision::{Asker, Subject, decide};
use crate::directory::{CollectionPolicy, Directory};
use crate::error::Error;
use crate::identity::COLLECTION;
use crate::role::Permission;
use crate::token::VerifiedToken;
use crate::window::any_open;

/// Decides engine requests with the [`Directory`]'s users and collection policies.
///
/// The actor must be a user of the directory, not deactivated, connecting from an allowed
/// address; an access key named by the actor must still exist; a [`VerifiedToken`] in the
/// actor's extensions must be for the same user and key, and its scope narrows the decision.
/// Anything else is refused: a removed key or a deleted user never falls back to wider rights.
///
/// | engine action | permission |
/// |---|---|
/// | upload | `file.upload`, and `file.upload-anytime` outside every backup window |
/// | download | `file.download` |
/// | list versions, read or list collections | upload or download (or collection management) |
/// | delete or restore a version | `file.delete` |
/// | create, change, delete a collection | `collection.manage` |
#[derive(Debug, Clone)]
pub struct PolicyAuthorizer {
    directory: Arc<Directory>,
}

impl PolicyAuthorizer {
    /// An authorizer reading `directory`.
    pub fn new(directory: Arc<Directory>) -> Self {
        PolicyAuthorizer { directory }
    }
}

#[async_trait]
impl Authorizer for PolicyAuthorizer {
    async fn authorize(&self, request: &AuthzRequest<'_>) -> backup_core::Result<Permit> {
        Ok(self.decide(request)?)
    }

    /// The windows of the collection's policy in the directory's current set: those that open
    /// its uploads are those its health checks.
    async fn backup_windows(&self, collection: &Collection) -> backup_core::Result<Vec<Arc<dyn Window>>> {
        let set = self.directory.snapshot();
        let windows = set.collections.get(&collection.id).map(|p| p.windows.as_slice()).unwrap_or_default();
        Ok(windows.iter().map(|w| Arc::new(w.clone()) as Arc<dyn Window>).collect())
    }
}

impl PolicyAuthorizer {
    /// The decision, as a pure function of the request and the directory's current set.
    ///
    /// # Errors
    /// The refusal.
    pub fn decide(&self, request: &AuthzRequest<'_>) -> Result<Permit, Error> {
        let set = self.directory.snapshot();
        let actor = request.actor;
        let token = actor.extensions.get::<VerifiedToken>();
        let user = match token {
            // The token's own checks: user, key, credential, address.
            Some(t) => {
                if t.user() != actor.user || t.access_key() != actor.access_key.as_deref() {
                    return Err(Error::unauthenticated("the token does not belong to this actor"));
                }
                if t.is_single_use() && request.action != Action::Upload {
                    return Err(Error::denied("a one-time upload token may only upload"));
                }
                set.admit(t, actor.client_addr)?
            }
            None => {
                let user = set.active_user(&actor.user)?;
                user.check_address(actor.client_addr)?;
                user
            }
        };
        let access_key = match &actor.access_key {
            None => None,
            Some(name) => Some(user.access_key(name).ok_or_else(|| {
                Error::unauthenticated(format!("access key {name} of user {} no longer exists", user.name))
            })?),
        };
        let asker = Asker { user, access_key, scope: token.map(VerifiedToken::scope) };
        let empty = CollectionPolicy::default();
        let policy = request.collection.map(|c| set.collections.get(&c.id).unwrap_or(&empty));
        let subject =
            request.collection.zip(policy).map(|(c, p)| Subject { kind: COLLECTION, name: c.id.as_str(), acl: &p.acl });
        let subject = subject.as_ref();
        let one_of = |perms: &[Permission]| -> Result<(), Error> {
            let mut reason = String::new();
            for p in perms {
                match decide(&asker, subject, *p) {
                    Ok(()) => return Ok(()),
                    Err(r) if reason.is_empty() => reason = r,
                    Err(_) => {}
                }
            }
            Err(Error::denied(reason))
        };
        match request.action {
            Action::Upload => {
                one_of(&[Permission::Upload])?;
                let windows = policy.map(|p| p.windows.as_slice()).unwrap_or(&[]);
                if !any_open(windows, request.now) && decide(&asker, subject, Permission::UploadAnytime).is_err() {
                    return Err(Error::outside_window(
                        "backup window does not allow you to send a backup at this time. You need a token that has \
                         a special permission 'uploadsAnytime'",
                        windows.iter().map(ToString::to_string).collect(),
                    ));
                }
                if let Some(t) = token.filter(|t| t.is_single_use()) {
                    return Ok(Permit::consuming(t.session().clone()));
                }
                // A logout during the upload stops it from becoming a version.
                return Ok(Permit::allow().requiring(token.map(|t| t.session().clone())));
            }
            Action::Download => one_of(&[Permission::Download])?,
            Action::ListVersions | Action::ReadCollection | Action::ListCollections => {
                one_of(&[Permission::Upload, Permission::Download, Permission::ManageCollections])?
            }
            Action::DeleteVersion | Action::RestoreVersion => one_of(&[Permission::DeleteVersions])?,
            Action::CreateCollection
            | Action::UpdateCollection
            | Action::DeleteCollection
            | Action::ProtectVersion
            | Action::LockVersion
            | Action::VerifyVersions => one_of(&[Permission::ManageCollections])?,
            // Only by the dedicated role: a stolen administrator's token cannot lift locks.
            Action::BypassGovernance => one_of(&[Permission::BypassGovernance])?,
            // A collection's log: its managers. The whole log (logins and tokens included):
            // what only a systemAdmin holds across the repository.
            Action::ReadAudit if subject.is_some() => one_of(&[Permission::ManageCollections])?,
            Action::ReadAudit => {
                one_of(&[Permission::ManageCollections])?;
                one_of(&[Permission::ViewProfiles])?;
            }
            other => return Err(Error::denied(format!("{} is not allowed by this policy", other.name()))),
        }
        Ok(Permit::allow())
    }
}
