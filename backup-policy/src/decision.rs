//! The decision: may this user, through this access key and token scope, do this on this
//! collection? A pure function, backup-repository's `DecideCanDo` with its widening fixed.

use crate::identity::{AccessKey, AclEntry, OperationsScope, User};
use crate::role::{Permission, Role, roles_allow};

/// The object a decision is about: its kind, name and ACL.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The kind (`collection`).
    pub kind: &'a str,
    /// The name (a collection id).
    pub name: &'a str,
    /// Who has which roles on it.
    pub acl: &'a [AclEntry],
}

/// Who asks: the user, the access key of the login (if any), the scope of the token (if any).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The user.
    pub user: &'a User,
    /// The access key the user logged in with.
    pub access_key: Option<&'a AccessKey>,
    /// The token's scope.
    pub scope: Option<&'a OperationsScope>,
}

/// Decides one permission, in backup-repository's order:
///
/// 1. without a subject, the user's global roles decide; an access key or a limiting scope
///    (which grant only per object) deny;
/// 2. an access key must grant the permission on the subject, or the answer is no;
/// 3. a limiting token scope must grant it on the subject (the last matching element wins),
///    or the answer is no;
/// 4. then the collection's ACL or the user's global roles must grant it.
///
/// Access keys and scopes only narrow: they are checked first and can only say no.
///
/// # Errors
/// The reason for a refusal, fit for the asker.
pub fn decide(asker: &Asker<'_>, subject: Option<&Subject<'_>>, permission: Permission) -> Result<(), String> {
    let user = asker.user;
    let Some(subject) = subject else {
        // backup-repository let an access key or a scoped token act here with the full user's
        // roles; both grant only per object, so they grant nothing global.
        if asker.access_key.is_some() {
            return Err(format!("access key sessions may not {}", permission.name()));
        }
        if asker.scope.is_some_and(OperationsScope::is_limiting) {
            return Err(format!("this token's scope does not allow {}", permission.name()));
        }
        return if roles_allow(&user.roles, permission) {
            Ok(())
        } else {
            Err(format!("user {} may not {}", user.name, permission.name()))
        };
    };
    if let Some(key) = asker.access_key
        && !roles_allow(&key.roles_on(subject.kind, subject.name), permission)
    {
        return Err(format!(
            "access key {} may not {} on {} {}",
            key.name,
            permission.name(),
            subject.kind,
            subject.name
        ));
    }
    if let Some(scope) = asker.scope.filter(|s| s.is_limiting()) {
        let last = scope.elements.iter().rfind(|e| e.names(subject.kind, subject.name));
        if !last.is_some_and(|e| roles_allow(&e.roles, permission)) {
            return Err(format!(
                "this token's scope does not allow {} on {} {}",
                permission.name(),
                subject.kind,
                subject.name
            ));
        }
    }
    let acl_roles: Vec<Role> =
        subject.acl.iter().filter(|e| e.user == user.name).flat_map(|e| e.roles.iter().copied()).collect();
    if roles_allow(&acl_roles, permission) || roles_allow(&user.roles, permission) {
        Ok(())
    } else {
        Err(format!("user {} may not {} on {} {}", user.name, permission.name(), subject.kind, subject.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{COLLECTION, ObjectGrant};
    use crate::password::StoredPassword;
    use proptest::prelude::*;

    fn user(name: &str, roles: &[Role]) -> User {
        User {
            name: name.into(),
            email: String::new(),
            roles: roles.to_vec(),
            password: StoredPassword::Disabled,
            access_keys: vec![],
            restrict_by_ip: vec![],
            deactivated: false,
        }
    }

    fn key(roles: &[Role]) -> AccessKey {
        AccessKey {
            name: "k".into(),
            password: StoredPassword::Disabled,
            objects: vec![ObjectGrant::collection("iwa-ait", roles.to_vec())],
        }
    }

    fn acl(user: &str, roles: &[Role]) -> Vec<AclEntry> {
        vec![AclEntry { user: user.into(), roles: roles.to_vec() }]
    }

    fn iwa_ait(acl: &[AclEntry]) -> Subject<'_> {
        Subject { kind: COLLECTION, name: "iwa-ait", acl }
    }

    fn can(asker: &Asker<'_>, subject: Option<&Subject<'_>>, p: Permission) -> bool {
        decide(asker, subject, p).is_ok()
    }

    /// `TestDecideCanDo_AsSysAdminCanDoEverything`.
    #[test]
    fn sysadmin_can_do_everything() {
        let u = user("bakunin", &[Role::SystemAdmin]);
        let empty_scope = OperationsScope::default();
        for p in Permission::ALL {
            let asker = Asker { user: &u, access_key: None, scope: Some(&empty_scope) };
            // Ours: lifting governance locks is not administration; it takes its own role.
            let expected = p != Permission::BypassGovernance;
            assert_eq!(can(&asker, None, p), expected, "{}", p.name());
        }
    }

    /// `TestDecideCanDo_AsSysAdminCantDoActionWhenJWTForbids`.
    #[test]
    fn sysadmin_cannot_do_what_the_token_scope_forbids() {
        let u = user("bakunin", &[Role::SystemAdmin]);
        let scope = OperationsScope { elements: vec![ObjectGrant::collection("iwa-ait", [Role::BackupDownloader])] };
        let list = acl("bakunin", &[Role::BackupDownloader, Role::BackupUploader]);
        let asker = Asker { user: &u, access_key: None, scope: Some(&scope) };
        assert!(!can(&asker, Some(&iwa_ait(&list)), Permission::Upload));
        assert!(can(&asker, Some(&iwa_ait(&list)), Permission::Download));
    }

    /// `TestDecideCanDo_AsSysAdminCantDoActionWhenAccessTokenForbids`.
    #[test]
    fn sysadmin_cannot_do_what_the_access_key_forbids() {
        let u = user("bakunin", &[Role::SystemAdmin]);
        let k = key(&[Role::BackupDownloader]);
        let list = acl("bakunin", &[Role::BackupDownloader, Role::BackupUploader]);
        let empty_scope = OperationsScope::default();
        let asker = Asker { user: &u, access_key: Some(&k), scope: Some(&empty_scope) };
        assert!(!can(&asker, Some(&iwa_ait(&list)), Permission::Upload));
        assert!(can(&asker, Some(&iwa_ait(&list)), Permission::Download));
    }

    /// `TestDecideCanDo_AsCollectionManagerICanManageCollection`.
    #[test]
    fn collection_manager_in_the_acl_manages_the_collection() {
        let u = user("bakunin", &[]);
        let list = acl("bakunin", &[Role::CollectionManager]);
        let asker = Asker { user: &u, access_key: None, scope: None };
        for p in [Permission::Upload, Permission::UploadAnytime, Permission::Download] {
            assert!(can(&asker, Some(&iwa_ait(&list)), p), "{}", p.name());
        }
        assert!(!can(&asker, None, Permission::Upload), "the ACL grants on the collection only");
    }

    #[test]
    fn the_acl_of_another_user_grants_nothing_and_the_last_scope_element_wins() {
        let u = user("bakunin", &[]);
        let list = acl("someone-else", &[Role::CollectionManager]);
        assert!(!can(&Asker { user: &u, access_key: None, scope: None }, Some(&iwa_ait(&list)), Permission::Download));
        let admin = user("admin", &[Role::SystemAdmin]);
        let scope = OperationsScope {
            elements: vec![
                ObjectGrant::collection("iwa-ait", [Role::BackupUploader]),
                ObjectGrant::collection("iwa-ait", [Role::BackupDownloader]),
            ],
        };
        let asker = Asker { user: &admin, access_key: None, scope: Some(&scope) };
        assert!(can(&asker, Some(&iwa_ait(&[])), Permission::Download));
        assert!(!can(&asker, Some(&iwa_ait(&[])), Permission::Upload), "the last element wins");
        let other = Subject { kind: COLLECTION, name: "other", acl: &[] };
        assert!(!can(&asker, Some(&other), Permission::Download), "objects outside the scope are refused");
    }

    #[test]
    fn keys_and_scopes_grant_nothing_global() {
        let admin = user("admin", &[Role::SystemAdmin]);
        let k = key(&[Role::CollectionManager]);
        assert!(!can(&Asker { user: &admin, access_key: Some(&k), scope: None }, None, Permission::ViewProfiles));
        let scope = OperationsScope { elements: vec![ObjectGrant::collection("x", [Role::SystemAdmin])] };
        assert!(!can(
            &Asker { user: &admin, access_key: None, scope: Some(&scope) },
            None,
            Permission::ManageCollections
        ));
    }

    fn arb_roles() -> impl Strategy<Value = Vec<Role>> {
        proptest::sample::subsequence(Role::ALL.to_vec(), 0..=Role::ALL.len())
    }

    fn arb_grants() -> impl Strategy<Value = Vec<ObjectGrant>> {
        proptest::collection::vec(
            (
                proptest::sample::select(vec!["iwa-ait", "other"]),
                proptest::sample::select(vec![COLLECTION, "user"]),
                arb_roles(),
            )
                .prop_map(|(name, kind, roles)| ObjectGrant {
                    kind: kind.into(),
                    name: name.into(),
                    roles,
                }),
            0..4,
        )
    }

    proptest! {
        /// No access key and no token scope ever grants more than the user has without them.
        #[test]
        fn keys_and_scopes_only_narrow(
            user_roles in arb_roles(),
            acl_roles in arb_roles(),
            acl_is_ours in any::<bool>(),
            key_grants in proptest::option::of(arb_grants()),
            scope_grants in proptest::option::of(arb_grants()),
            with_subject in any::<bool>(),
            permission in proptest::sample::select(Permission::ALL.to_vec()),
        ) {
            let u = user("bakunin", &user_roles);
            let list = acl(if acl_is_ours { "bakunin" } else { "other" }, &acl_roles);
            let subject = iwa_ait(&list);
            let subject = with_subject.then_some(&subject);
            let k = key_grants.map(|objects| AccessKey { name: "k".into(), password: StoredPassword::Disabled, objects });
            let scope = scope_grants.map(|elements| OperationsScope { elements });
            let narrowed = can(&Asker { user: &u, access_key: k.as_ref(), scope: scope.as_ref() }, subject, permission);
            let plain = can(&Asker { user: &u, access_key: None, scope: None }, subject, permission);
            prop_assert!(!narrowed || plain, "a key or scope granted {} beyond the user", permission.name());
        }
    }
}
