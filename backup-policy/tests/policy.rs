//! The policy end to end: the example manifests, logins, tokens, the authorizer in front of an
//! engine, and every fail-closed case.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::catalog::Catalog;
use backup_core::catalog::CatalogExt;
use backup_core::{
    Action, Actor, Authorizer, AuthzRequest, CollectionSpec, Engine, ErrorKind, ManualClock, MemoryCatalog, SessionId,
    UploadOptions, VersionSelector,
};
use backup_policy::manifest::{Manifests, load};
use backup_policy::{
    Directory, ObjectGrant, OpenPgpRule, OperationsScope, PolicyAuthorizer, Role, TokenKey, TokenRequest, TokenService,
    VerifiedToken,
};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::stream;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &[u8] = b"a secret of more than sixteen bytes";

fn manifests() -> Manifests {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server/config");
    load(&root, "backup-repository").unwrap()
}

struct World {
    directory: Arc<Directory>,
    tokens: TokenService,
    catalog: Arc<dyn Catalog>,
    clock: Arc<ManualClock>,
    engine: Engine,
    manifests: Manifests,
}

/// The example manifests behind an engine, at 2026-01-01 01:35 UTC (inside iwa-ait's window).
async fn world() -> World {
    let manifests = manifests();
    let directory = Arc::new(Directory::new(manifests.policy_set()));
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 1, 35, 0).unwrap()));
    let tokens = TokenService::new(TokenKey::hs256(SECRET, None).unwrap(), catalog.clone(), clock.clone()).unwrap();
    let engine = Engine::builder()
        .catalog(catalog.clone())
        .authorizer(Arc::new(PolicyAuthorizer::new(directory.clone())))
        .content_rule(Arc::new(OpenPgpRule))
        .clock(clock.clone())
        .build()
        .unwrap();
    manifests.declare_collections(&engine).await.unwrap();
    World { directory, tokens, catalog, clock, engine, manifests }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl World {
    async fn login(
        &self,
        login: &str,
        password: &str,
        from: &str,
        request: TokenRequest,
    ) -> backup_policy::Result<String> {
        let auth = self.directory.authenticate(&login.parse()?, password, Some(ip(from))).await?;
        let issued = self.tokens.issue(&auth.user, auth.access_key.as_deref(), request.from_addr(from)).await?;
        Ok(issued.token)
    }

    async fn actor(&self, token: &str, from: &str) -> backup_policy::Result<Actor> {
        Ok(self.tokens.verify(token).await?.actor(Some(ip(from))))
    }

    async fn upload(&self, actor: &Actor) -> backup_core::Result<backup_core::Version> {
        let body = "-----BEGIN PGP MESSAGE-----\n\nhQEMA3xvF0PXNrk1AQf/abc\n-----END PGP MESSAGE-----\n";
        self.engine
            .upload_with(
                actor,
                &"iwa-ait".parse().unwrap(),
                stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]),
                UploadOptions::new(),
            )
            .await
    }

    async fn can(&self, actor: &Actor, action: Action) -> backup_core::Result<backup_core::Permit> {
        let c = self.engine.catalog().get_collection(&"iwa-ait".parse().unwrap()).await.unwrap();
        PolicyAuthorizer::new(self.directory.clone())
            .authorize(&AuthzRequest::new(actor, action, Some(&c), self.clock.now()))
            .await
    }
}

use backup_core::Clock as _;

