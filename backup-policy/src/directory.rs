//! [`Directory`]: the users and the collections' policies, swapped atomically on reload, and
//! password authentication.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use backup_core::CollectionId;

use crate::error::{Error, Result};
use crate::identity::{AclEntry, LoginName, User};
use crate::password::{StoredPassword, dummy};
use crate::token::VerifiedToken;
use crate::window::BackupWindow;

/// The policy part of a collection: windows, ACL, health code. (The rest of a collection is
/// the core's [`backup_core::CollectionSpec`].)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionPolicy {
    /// Backup windows; uploads outside all of them need `uploadsAnytime`. None: any time.
    pub windows: Vec<BackupWindow>,
    /// Users and their roles on the collection.
    pub acl: Vec<AclEntry>,
    /// The SHA-256 of the code that opens the collection's health endpoint, if it has one.
    pub health_code_sha256: Option<[u8; 32]>,
}

/// (user, access key, stored PHC string): which stored hash an upgraded one replaces.
type UpgradeKey = (String, Option<String>, String);

/// Users and collection policies as of one load.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Collection policies by collection id.
    pub collections: BTreeMap<CollectionId, CollectionPolicy>,
}

impl PolicySet {
    /// The user a verified token acts for, if the token may still act: the user exists and
    /// is active, the token's access key still exists, the credential the login proved (the
    /// password or key) has not changed since, and `client` is an address the user may use.
    /// Every request made with a token passes here (the HTTP layer for its own routes, the
    /// [`crate::PolicyAuthorizer`] for the engine's).
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] for a token that no longer stands for its user;
    /// [`backup_core::Error::PermissionDenied`] for an address outside `restrictByIP`.
    pub fn admit(&self, token: &VerifiedToken, client: Option<IpAddr>) -> Result<&User> {
        let user = self.active_user(token.user())?;
        let Some(credential) = user.credential(token.access_key()) else {
            return Err(Error::unauthenticated(format!(
                "access key {} of user {} no longer exists",
                token.access_key().unwrap_or_default(),
                user.name
            )));
        };
        if token.credential() != Some(credential.as_str()) {
            return Err(Error::unauthenticated("the password or access key changed since the login"));
        }
        user.check_address(client)?;
        Ok(user)
    }

    /// The user named `name`, if it exists and is not deactivated.
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] otherwise.
    pub fn active_user(&self, name: &str) -> Result<&User> {
        let user = self.users.get(name).ok_or_else(|| Error::unauthenticated(format!("user {name} does not exist")))?;
        if user.deactivated {
            return Err(Error::unauthenticated(format!("user {} is deactivated", user.name)));
        }
        Ok(user)
    }
}

/// Who logged in: the user as of the login, and the access key used.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user.
    pub user: User,
    /// The access key of the login, if any.
    pub access_key: Option<String>,
}

/// The users and collection policies in force, replaceable as a whole (a manifest reload)
/// while requests read them.
#[derive(Debug)]
pub struct Directory {
    current: RwLock<Arc<PolicySet>>,
    /// Stronger hashes of passwords whose stored hash was weak, computed at login: the stored
    /// form (a manifest) is read-only here. Keyed by user, access key and the stored PHC.
    upgraded: Mutex<HashMap<UpgradeKey, StoredPassword>>,
    /// Password hashes computed at once: each takes the hash's memory (64 MiB with the
    /// default parameters), so a burst of logins waits instead of exhausting memory.
    hashing: tokio::sync::Semaphore,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new(PolicySet::default())
    }
}

