//! A full disk, for real: the server's data folder on a small tmpfs (`TEST_SMALL_DISK`, which
//! `.ci/with-services` mounts when run as root). Uploads that meet the full disk are answered
//! `507` with a reason and `Retry-After`; logins and deletions keep working (the disk reserve
//! is given back), and uploads resume once space was freed.

mod support;

use std::time::Duration;

use support::{Server, add_plain_collection, args, client, config_copy, json, login, try_login, upload};

/// Incompressible bytes (tmpfs stores them as they are).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_logins_and_deletions_still_work() {
    let Ok(small) = std::env::var("TEST_SMALL_DISK") else {
        support::skipped(
            "a_full_disk_answers_507_and_logins_and_deletions_still_work",
            "no TEST_SMALL_DISK (a small tmpfs; .ci/with-services mounts one as root)",
        );
        return;
    };
    let data = tempfile::tempdir_in(&small).expect("a folder on the small disk");
    let config = config_copy();
    add_plain_collection(config.path(), "big", 100, "8M", "800M");
    let mut extra =
        vec!["--disk-reserve", "2MiB", "--maintenance-schedule", "* * * * * *", "--upload-confirm-grace", "0s"];
    extra.extend(support::NO_RATE_LIMITS);
    let server = Server::start(&args(config.path(), data.path(), &extra));
    let reserve = data.path().join(".space-reserve");
    assert_eq!(std::fs::metadata(&reserve).expect("the reserve is written at start").len(), 2 << 20);
    let c = client();
    let token = login(&c, &server, "some-user", "admin", None).await;

    // Fill the disk (bounded: the tmpfs holds a few dozen of these).
    let mut stored = Vec::new();
    let full = loop {
        assert!(stored.len() < 200, "the small disk never filled");
        let (status, body) = upload(&c, &server, &token, "big", noise(1 << 20, stored.len() as u64), None).await;
        match status {
            200 => stored.push(body["data"]["version"]["versionNumber"].as_u64().unwrap()),
            _ => break (status, body),
        }
    };
    assert_eq!(full.0, 507, "a full disk is 507 Insufficient Storage: {}", full.1);
    assert!(full.1["error"].as_str().unwrap().contains("storage is full"), "{}", full.1);
    assert!(stored.len() >= 3, "{} versions fitted", stored.len());
    assert!(!reserve.exists(), "the reserve was given back");

    // Logins (a session row in the catalog) and deletions still work.
    let (status, body) = try_login(&c, &server, "some-user", "admin", None).await;
    assert_eq!(status, 200, "a login on a full disk: {body}");
    let again = body["data"]["token"].as_str().unwrap().to_owned();
    let refused = c
        .post(server.url("/api/alpha/repository/collection/big/version"))
        .bearer_auth(&again)
        .body(noise(1024, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 507, "uploads wait while the reserve is given back");
    assert!(refused.headers().get("retry-after").is_some());
    for n in stored.iter().take(8) {
        let url = server.url(&format!("/api/stable/repository/collection/big/version/{n}"));
        let (status, body) = json(c.delete(url).bearer_auth(&again).send().await.unwrap()).await;
        assert_eq!(status, 200, "deleting version {n} on a full disk: {body}");
    }

    // The maintenance (every second here) writes the reserve again, and uploads resume.
    let resumed = support::eventually(Duration::from_secs(30), || {
        let (c, server, again) = (&c, &server, &again);
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, _) = upload(c, server, again, "big", noise(1 << 20, 999), None).await;
            (status == 200).then_some(())
        }
    })
    .await;
    assert!(resumed.is_some(), "uploads resume once space was freed\n{}", server.log());
    assert!(reserve.exists(), "the reserve is back");
}