#[tokio::test]
async fn the_example_users_log_in_and_are_decided_as_backup_repository_does() {
    let w = world().await;
    // admin/admin, but only from 1.2.3.4 (restrictByIP, enforced).
    let e = w.login("admin", "admin", "127.0.0.1", TokenRequest::login()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let admin = w.login("admin", "admin", "1.2.3.4", TokenRequest::login()).await.unwrap();
    let admin = w.actor(&admin, "1.2.3.4").await.unwrap();
    w.upload(&admin).await.unwrap();
    assert!(w.can(&admin, Action::Download).await.is_ok());

    // some-user$uploader (password "test") may upload to iwa-ait and nothing else.
    let up = w.login("some-user$uploader", "test", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let up = w.actor(&up, "10.0.0.1").await.unwrap();
    w.upload(&up).await.unwrap();
    assert_eq!(w.can(&up, Action::Download).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        w.engine.delete_version(&up, &"iwa-ait".parse().unwrap(), 1).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert!(
        w.login("some-user$uploader", "admin", "10.0.0.1", TokenRequest::login()).await.is_err(),
        "the key's own password only"
    );

    // some-user as itself: a global collectionManager.
    let su = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let su = w.actor(&su, "10.0.0.1").await.unwrap();
    let d = w.engine.download(&su, &"iwa-ait".parse().unwrap(), VersionSelector::Latest).await.unwrap();
    assert_eq!(d.version().number, 2);

    // unprivileged: nothing.
    let un = w.login("unprivileged", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let un = w.actor(&un, "10.0.0.1").await.unwrap();
    assert_eq!(w.upload(&un).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(w.can(&un, Action::ListVersions).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn scoped_tokens_only_narrow() {
    let w = world().await;
    let scope = OperationsScope { elements: vec![ObjectGrant::collection("iwa-ait", [Role::BackupDownloader])] };
    let t = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login().with_scope(scope)).await.unwrap();
    let a = w.actor(&t, "10.0.0.1").await.unwrap();
    assert!(w.can(&a, Action::Download).await.is_ok());
    assert_eq!(
        w.upload(&a).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied,
        "collectionManager, but the token may only download"
    );
    // A scope asking for more than the user has grants nothing extra.
    let greedy = OperationsScope { elements: vec![ObjectGrant::collection("iwa-ait", [Role::SystemAdmin])] };
    let t = w.login("unprivileged", "admin", "10.0.0.1", TokenRequest::login().with_scope(greedy)).await.unwrap();
    let a = w.actor(&t, "10.0.0.1").await.unwrap();
    assert_eq!(w.can(&a, Action::Download).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn outside_the_window_only_uploads_anytime_may_upload() {
    let w = world().await;
    // 01:30:00 exactly: the previous start is 01:00 and the 30 minutes are over: closed.
    w.clock.set(Utc.with_ymd_and_hms(2026, 1, 1, 1, 30, 0).unwrap());
    let up = w.login("some-user$uploader", "test", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let up = w.actor(&up, "10.0.0.1").await.unwrap();
    let e = w.upload(&up).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutsideWindow, "{e}");
    assert!(e.to_string().contains("uploadsAnytime"), "{e}");
    let su = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let su = w.actor(&su, "10.0.0.1").await.unwrap();
    w.upload(&su).await.unwrap();
}

/// A collection's health checks the windows of its policy, which the authorizer gives the
/// engine: the same windows that open its uploads.
#[tokio::test]
async fn the_health_checks_the_windows_of_the_collections_policy() {
    use backup_core::health::{CheckKind, Verdict};
    let w = world().await;
    let id = "iwa-ait".parse().unwrap();
    let admin = w.login("admin", "admin", "1.2.3.4", TokenRequest::login()).await.unwrap();
    w.upload(&w.actor(&admin, "1.2.3.4").await.unwrap()).await.unwrap(); // at 01:35
    let window = |at| {
        w.clock.set(at);
        async {
            let report = w.engine.health_if(&id, |_| true).await.unwrap().unwrap();
            report.health.check(CheckKind::Window).cloned().expect("a collection with windows has a window check")
        }
    };
    // 02:00 exactly: the last slot is 01:30 to 02:00, and the backup came in it.
    let check = window(Utc.with_ymd_and_hms(2026, 1, 1, 2, 0, 0).unwrap()).await;
    assert_eq!(check.verdict, Verdict::Pass, "{check:?}");
    // 02:30 exactly: the last slot is 02:00 to 02:30, closed, without a backup.
    let check = window(Utc.with_ymd_and_hms(2026, 1, 1, 2, 30, 0).unwrap()).await;
    assert_eq!(
        (check.verdict, check.reason.as_str()),
        (
            Verdict::Fail,
            "previous backup was not executed in expected time slots: interval(*/30 * * * *) + 30m. Latest backup \
             created at: 2026-01-01T01:35:00+00:00"
        )
    );
}

#[tokio::test]
async fn a_removed_access_key_fails_closed_instead_of_widening() {
    let w = world().await;
    let t = w.login("some-user$uploader", "test", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let actor = w.actor(&t, "10.0.0.1").await.unwrap();
    assert!(w.can(&actor, Action::Upload).await.is_ok());
    // The key is removed from the manifest and the directory reloaded.
    let mut set = w.manifests.policy_set();
    set.users.get_mut("some-user").unwrap().access_keys.clear();
    w.directory.replace(set);
    // backup-repository evaluated this session as the full user (a collectionManager).
    for action in [Action::Upload, Action::Download, Action::ListVersions] {
        let e = w.can(&actor, action).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{action:?}: {e}");
    }
}

#[tokio::test]
async fn deleted_and_deactivated_users_fail_closed() {
    let w = world().await;
    let t = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let actor = w.actor(&t, "10.0.0.1").await.unwrap();
    let mut set = w.manifests.policy_set();
    set.users.get_mut("some-user").unwrap().deactivated = true;
    w.directory.replace(set);
    assert_eq!(w.can(&actor, Action::Download).await.unwrap_err().kind(), ErrorKind::Unauthenticated);
    assert!(w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.is_err());
    let mut set = w.manifests.policy_set();
    set.users.remove("some-user");
    w.directory.replace(set);
    assert_eq!(w.can(&actor, Action::Download).await.unwrap_err().kind(), ErrorKind::Unauthenticated);
    assert_eq!(w.upload(&actor).await.unwrap_err().kind(), ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn revoked_and_expired_tokens_fail_closed() {
    let w = world().await;
    let t = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let me = w.manifests.users.iter().find(|u| u.name == "some-user").unwrap().clone();
    w.tokens.revoke(&me, &SessionId::of_token(&t)).await.unwrap();
    let e = w.tokens.verify(&t).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");

    let t = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    w.tokens.verify(&t).await.unwrap();
    w.clock.advance(chrono::Duration::hours(6));
    let e = w.tokens.verify(&t).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

fn forge(header: &Header, claims: &serde_json::Value, key: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let w = world().await;
    let t = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let exp = (w.clock.now() + chrono::Duration::hours(1)).timestamp();
    let claims = serde_json::json!({"sub": "some-user", "login": "some-user", "jti": "x", "iat": 0, "exp": exp});
    let kid = TokenKey::hs256(SECRET, None).unwrap().kid().to_owned();
    let mut hs384 = Header::new(Algorithm::HS384);
    hs384.kid = Some(kid.clone());
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    // alg: none, hand-made (jsonwebtoken refuses to make one).
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(&claims));
    let no_exp = serde_json::json!({"sub": "some-user", "login": "some-user", "jti": "x", "iat": 0});
    let past = serde_json::json!({"sub": "some-user", "login": "some-user", "jti": "x", "iat": 0, "exp": 1});
    let mut tampered = t.clone();
    tampered.insert(t.len() - 3, 'A');
    let mut unknown_kid = Header::new(Algorithm::HS256);
    unknown_kid.kid = Some("someone-elses".into());
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", none, "malformed token"),
        ("another algorithm", forge(&hs384, &claims, SECRET), "HS384 is not accepted"),
        ("a foreign key", forge(&hs256, &claims, b"another secret of sixteen bytes or more"), "InvalidSignature"),
        ("an unknown key id", forge(&unknown_kid, &claims, SECRET), "unknown key"),
        ("no exp", forge(&hs256, &no_exp, SECRET), "exp"),
        ("a past exp", forge(&hs256, &past, SECRET), "expired"),
        ("a well-signed token never registered", forge(&hs256, &claims, SECRET), "not registered"),
        ("a tampered signature", tampered, "invalid token"),
        ("garbage", "not.a.token".into(), "malformed token"),
        ("a huge token", "a".repeat(20_000), "too long"),
    ];
    for (what, token, reason) in cases {
        let e = w.tokens.verify(&token).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{what}: {e}");
        assert!(e.to_string().contains(reason), "{what}: {e}");
    }
}

#[tokio::test]
async fn rotated_keys_keep_old_tokens_valid_until_retired() {
    let w = world().await;
    let old = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let new_key = TokenKey::hs256(b"the next secret, also long enough", Some("k2")).unwrap();
    let rotated = TokenService::new(new_key.clone(), w.catalog.clone(), w.clock.clone())
        .unwrap()
        .accepting(TokenKey::hs256(SECRET, None).unwrap());
    rotated.verify(&old).await.unwrap();
    let retired = TokenService::new(new_key, w.catalog.clone(), w.clock.clone()).unwrap();
    assert!(retired.verify(&old).await.is_err(), "the old key is no longer accepted");
}

#[tokio::test]
async fn a_single_use_token_serves_exactly_one_upload() {
    let w = world().await;
    let t = w.login("some-user$uploader", "test", "10.0.0.1", TokenRequest::login().single_use()).await.unwrap();
    let verified: VerifiedToken = w.tokens.verify(&t).await.unwrap();
    assert!(verified.is_single_use());
    let actor = verified.actor(Some(ip("10.0.0.1")));
    // Two uploads race with the same token: exactly one commits.
    let (a, b) = tokio::join!(w.upload(&actor), w.upload(&actor));
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    assert_eq!([a, b].into_iter().find_map(Result::err).unwrap().kind(), ErrorKind::Conflict);
    let e = w.tokens.verify(&t).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "used up: {e}");
    let state = w.catalog.collection_state(&"iwa-ait".parse().unwrap()).await.unwrap();
    assert_eq!((state.counters.versions, state.pending.len()), (1, 0));
}

#[tokio::test]
async fn a_browser_session_token_says_so_and_a_login_token_does_not() {
    let w = world().await;
    let browser = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login().browser_session()).await.unwrap();
    let plain = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    assert!(w.tokens.verify(&browser).await.unwrap().is_browser_session());
    assert!(!w.tokens.verify(&plain).await.unwrap().is_browser_session());
    // The mark is signed: it cannot be added to or removed from a token without the key.
    let mut parts: Vec<String> = plain.split('.').map(str::to_owned).collect();
    let browser_payload = browser.split('.').nth(1).unwrap().to_owned();
    parts[1] = browser_payload;
    assert!(w.tokens.verify(&parts.join(".")).await.is_err());
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_by_their_owner_or_an_admin() {
    let w = world().await;
    let user = |n: &str| w.manifests.users.iter().find(|u| u.name == n).unwrap().clone();
    let (admin, some, un) = (user("admin"), user("some-user"), user("unprivileged"));
    let t1 = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    // Newest first: the second login must be later on the manual clock.
    w.clock.advance(chrono::Duration::seconds(1));
    let _t2 = w.login("some-user$uploader", "test", "10.0.0.2", TokenRequest::login()).await.unwrap();
    let mine = w.tokens.sessions(&some, None, 10).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].requester_addr.as_deref(), Some("10.0.0.2"));
    assert_eq!(w.tokens.sessions(&un, Some("some-user"), 10).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(w.tokens.sessions(&admin, Some("some-user"), 10).await.unwrap().len(), 2);
    let s1 = SessionId::of_token(&t1);
    assert_eq!(w.tokens.revoke(&un, &s1).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    let unknown = SessionId::of_token("never");
    assert_eq!(w.tokens.revoke(&un, &unknown).await.unwrap_err().kind(), ErrorKind::PermissionDenied, "no enumeration");
    assert_eq!(w.tokens.revoke(&admin, &unknown).await.unwrap_err().kind(), ErrorKind::NotFound);
    w.tokens.revoke(&admin, &s1).await.unwrap();
    assert_eq!(w.tokens.revoke_all(&un, "some-user").await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(w.tokens.revoke_all(&some, "some-user").await.unwrap(), 1);
}

#[tokio::test]
async fn a_scoped_token_acts_on_sessions_without_the_users_global_roles() {
    let w = world().await;
    let admin = w.manifests.users.iter().find(|u| u.name == "admin").unwrap().clone();
    let target = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let scope = OperationsScope { elements: vec![ObjectGrant::collection("iwa-ait", [Role::BackupDownloader])] };
    let scoped = w.login("admin", "admin", "1.2.3.4", TokenRequest::login().with_scope(scope)).await.unwrap();
    let requester = w.tokens.verify(&scoped).await.unwrap().requester(&admin);
    assert!(requester.user().roles.is_empty());
    assert_eq!(
        w.tokens.sessions(&requester, Some("some-user"), 10).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    let target = SessionId::of_token(&target);
    assert_eq!(w.tokens.revoke(&requester, &target).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(w.tokens.revoke_all(&requester, "some-user").await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    // Unscoped, the administrator may.
    let full = w.login("admin", "admin", "1.2.3.4", TokenRequest::login()).await.unwrap();
    let requester = w.tokens.verify(&full).await.unwrap().requester(&admin);
    assert_eq!(w.tokens.sessions(&requester, Some("some-user"), 10).await.unwrap().len(), 1);
    w.tokens.revoke(&requester, &target).await.unwrap();
}

/// An access key's token sees and revokes its own session only, never its user's others
/// (the security review listed and revoked `some-user`'s full session with one).
#[tokio::test]
async fn an_access_keys_token_manages_only_its_own_session() {
    let w = world().await;
    let some = w.manifests.users.iter().find(|u| u.name == "some-user").unwrap().clone();
    let full = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let key = w.login("some-user$uploader", "test", "10.0.0.2", TokenRequest::login()).await.unwrap();
    let verified = w.tokens.verify(&key).await.unwrap();
    let requester = verified.requester(&some);
    let listed = w.tokens.sessions(&requester, None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), [verified.session().clone()]);
    let full = SessionId::of_token(&full);
    assert_eq!(w.tokens.revoke(&requester, &full).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(w.tokens.revoke_all(&requester, "some-user").await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    w.tokens.revoke(&requester, verified.session()).await.unwrap();
    assert!(w.tokens.verify(&key).await.is_err(), "its own session it may end");
}

/// A one-time upload token uploads once and does nothing else.
#[tokio::test]
async fn a_one_time_token_may_only_upload() {
    let w = world().await;
    let t = w.login("some-user$uploader", "test", "10.0.0.1", TokenRequest::login().single_use()).await.unwrap();
    let a = w.actor(&t, "10.0.0.1").await.unwrap();
    let authz = PolicyAuthorizer::new(w.directory.clone());
    let id = "iwa-ait".parse().unwrap();
    let collection = w.engine.catalog().get_collection(&id).await.unwrap();
    for action in [Action::Download, Action::ListVersions, Action::DeleteVersion, Action::ReadCollection] {
        let e = authz.authorize(&AuthzRequest::new(&a, action, Some(&collection), w.clock.now())).await.unwrap_err();
        assert!(e.to_string().contains("one-time upload token may only upload"), "{action:?}: {e}");
    }
    w.upload(&a).await.unwrap();
    assert!(w.upload(&a).await.is_err(), "used up");
}

/// A token dies with the password (or key) its login proved, and a chain of refreshes ends
/// a day after its login however often it is refreshed.
#[tokio::test]
async fn tokens_end_with_their_credential_and_their_chain() {
    let w = world().await;
    let user_token = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let key_token = w.login("some-user$uploader", "test", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let admitted = |token: String| {
        let (directory, tokens) = (w.directory.clone(), w.tokens.clone());
        async move {
            let t = tokens.verify(&token).await?;
            directory.snapshot().admit(&t, Some(ip("10.0.0.1"))).map(|u| u.name.clone())
        }
    };
    assert_eq!(admitted(user_token.clone()).await.unwrap(), "some-user");
    assert_eq!(admitted(key_token.clone()).await.unwrap(), "some-user");
    // The access key's password changes: its tokens end, the user's stay.
    let mut set = w.manifests.policy_set();
    let some = set.users.get_mut("some-user").unwrap();
    some.access_keys[0].password = backup_policy::StoredPassword::hash(b"new").unwrap();
    w.directory.replace(set.clone());
    let e = admitted(key_token.clone()).await.unwrap_err();
    assert!(e.to_string().contains("changed since the login"), "{e}");
    assert!(admitted(user_token.clone()).await.is_ok());
    // The user's password changes: its tokens end too.
    set.users.get_mut("some-user").unwrap().password = backup_policy::StoredPassword::hash(b"new").unwrap();
    w.directory.replace(set);
    assert!(admitted(user_token).await.is_err());
    // The engine's authorizer refuses them as well.
    let a = w.actor(&key_token, "10.0.0.1").await.unwrap();
    assert_eq!(w.upload(&a).await.unwrap_err().kind(), ErrorKind::Unauthenticated);

    // Refreshes: each new token keeps the chain's start; past a day, no more.
    w.directory.replace(w.manifests.policy_set());
    let admin = w.manifests.users.iter().find(|u| u.name == "admin").unwrap().clone();
    let mut token = w.login("admin", "admin", "1.2.3.4", TokenRequest::login()).await.unwrap();
    let started = w.tokens.verify(&token).await.unwrap().chain_started_at();
    for _ in 0..3 {
        w.clock.advance(chrono::Duration::hours(5));
        let v = w.tokens.verify(&token).await.unwrap();
        let issued = w.tokens.issue(&admin, None, TokenRequest::login().refreshing(&v)).await.unwrap();
        assert_eq!(w.tokens.verify(&issued.token).await.unwrap().chain_started_at(), started);
        token = issued.token;
    }
    // 15 h in: the next token ends with the chain, at 24 h, not 6 h later.
    w.clock.advance(chrono::Duration::hours(5));
    let v = w.tokens.verify(&token).await.unwrap();
    let last = w.tokens.issue(&admin, None, TokenRequest::login().refreshing(&v)).await.unwrap();
    assert_eq!(last.session.expires_at, started + chrono::Duration::hours(24));
    // 23 h in: a refresh still works but ends with the chain; at 24 h nothing is left.
    w.clock.advance(chrono::Duration::hours(3));
    let v = w.tokens.verify(&last.token).await.unwrap();
    let final_token = w.tokens.issue(&admin, None, TokenRequest::login().refreshing(&v)).await.unwrap();
    assert_eq!(final_token.session.expires_at, started + chrono::Duration::hours(24));
    w.clock.advance(chrono::Duration::hours(1));
    assert!(w.tokens.verify(&final_token.token).await.is_err(), "the chain is over: log in again");
    // Even a token of the chain presented late cannot start a new one.
    let e = w.tokens.issue(&admin, None, TokenRequest::login().refreshing(&v)).await.unwrap_err();
    assert!(e.to_string().contains("log in again"), "{e}");
}

#[tokio::test]
async fn plain_text_is_refused_by_the_openpgp_rule() {
    let w = world().await;
    let t = w.login("some-user", "admin", "10.0.0.1", TokenRequest::login()).await.unwrap();
    let a = w.actor(&t, "10.0.0.1").await.unwrap();
    let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"pg_dump output, unencrypted"))]);
    let e = w.engine.upload(&a, &"iwa-ait".parse().unwrap(), body).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentRejected, "{e}");
    let none = CollectionSpec::new("x-${version}", backup_core::Limits::new(1, 10, 10).unwrap());
    assert!(none.content_rule.is_none());
    let _ = Duration::ZERO;
}

/// `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`: test keys only.
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEID7QFqHIbvWWx0IUZrwrRH6C9b8MSyj5FLnMO2W5u1UF\n-----END PRIVATE KEY-----\n";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAhLAwq4jIj/X/q7OUT/+5te2Q12OWSpPe7mr/XTJBM24=\n-----END PUBLIC KEY-----\n";
/// Another Ed25519 key's public half, and a P-256 public key.
const ED_OTHER_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAlyssLypENMhYU2O8I8fFL6B6wY18DmKzer1QViL/3kI=\n-----END PUBLIC KEY-----\n";
const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdpGQpy9fYM1uKERPB4UwxFSu8Cw/\n63cnA5MVM37U7D4w5uUzlOfpzTqcX0dK1+qGsu8uplc5LTRuhL1hEi0iLg==\n-----END PUBLIC KEY-----\n";

/// EdDSA keys from PEM: tokens signed by one instance verify on another holding only the
/// public key, and keys that do not parse or do not belong together are refused at load.
#[tokio::test]
async fn ed25519_keys_from_pem_sign_and_verify() {
    let w = world().await;
    let key = TokenKey::ed25519_pem("ed-1", ED_PRIVATE.as_bytes(), ED_PUBLIC.as_bytes()).unwrap();
    let signer = TokenService::new(key, w.catalog.clone(), w.clock.clone()).unwrap();
    let auth = w.directory.authenticate(&"some-user".parse().unwrap(), "admin", Some(ip("10.0.0.1"))).await.unwrap();
    let issued = signer.issue(&auth.user, None, TokenRequest::login()).await.unwrap();
    let header = jsonwebtoken::decode_header(&issued.token).unwrap();
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::EdDSA, Some("ed-1")));
    signer.verify(&issued.token).await.unwrap();
    let checker = TokenService::new(TokenKey::hs256(SECRET, None).unwrap(), w.catalog.clone(), w.clock.clone())
        .unwrap()
        .accepting(TokenKey::ed25519_public_pem("ed-1", ED_PUBLIC.as_bytes()).unwrap());
    checker.verify(&issued.token).await.unwrap();
    let other = TokenService::new(TokenKey::hs256(SECRET, None).unwrap(), w.catalog.clone(), w.clock.clone())
        .unwrap()
        .accepting(TokenKey::ed25519_public_pem("ed-1", ED_OTHER_PUBLIC.as_bytes()).unwrap());
    assert!(other.verify(&issued.token).await.is_err(), "another key's public half refuses the signature");

    for (private, public, why) in [
        (ED_PRIVATE, ED_OTHER_PUBLIC, "does not match"),
        (ED_PRIVATE, P256_PUBLIC, "not an Ed25519"),
        (ED_PUBLIC, ED_PUBLIC, "PRIVATE KEY"),
        (ED_PRIVATE, ED_PRIVATE, "PUBLIC KEY"),
        ("not a key", ED_PUBLIC, "Ed25519 private key"),
    ] {
        let e = TokenKey::ed25519_pem("ed-1", private.as_bytes(), public.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), backup_core::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
}
