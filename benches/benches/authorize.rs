//! P6: token verification plus an authorization decision per second, against a bare
//! `jsonwebtoken` HS256 decode of the same token in the same run.
//!
//! ```text
//! cargo bench -p backup-benches --bench authorize
//! ```
//!
//! The measured path is a request's: verify the bearer token (size, header, key id,
//! algorithm, signature, expiry, and its session in the catalog, which is the in-memory one
//! here), then decide an upload on a collection with an ACL, a backup window and the token's
//! scope.

use std::sync::Arc;
use std::time::Instant;

use backup_benches::env_u64;
use backup_core::catalog::Catalog;
use backup_core::{Action, AuthzRequest, Clock, Collection, CollectionSpec, Limits, MemoryCatalog, SystemClock};
use backup_policy::{
    AclEntry, BackupWindow, CollectionPolicy, Directory, ObjectGrant, OperationsScope, PolicyAuthorizer, PolicySet,
    Role, StoredPassword, TokenKey, TokenRequest, TokenService, User,
};

const SECRET: &[u8] = b"benchmark secret, long enough for HS256";

fn main() {
    let n = env_u64("BENCH_AUTHORIZE", 300_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let user = User {
            name: "ci".into(),
            email: String::new(),
            roles: vec![],
            password: StoredPassword::Disabled,
            access_keys: vec![],
            restrict_by_ip: vec!["10.0.0.0/8".parse().expect("net")],
            deactivated: false,
        };
        let id = "db".parse().expect("id");
        let mut set = PolicySet::default();
        set.users.insert(user.name.clone(), user.clone());
        set.collections.insert(
            "db".parse().expect("id"),
            CollectionPolicy {
                windows: vec![BackupWindow::parse("* * * * *", "1h", None).expect("window")],
                acl: vec![AclEntry { user: "ci".into(), roles: vec![Role::CollectionManager] }],
                health_code_sha256: None,
            },
        );
        let directory = Arc::new(Directory::new(set));
        let authorizer = PolicyAuthorizer::new(directory);
        let tokens = TokenService::new(TokenKey::hs256(SECRET, None).expect("key"), catalog.clone(), clock.clone())
            .expect("tokens");
        let scope = OperationsScope { elements: vec![ObjectGrant::collection("db", [Role::BackupUploader])] };
        let token = tokens.issue(&user, None, TokenRequest::login().with_scope(scope)).await.expect("issue").token;
        let collection = Collection::new(
            id,
            CollectionSpec::new("db-${version}", Limits::new(3, 10, 30).expect("limits")),
            chrono::Utc::now(),
        );
        let addr = Some("10.1.2.3".parse().expect("addr"));

        // Baseline: the signature check alone.
        let key = jsonwebtoken::DecodingKey::from_secret(SECRET);
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        let start = Instant::now();
        for _ in 0..n {
            jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).expect("decode");
        }
        let bare = n as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        for _ in 0..n {
            let verified = tokens.verify(&token).await.expect("verify");
            let actor = verified.actor(addr);
            let request = AuthzRequest::new(&actor, Action::Upload, Some(&collection), clock.now());
            authorizer.decide(&request).expect("allowed");
        }
        let full = n as f64 / start.elapsed().as_secs_f64();
        println!("P6 authorize per_s={full:.0} ratio_vs_bare_jwt_decode={:.2}", full / bare);
        println!("   bare HS256 decode: {bare:.0}/s; {n} iterations each, one core");
    });
}
