//! Users, access keys, login names, collection ACLs and token scopes.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::password::StoredPassword;
use crate::role::Role;

/// The kind of object grants and scopes name; backup-repository has only collections.
pub const COLLECTION: &str = "collection";

/// A login name, `user` or `user$accessKey`, split at the last `$`.
///
/// ```
/// use backup_policy::LoginName;
///
/// let l: LoginName = "some-user$uploader".parse()?;
/// assert_eq!((l.user.as_str(), l.access_key.as_deref()), ("some-user", Some("uploader")));
/// let l: LoginName = "a$b$c".parse()?;
/// assert_eq!((l.user.as_str(), l.access_key.as_deref()), ("a$b", Some("c")));
/// # Ok::<(), backup_policy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginName {
    /// The user.
    pub user: String,
    /// The access key, if the login named one.
    pub access_key: Option<String>,
}

/// The longest login name accepted, in bytes.
pub(crate) const MAX_LOGIN_LEN: usize = 512;

impl std::str::FromStr for LoginName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.len() > MAX_LOGIN_LEN {
            return Err(Error::invalid("login name", format!("longer than {MAX_LOGIN_LEN} bytes")));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid("login name", "contains control characters"));
        }
        let (user, key) = match s.rsplit_once('$') {
            Some((u, k)) => (u, Some(k)),
            None => (s, None),
        };
        if user.is_empty() || key.is_some_and(str::is_empty) {
            return Err(Error::invalid("login name", "expected user or user$accessKey"));
        }
        Ok(LoginName { user: user.to_owned(), access_key: key.map(str::to_owned) })
    }
}

/// A grant on one object: roles in the scope of, say, one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectGrant {
    /// The object's kind (`collection`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The object's name (a collection id).
    pub name: String,
    /// The roles granted on it.
    pub roles: Vec<Role>,
}

impl ObjectGrant {
    /// Roles on a collection.
    pub fn collection(name: impl Into<String>, roles: impl Into<Vec<Role>>) -> Self {
        ObjectGrant { kind: COLLECTION.to_owned(), name: name.into(), roles: roles.into() }
    }

    /// Whether it names this object.
    pub fn names(&self, kind: &str, name: &str) -> bool {
        self.kind == kind && self.name == name
    }
}

/// An access key: a second password of a user, with roles limited to some objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// Its name (the part after `$` in the login).
    pub name: String,
    /// Its password.
    pub password: StoredPassword,
    /// What it may do, per object; nothing else.
    pub objects: Vec<ObjectGrant>,
}

impl AccessKey {
    /// A key named `name` (logins as `user$name`) with its own password, granting nothing
    /// until [`AccessKey::with_collection`] adds a collection.
    pub fn new(name: impl Into<String>, password: StoredPassword) -> Self {
        AccessKey { name: name.into(), password, objects: Vec::new() }
    }

    /// Also grants `roles` on the collection `id` (and nothing else on it).
    pub fn with_collection(mut self, id: impl Into<String>, roles: impl IntoIterator<Item = Role>) -> Self {
        self.objects.push(ObjectGrant::collection(id, roles.into_iter().collect::<Vec<_>>()));
        self
    }

    /// The roles this key has on an object (none when it does not name it).
    pub fn roles_on(&self, kind: &str, name: &str) -> Vec<Role> {
        self.objects.iter().filter(|o| o.names(kind, name)).flat_map(|o| o.roles.iter().copied()).collect()
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The e-mail address.
    pub email: String,
    /// Roles on everything.
    pub roles: Vec<Role>,
    /// The password.
    pub password: StoredPassword,
    /// Access keys.
    pub access_keys: Vec<AccessKey>,
    /// Where the user may connect from; empty means anywhere.
    pub restrict_by_ip: Vec<IpNet>,
    /// A deactivated user can neither log in nor use tokens issued before.
    pub deactivated: bool,
}

impl User {
    /// An active user named `name` with `password` ([`StoredPassword::Disabled`]: no password
    /// login), no e-mail address, no global roles, no access keys, allowed from anywhere: a
    /// `BackupUser` manifest with only `metadata.name` and a password. Nothing is checked here;
    /// [`crate::manifest::Definitions::load`] checks it as it checks a manifest.
    pub fn new(name: impl Into<String>, password: StoredPassword) -> Self {
        User {
            name: name.into(),
            email: String::new(),
            roles: Vec::new(),
            password,
            access_keys: Vec::new(),
            restrict_by_ip: Vec::new(),
            deactivated: false,
        }
    }

    /// Sets the e-mail address (`spec.email`).
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = email.into();
        self
    }

