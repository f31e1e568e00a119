//! Retention locks over real HTTP: a compliance collection whose versions no administrator,
//! manager or upload-only account can delete or rotate out (the flood is refused, the good
//! versions download intact, the health check fails), governance bypassed only by the
//! dedicated role, locks lengthened and never shortened, time moved with the server's clock;
//! and a manifest reload that would weaken a compliance lock refused as a whole.

mod support;

use std::sync::Arc;

use backup_core::ManualClock;
use serde_json::{Value, json};
use support::{NO_RATE_LIMITS, Server, add_manifest, add_user, args, client, config_copy, login};

fn collection(name: &str, mode: &str, acl: &str) -> String {
    format!(
        r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupCollection
metadata:
    name: {name}
spec:
    description: locked
    filenameTemplate: {name}-${{version}}.bin
    maxBackupsCount: 3
    maxOneVersionSize: 1M
    maxCollectionSize: 3M
    contentRule: none
    lock:
        mode: {mode}
        minRetention: 30d
    accessControl:
{acl}"#
    )
}

const ACL: &str = r#"        - name: manager
          type: user
          roles: ["collectionManager"]
        - name: uploader
          type: user
          roles: ["backupUploader", "backupDownloader"]
        - name: governor
          type: user
          roles: ["collectionManager", "governanceBypass"]
        - name: ci
          type: user
          roles: ["collectionManager"]
"#;

fn manifests(config: &std::path::Path) {
    for (name, mode) in [("vault", "compliance"), ("gov", "governance")] {
        add_manifest(
            config,
            &format!("backups.riotkit.org/v1alpha1/backupcollections/{name}.yaml"),
            &collection(name, mode, ACL),
        );
    }
    for user in ["manager", "uploader", "governor"] {
        add_user(config, user);
    }
    // A manager whose access key `ci$pipeline` may only upload to vault.
    add_manifest(
        config,
        "backups.riotkit.org/v1alpha1/backupusers/ci.yaml",
        r#"---
apiVersion: backups.riotkit.org/v1alpha1
kind: BackupUser
metadata:
    name: ci
spec:
    email: ci@example.org
    passwordFromRef:
        name: backup-repository-passwords
        entry: admin
    accessKeys:
        - name: pipeline
          passwordFromRef:
              name: backup-repository-passwords
              entry: admin_access_key_1
          objects:
              - name: vault
                type: collection
                roles: ["backupUploader"]
    roles: []
"#,
    );
    // A system administrator from any address (the examples' admin is bound to one).
    support::add_system_admin(config, "root");
}

async fn start(clock: Arc<ManualClock>) -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    let mut extra = vec!["--upload-confirm-grace", "0s"];
    extra.extend(NO_RATE_LIMITS);
    let server_config = support::server_config(&args(config.path(), data.path(), &extra)).clock(clock);
    (Server::in_process_with(server_config).await, config, data)
}

async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    support::json(r.send().await.unwrap()).await
}

fn version_url(s: &Server, collection: &str, number: u64) -> String {
    s.url(&format!("/api/stable/repository/collection/{collection}/version/{number}"))
}

async fn versions(c: &reqwest::Client, s: &Server, token: &str, collection: &str) -> Vec<Value> {
    let url = s.url(&format!("/api/stable/repository/collection/{collection}/version"));
    let (status, body) = send(c.get(url).bearer_auth(token)).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["versions"].as_array().unwrap().clone()
}