impl Directory {
    /// A directory holding `set`. As many password hashes run at once as there are CPUs.
    pub fn new(set: PolicySet) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Directory {
            current: RwLock::new(Arc::new(set)),
            upgraded: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(cpus),
        }
    }

    /// The set in force.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the set: users removed or deactivated lose access at their next request.
    pub fn replace(&self, set: PolicySet) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }

    /// Checks a login name and password. Unknown users and keys cost as much time as known
    /// ones (a dummy hash is verified), so timing tells nothing; the hashing runs on a blocking
    /// thread, at most one per CPU at a time. A weak stored hash is upgraded (kept in memory) after a successful login.
    ///
    /// # Errors
    /// [`backup_core::Error::Unauthenticated`] for wrong credentials, a deactivated user or a removed key
    /// (all with the same message but deactivation); [`backup_core::Error::PermissionDenied`] when the
    /// client address is outside the user's `restrict_by_ip`.
    pub async fn authenticate(
        &self,
        login: &LoginName,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Authenticated> {
        let set = self.snapshot();
        let user = set.users.get(&login.user);
        let stored: Option<StoredPassword> = user.and_then(|u| match &login.access_key {
            None => Some(u.password.clone()),
            Some(k) => u.access_key(k).map(|k| k.password.clone()),
        });
        let upgrade_key =
            stored.as_ref().and_then(|s| s.to_phc()).map(|phc| (login.user.clone(), login.access_key.clone(), phc));
        let effective = upgrade_key
            .as_ref()
            .and_then(|k| self.upgraded.lock().unwrap_or_else(|p| p.into_inner()).get(k).cloned())
            .or(stored);
        let password = password.to_owned();
        let _permit = self.hashing.acquire().await.map_err(|e| Error::internal(format!("password hashing: {e}")))?;
        let (ok, upgraded) = tokio::task::spawn_blocking(move || {
            let target = effective.as_ref().unwrap_or(dummy());
            // Always hash (an unknown name must cost what a known one costs), and never less
            // than the dummy's work: a weak stored hash would tell its user exists.
            let verified = target.verify(password.as_bytes());
            if effective.as_ref().is_some_and(StoredPassword::needs_upgrade) {
                let _ = dummy().verify(password.as_bytes());
            }
            let ok = effective.is_some() && verified;
            let upgraded =
                (ok && target.needs_upgrade()).then(|| StoredPassword::hash(password.as_bytes()).ok()).flatten();
            (ok, upgraded)
        })
        .await
        .map_err(|e| Error::internal(format!("password task: {e}")))?;
        let (Some(user), true) = (user, ok) else {
            return Err(Error::unauthenticated("incorrect Username or Password"));
        };
        if let (Some(key), Some(new)) = (upgrade_key, upgraded) {
            self.upgraded.lock().unwrap_or_else(|p| p.into_inner()).insert(key, new);
        }
        if user.deactivated {
            return Err(Error::unauthenticated(format!("user {} is deactivated", user.name)));
        }
        if !user.allows_address(client) {
            return Err(Error::denied(format!(
                "user {} may not log in from {}",
                user.name,
                client.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string())
            )));
        }
        Ok(Authenticated { user: user.clone(), access_key: login.access_key.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AccessKey;
    use crate::role::Role;

    fn set(password: &StoredPassword) -> PolicySet {
        let mut s = PolicySet::default();
        let u = User {
            name: "some-user".into(),
            email: "u@example.org".into(),
            roles: vec![Role::CollectionManager],
            password: password.clone(),
            access_keys: vec![AccessKey { name: "uploader".into(), password: password.clone(), objects: vec![] }],
            restrict_by_ip: vec!["127.0.0.0/8".parse().unwrap()],
            deactivated: false,
        };
        s.users.insert(u.name.clone(), u);
        s
    }

    #[tokio::test]
    async fn logins_check_password_key_address_and_deactivation() {
        let pw = StoredPassword::hash(b"pw").unwrap();
        let d = Directory::new(set(&pw));
        let local = Some("127.0.0.1".parse().unwrap());
        let ok = d.authenticate(&"some-user".parse().unwrap(), "pw", local).await.unwrap();
        assert_eq!(ok.access_key, None);
        let ok = d.authenticate(&"some-user$uploader".parse().unwrap(), "pw", local).await.unwrap();
        assert_eq!(ok.access_key.as_deref(), Some("uploader"));
        for (login, password) in [("some-user", "wrong"), ("nobody", "pw"), ("some-user$removed", "pw")] {
            let e = d.authenticate(&login.parse().unwrap(), password, local).await.unwrap_err();
            assert_eq!(e.to_string(), "unauthenticated: incorrect Username or Password", "{login}");
        }
        let e =
            d.authenticate(&"some-user".parse().unwrap(), "pw", Some("10.0.0.1".parse().unwrap())).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::PermissionDenied);
        let mut s = set(&pw);
        s.users.get_mut("some-user").unwrap().deactivated = true;
        d.replace(s);
        let e = d.authenticate(&"some-user".parse().unwrap(), "pw", local).await.unwrap_err();
        assert!(e.to_string().contains("deactivated"), "{e}");
    }

    #[tokio::test]
    async fn weak_hashes_are_upgraded_after_login() {
        let weak = StoredPassword::parse("$argon2i$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // Make the weak hash real: derive it for "pw" with the same parameters and salt.
        let weak = {
            let StoredPassword::Argon2(_) = &weak else { unreachable!() };
            let params = argon2::Params::new(4096, 1, 1, Some(16)).unwrap();
            let mut out = [0u8; 16];
            argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
                .hash_password_into(b"pw", b"saltsalt", &mut out)
                .unwrap();
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
            StoredPassword::parse(&format!(
                "$argon2i$v=19$m=4096,t=1,p=1${}${}",
                b64.encode(b"saltsalt"),
                b64.encode(out)
            ))
            .unwrap()
        };
        assert!(weak.needs_upgrade());
        let d = Directory::new(set(&weak));
        d.authenticate(&"some-user".parse().unwrap(), "pw", Some("127.0.0.1".parse().unwrap())).await.unwrap();
        let upgraded = d.upgraded.lock().unwrap().values().next().cloned().expect("upgraded");
        assert!(!upgraded.needs_upgrade() && upgraded.verify(b"pw"));
        // The next login uses the upgraded hash.
        d.authenticate(&"some-user".parse().unwrap(), "pw", Some("127.0.0.1".parse().unwrap())).await.unwrap();
    }
}
