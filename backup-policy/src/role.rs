//! Roles, what they allow, and how they inherit, as backup-repository defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What a role allows (backup-repository's `file.download`, `file.upload`, … plus the
/// management actions it had no API for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `file.download`: download versions.
    Download,
    /// `file.upload`: upload versions inside a backup window.
    Upload,
    /// `file.upload-anytime`: upload outside every backup window.
    UploadAnytime,
    /// `file.delete`: delete and restore versions.
    DeleteVersions,
    /// `collection.manage`: create, change and delete collections.
    ManageCollections,
    /// `profile.view`: see other users' profiles and sessions.
    ViewProfiles,
    /// `lock.bypass-governance` (ours): lift or shorten a governance-mode retention lock, or
    /// weaken a governance lock policy, when the request asks to. No other role implies it,
    /// `systemAdmin` included.
    BypassGovernance,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 7] = [
        Permission::Download,
        Permission::Upload,
        Permission::UploadAnytime,
        Permission::DeleteVersions,
        Permission::ManageCollections,
        Permission::ViewProfiles,
        Permission::BypassGovernance,
    ];

    /// backup-repository's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Download => "file.download",
            Permission::Upload => "file.upload",
            Permission::UploadAnytime => "file.upload-anytime",
            Permission::DeleteVersions => "file.delete",
            Permission::ManageCollections => "collection.manage",
            Permission::ViewProfiles => "profile.view",
            Permission::BypassGovernance => "lock.bypass-governance",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything: inherits `userManager` and `collectionManager`.
    SystemAdmin,
    /// Sees users' profiles and sessions.
    UserManager,
    /// Manages collections: inherits `backupDownloader` and `uploadsAnytime`; deletes versions.
    CollectionManager,
    /// Downloads versions.
    BackupDownloader,
    /// Uploads versions inside backup windows.
    BackupUploader,
    /// Uploads versions at any time.
    UploadsAnytime,
    /// Lifts governance-mode retention locks when a request asks to (ours). Granted only by
    /// name: `systemAdmin` does not inherit it, so a stolen administrator token cannot.
    GovernanceBypass,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::SystemAdmin,
        Role::UserManager,
        Role::CollectionManager,
        Role::BackupDownloader,
        Role::BackupUploader,
        Role::UploadsAnytime,
        Role::GovernanceBypass,
    ];

    /// The name manifests and tokens use.
    pub fn name(self) -> &'static str {
        match self {
            Role::SystemAdmin => "systemAdmin",
            Role::UserManager => "userManager",
            Role::CollectionManager => "collectionManager",
            Role::BackupDownloader => "backupDownloader",
            Role::BackupUploader => "backupUploader",
            Role::UploadsAnytime => "uploadsAnytime",
            Role::GovernanceBypass => "governanceBypass",
        }
    }

    /// The roles this one inherits directly.
    pub fn inherits(self) -> &'static [Role] {
        match self {
            Role::SystemAdmin => &[Role::UserManager, Role::CollectionManager],
            Role::CollectionManager => &[Role::BackupDownloader, Role::UploadsAnytime],
            Role::UploadsAnytime => &[Role::BackupUploader],
            _ => &[],
        }
    }

    /// The permissions this role grants by itself (not counting inherited roles).
    fn own_permissions(self) -> &'static [Permission] {
        match self {
            Role::SystemAdmin => &[],
            Role::UserManager => &[Permission::ViewProfiles],
            Role::CollectionManager => &[Permission::DeleteVersions, Permission::ManageCollections],
            Role::BackupDownloader => &[Permission::Download],
            Role::BackupUploader => &[Permission::Upload],
            Role::UploadsAnytime => &[Permission::Upload, Permission::UploadAnytime],
            Role::GovernanceBypass => &[Permission::BypassGovernance],
        }
    }

    /// Everything this role allows, inherited roles included.
    pub fn permissions(self) -> Permissions {
        let mut p = Permissions(0);
        for perm in self.own_permissions() {
            p.0 |= perm.bit();
        }
        for inherited in self.inherits() {
            p.0 |= inherited.permissions().0;
        }
        p
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "systemAdmin" => Ok(Role::SystemAdmin),
            // The code of backup-repository says userManager, its CRD and examples usersManager.
            "userManager" | "usersManager" => Ok(Role::UserManager),
            "collectionManager" => Ok(Role::CollectionManager),
            "backupDownloader" => Ok(Role::BackupDownloader),
            "backupUploader" => Ok(Role::BackupUploader),
            "uploadsAnytime" => Ok(Role::UploadsAnytime),
            "governanceBypass" => Ok(Role::GovernanceBypass),
            other => Err(Error::invalid(
                "role",
                format!(
                    "{:?} is not one of {}",
                    other.chars().take(40).collect::<String>(),
                    Role::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// Nothing.
    pub const NONE: Permissions = Permissions(0);

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// The union of every role's permissions.
    pub fn of<'a>(roles: impl IntoIterator<Item = &'a Role>) -> Permissions {
        roles.into_iter().fold(Permissions(0), |acc, r| Permissions(acc.0 | r.permissions().0))
    }

    /// Whether every permission of `self` is in `other`.
    pub fn is_subset_of(self, other: Permissions) -> bool {
        self.0 & !other.0 == 0
    }
}

/// Whether any of `roles` allows `permission` (backup-repository's
/// `CanThoseRolesPerformAction`).
pub fn roles_allow(roles: &[Role], permission: Permission) -> bool {
    Permissions::of(roles).contains(permission)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// backup-repository's `TestCanThoseRolesPerformAction`.
    #[test]
    fn can_those_roles_perform_action() {
        assert!(roles_allow(&[Role::SystemAdmin], Permission::Download), "expanded two levels");
        assert!(roles_allow(&[Role::CollectionManager], Permission::Download), "expanded one level");
        assert!(roles_allow(&[Role::BackupDownloader], Permission::Download), "direct");
        assert!(!roles_allow(&[Role::BackupUploader], Permission::Download));
    }

    #[test]
    fn inheritance_table() {
        let table: &[(Role, &[Permission])] = &[
            (Role::BackupDownloader, &[Permission::Download]),
            (Role::BackupUploader, &[Permission::Upload]),
            (Role::UploadsAnytime, &[Permission::Upload, Permission::UploadAnytime]),
            (Role::UserManager, &[Permission::ViewProfiles]),
            (
                Role::CollectionManager,
                &[
                    Permission::Download,
                    Permission::Upload,
                    Permission::UploadAnytime,
                    Permission::DeleteVersions,
                    Permission::ManageCollections,
                ],
            ),
            // Everything but lifting governance locks (the last): that takes the dedicated role.
            (Role::SystemAdmin, &Permission::ALL[..6]),
            (Role::GovernanceBypass, &[Permission::BypassGovernance]),
        ];
        for (role, allowed) in table {
            for p in Permission::ALL {
                assert_eq!(roles_allow(&[*role], p), allowed.contains(&p), "{role} {}", p.name());
            }
        }
    }

    #[test]
    fn both_spellings_of_user_manager_and_unknown_roles() {
        assert_eq!("usersManager".parse::<Role>().unwrap(), Role::UserManager);
        assert_eq!("userManager".parse::<Role>().unwrap(), Role::UserManager);
        let e = "admin".parse::<Role>().unwrap_err();
        assert!(e.to_string().contains("is not one of systemAdmin"), "{e}");
        assert!(!roles_allow(&[], Permission::Download));
    }
}