    /// Sets the roles on everything (`spec.roles`).
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.roles = roles.into_iter().collect();
        self
    }

    /// Adds an access key (`spec.accessKeys`).
    pub fn with_access_key(mut self, key: AccessKey) -> Self {
        self.access_keys.push(key);
        self
    }

    /// Sets the addresses and ranges the user may connect from (`spec.restrictByIP`); none
    /// means anywhere.
    pub fn with_restrict_by_ip(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.restrict_by_ip = nets.into_iter().collect();
        self
    }

    /// Deactivates the user, or not (`spec.deactivated`).
    pub fn with_deactivated(mut self, deactivated: bool) -> Self {
        self.deactivated = deactivated;
        self
    }

    /// The access key with this name.
    pub fn access_key(&self, name: &str) -> Option<&AccessKey> {
        self.access_keys.iter().find(|k| k.name == name)
    }

    /// The fingerprint of the credential a login with this user (or its access key) proves,
    /// or `None` for a key it does not have. See [`crate::StoredPassword::fingerprint`].
    pub fn credential(&self, access_key: Option<&str>) -> Option<String> {
        match access_key {
            None => Some(format!("user:{}", self.password.fingerprint())),
            Some(k) => self.access_key(k).map(|k| format!("key:{k}:{}", k.password.fingerprint(), k = k.name)),
        }
    }

    /// Refuses an address this user may not connect from.
    ///
    /// # Errors
    /// [`backup_core::Error::PermissionDenied`] for an address outside `restrictByIP`.
    pub fn check_address(&self, addr: Option<IpAddr>) -> Result<()> {
        if self.allows_address(addr) {
            Ok(())
        } else {
            Err(Error::denied(format!("user {} may not connect from this address", self.name)))
        }
    }

    /// Whether `addr` may be used by this user.
    pub fn allows_address(&self, addr: Option<IpAddr>) -> bool {
        if self.restrict_by_ip.is_empty() {
            return true;
        }
        match addr {
            Some(a) => self.restrict_by_ip.iter().any(|net| net.contains(&canonical(a))),
            None => false,
        }
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:1.2.3.4`) compares as IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// One entry of a collection's access control list: a user and its roles on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    /// The user.
    pub user: String,
    /// Its roles on the collection.
    pub roles: Vec<Role>,
}

/// The scope a token is limited to (backup-repository's `operationsScope`): per object, the
/// roles the token may use. An empty scope does not limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationsScope {
    /// The objects and roles. `null` (Go's nil slice) reads as none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub elements: Vec<ObjectGrant>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<ObjectGrant>, D::Error> {
    Ok(Option::<Vec<ObjectGrant>>::deserialize(d)?.unwrap_or_default())
}

impl OperationsScope {
    /// Whether it limits anything.
    pub fn is_limiting(&self) -> bool {
        !self.elements.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_nil_scope_is_no_scope() {
        let scope: OperationsScope = serde_json::from_str(r#"{"elements": null}"#).unwrap();
        assert!(!scope.is_limiting());
        let scope: OperationsScope = serde_json::from_str("{}").unwrap();
        assert!(!scope.is_limiting());
    }

    /// backup-repository's `TestNewUserIdentityFromString*`.
    #[test]
    fn login_names_split_at_the_last_dollar() {
        let l: LoginName = "hello$161".parse().unwrap();
        assert_eq!((l.user.as_str(), l.access_key.as_deref()), ("hello", Some("161")));
        let l: LoginName = "my-name-is-borat".parse().unwrap();
        assert_eq!((l.user.as_str(), l.access_key), ("my-name-is-borat", None));
        for bad in ["", "$key", "user$", "a\nb", &"x".repeat(600)] {
            assert!(bad.parse::<LoginName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_restrictions_hold_and_fail_closed() {
        let mut u = User {
            name: "u".into(),
            email: String::new(),
            roles: vec![],
            password: StoredPassword::Disabled,
            access_keys: vec![],
            restrict_by_ip: vec![],
            deactivated: false,
        };
        assert!(u.allows_address(None), "no restriction, anywhere");
        u.restrict_by_ip = vec!["10.0.0.0/8".parse().unwrap(), "1.2.3.4/32".parse().unwrap()];
        assert!(u.allows_address(Some("10.1.2.3".parse().unwrap())));
        assert!(u.allows_address(Some("::ffff:1.2.3.4".parse().unwrap())), "IPv4-mapped IPv6");
        assert!(!u.allows_address(Some("1.2.3.5".parse().unwrap())));
        assert!(!u.allows_address(None), "an unknown address is refused");
    }
}