async fn download(c: &reqwest::Client, s: &Server, token: &str, collection: &str, number: u64) -> Vec<u8> {
    let url = s.url(&format!("/api/alpha/repository/collection/{collection}/version/{number}"));
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_removes_a_compliance_locked_version() {
    let clock = Arc::new(ManualClock::starting_now());
    let (server, _config, _data) = start(clock.clone()).await;
    let c = client();
    let admin = login(&c, &server, "root", "admin", None).await;
    let manager = login(&c, &server, "manager", "admin", None).await;
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    let mut good = Vec::new();
    for n in 1..=3u8 {
        let bytes = vec![n; 1000];
        let (status, body) = support::upload(&c, &server, &uploader, "vault", bytes.clone(), None).await;
        assert_eq!(status, 200, "{body}");
        good.push(bytes);
    }
    let listed = versions(&c, &server, &admin, "vault").await;
    assert!(listed.iter().all(|v| v["lockMode"] == "compliance" && v["lockedUntil"].is_string()), "{listed:?}");
    let (_, all) = send(c.get(server.url("/api/stable/repository/collection")).bearer_auth(&admin)).await;
    let vault = all["data"]["collections"].as_array().unwrap().iter().find(|c| c["id"] == "vault").unwrap().clone();
    assert_eq!(
        vault["lock"],
        json!({"mode": "compliance", "minRetention": "30days", "minRetentionSeconds": 2_592_000})
    );

    let pipeline = login(&c, &server, "ci$pipeline", "test", None).await;
    for (who, token, bypass_status) in [
        ("root", &admin, 403),
        ("manager", &manager, 403),
        ("uploader", &uploader, 403),
        ("ci$pipeline", &pipeline, 403),
    ] {
        let (status, body) = send(c.delete(version_url(&server, "vault", 1)).bearer_auth(token)).await;
        let expected = if who == "root" || who == "manager" { 409 } else { 403 };
        assert_eq!(status, expected, "{who}: {body}");
        let url = format!("{}?bypassGovernance=true", version_url(&server, "vault", 1));
        let (status, body) = send(c.delete(url).bearer_auth(token)).await;
        assert_eq!(status, bypass_status, "{who} asking to bypass: {body}");
    }
    let governor = login(&c, &server, "governor", "admin", None).await;
    let url = format!("{}?bypassGovernance=true", version_url(&server, "vault", 1));
    let (status, body) = send(c.delete(url).bearer_auth(&governor)).await;
    assert_eq!(status, 409, "a compliance lock does not give way to the bypass: {body}");
    assert!(body["error"].as_str().unwrap().contains("cannot be deleted by anyone"), "{body}");

    // The flood of an upload-only access key: refused with the reason, the good versions stay.
    for n in 0..10u8 {
        let (status, body) =
            support::upload(&c, &server, &pipeline, "vault", vec![0xEE; 10 + usize::from(n)], None).await;
        assert_eq!(status, 413, "{body}");
        assert!(body["error"].as_str().unwrap().contains("full of versions locked until"), "{body}");
    }
    let numbers: Vec<u64> =
        versions(&c, &server, &admin, "vault").await.iter().map(|v| v["versionNumber"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3]);
    for (i, bytes) in good.iter().enumerate() {
        assert_eq!(&download(&c, &server, &admin, "vault", i as u64 + 1).await, bytes);
    }
    let (status, body) = send(c.get(server.url("/api/stable/repository/collection/vault/health"))).await;
    assert_eq!(status, 500, "{body}");
    let capacity = body["data"]["health"].as_array().unwrap().iter().find(|h| h["name"] == "CapacityValidator");
    assert_eq!(capacity.map(|h| h["status"].clone()), Some(json!(false)), "{body}");

    // A lock lengthens and never shortens.
    let until = listed[1]["lockedUntil"].as_str().unwrap().to_owned();
    let lock_url = format!("{}/lock", version_url(&server, "vault", 2));
    let later = (chrono::DateTime::parse_from_rfc3339(&until).unwrap() + chrono::Duration::days(5)).to_rfc3339();
    let (status, body) = send(c.put(&lock_url).bearer_auth(&manager).json(&json!({ "until": later }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(body["data"]["version"]["lockedUntil"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&later).unwrap()
    );
    let (status, body) = send(c.put(&lock_url).bearer_auth(&manager).json(&json!({ "until": until }))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(c.put(&lock_url).bearer_auth(&uploader).json(&json!({ "until": later }))).await;
    assert_eq!(status, 403, "{body}");

    // Past the locks (version 2's was lengthened): FIFO passes over 2, and deletions proceed.
    clock.advance(chrono::Duration::days(31));
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    let manager = login(&c, &server, "manager", "admin", None).await;
    let (status, body) = support::upload(&c, &server, &uploader, "vault", vec![4; 100], None).await;
    assert_eq!(status, 200, "{body}");
    let numbers: Vec<u64> =
        versions(&c, &server, &manager, "vault").await.iter().map(|v| v["versionNumber"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [2, 3, 4], "version 1 rotated out once its lock ended");
    let (status, body) = send(c.delete(version_url(&server, "vault", 3)).bearer_auth(&manager)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(c.delete(version_url(&server, "vault", 2)).bearer_auth(&manager)).await;
    assert_eq!(status, 409, "version 2's lengthened lock still holds: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_gives_way_only_to_its_role() {
    let clock = Arc::new(ManualClock::starting_now());
    let (server, _config, _data) = start(clock).await;
    let c = client();
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    let (status, body) = support::upload(&c, &server, &uploader, "gov", vec![1; 100], None).await;
    assert_eq!(status, 200, "{body}");
    let bypass = format!("{}?bypassGovernance=true", version_url(&server, "gov", 1));
    for user in ["root", "manager"] {
        let token = login(&c, &server, user, "admin", None).await;
        let (status, body) = send(c.delete(version_url(&server, "gov", 1)).bearer_auth(&token)).await;
        assert_eq!(status, 409, "{user}: {body}");
        let (status, body) = send(c.delete(&bypass).bearer_auth(&token)).await;
        assert_eq!(status, 403, "{user} has no governanceBypass role: {body}");
    }
    let governor = login(&c, &server, "governor", "admin", None).await;
    let (status, body) = send(c.delete(version_url(&server, "gov", 1)).bearer_auth(&governor)).await;
    assert_eq!(status, 409, "without asking, even the role does not bypass: {body}");
    let (status, body) =
        send(c.delete(format!("{}?bypassGovernance=maybe", version_url(&server, "gov", 1))).bearer_auth(&governor))
            .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(c.delete(&bypass).bearer_auth(&governor)).await;
    assert_eq!(status, 200, "{body}");
    assert!(versions(&c, &server, &governor, "gov").await.is_empty());
}

/// A reload whose manifests would weaken a compliance lock is refused as a whole, naming the
/// file: the lock stays, and neither the new collection nor the new role of the same reload
/// is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_weakening_a_compliance_lock_is_refused_whole() {
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    let mut extra = vec!["--config-reload-interval", "0s"];
    extra.extend(NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let c = client();
    let weaker = collection("vault", "compliance", ACL).replace("minRetention: 30d", "minRetention: 1d");
    let promoted = ACL.replace(r#"roles: ["backupUploader", "backupDownloader"]"#, r#"roles: ["collectionManager"]"#);
    add_manifest(config.path(), "backups.riotkit.org/v1alpha1/backupcollections/vault.yaml", &weaker);
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupcollections/fresh.yaml",
        &collection("fresh", "governance", &promoted),
    );
    add_manifest(
        config.path(),
        "backups.riotkit.org/v1alpha1/backupcollections/gov.yaml",
        &collection("gov", "governance", &promoted),
    );
    let pid = server.child.as_ref().unwrap().id();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    let refused = support::eventually(std::time::Duration::from_secs(10), || async {
        server.log().contains("the reloaded manifests are refused").then_some(())
    })
    .await;
    assert!(refused.is_some(), "no refusal logged: {}", server.log());
    assert!(server.log().contains("vault.yaml"), "the refusal names the file: {}", server.log());
    let admin = login(&c, &server, "root", "admin", None).await;
    let (_, all) = send(c.get(server.url("/api/stable/repository/collection")).bearer_auth(&admin)).await;
    let ids: Vec<&str> =
        all["data"]["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&"fresh"), "nothing of the refused reload applies: {ids:?}");
    let vault = all["data"]["collections"].as_array().unwrap().iter().find(|c| c["id"] == "vault").unwrap();
    assert_eq!(vault["lock"]["minRetentionSeconds"], 2_592_000, "the running lock stays");
    // The uploader's roles stay those of the running policy.
    let uploader = login(&c, &server, "uploader", "admin", None).await;
    let (status, _) = send(c.delete(version_url(&server, "gov", 1)).bearer_auth(&uploader)).await;
    assert_eq!(status, 403, "the promotion in the refused reload does not apply");
}

/// A compliance collection on a store that claims Object Lock (`object_lock=true`) but whose
/// bucket does not have it (s3s-fs has none): the server refuses to start, saying why.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliance_collection_needs_a_store_that_enforces_locks() {
    let s3 = backup_store::testing::S3Server::start().await;
    let (config, data) = (config_copy(), tempfile::tempdir().unwrap());
    manifests(config.path());
    let url = format!("{}&object_lock=true", s3.url());
    let extra = ["--storage-url", url.as_str()];
    let refused = backup_server::spawn(support::server_config(&args(config.path(), data.path(), &extra))).await;
    let Err(e) = refused else { panic!("the server started on a bucket without Object Lock") };
    assert!(e.contains("collection vault has a compliance lock") && e.contains("Object Lock"), "{e}");
}
