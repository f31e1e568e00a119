//! OpenPGP without gpg installed, interoperating with gpg both ways: what the client
//! encrypts, gpg decrypts; what gpg encrypts, the client decrypts. Keys of both kinds gpg
//! makes (Curve25519 and RSA).

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

const PASSPHRASE: &str = "a passphrase for the test key";
const UID: &str = "backup-cli test <backup-cli@example.org>";

fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.env("GNUPGHOME", home).args(["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", PASSPHRASE]);
    cmd
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("gpg runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// gpg's unattended key generation parameters: Curve25519 (gpg 2.4's default), RSA (gpg
/// 2.2's), and an RSA key for signing only.
const CURVE25519: &str = "Key-Type: EDDSA\nKey-Curve: ed25519\nSubkey-Type: ECDH\nSubkey-Curve: cv25519\n";
const RSA: &str = "Key-Type: RSA\nKey-Length: 3072\nSubkey-Type: RSA\nSubkey-Length: 3072\n";
const RSA_SIGN_ONLY: &str = "Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\n";

/// A fresh key in a new GnuPG home; its exported public and secret keys.
fn key(dir: &Path, kind: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let params = dir.join("key-params");
    std::fs::write(
        &params,
        format!(
            "{kind}Name-Real: backup-cli test\nName-Email: backup-cli@example.org\nExpire-Date: 0\nPassphrase: {PASSPHRASE}\n%commit\n"
        ),
    )
    .unwrap();
    run_ok(gpg(&home).arg("--gen-key").arg(&params));
    let public = dir.join("public.asc");
    let secret = dir.join("secret.asc");
    std::fs::write(&public, run_ok(gpg(&home).args(["--armor", "--export", UID]))).unwrap();
    std::fs::write(&secret, run_ok(gpg(&home).args(["--armor", "--export-secret-keys", UID]))).unwrap();
    (public, secret)
}

fn gpg_available() -> bool {
    match Command::new("gpg").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            assert!(std::env::var_os("CI").is_none(), "CI installs gnupg (.ci/run); gpg is missing");
            eprintln!("skipped: no gpg on this machine");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_gpg_read_each_others_messages() {
    if !gpg_available() {
        return;
    }
    let env = Env::start().await;
    env.login("admin").await;
    let plain = noise(3 << 20, 11);
    std::fs::write(env.path("plain"), &plain).unwrap();
    // Plain bytes are refused by the OpenPGP collection: the rule is on.
    assert_exit(&env.run(&["upload", "secure", "plain"], b"").await, 1, "GPG header");

    let mut number = 0;
    let mut kept = Vec::new();
    for (algorithm, kind) in [("Curve25519", CURVE25519), ("RSA", RSA)] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        let (public, secret) = key(dir.path(), kind);
        let (public, secret) = (public.to_str().unwrap(), secret.to_str().unwrap());

        // The client encrypts while it uploads; gpg decrypts what the server stored.
        let up = env.run(&["upload", "secure", "plain", "--encrypt-to", public], b"").await;
        assert_ok(&up);
        number += 1;
        let stored = env.path("stored.asc");
        assert_ok(&env.run(&["download", "secure", &number.to_string(), "-o", "stored.asc"], b"").await);
        let head = std::fs::read(&stored).unwrap();
        assert!(head.starts_with(b"-----BEGIN PGP MESSAGE-----"), "ASCII-armored ({algorithm})");
        let decrypted = run_ok(gpg(&home).arg("--decrypt").arg(&stored));
        assert!(decrypted == plain, "gpg reads the client's message ({algorithm})");

        // gpg encrypts (and compresses, by default); the client decrypts while it downloads.
        let by_gpg = env.path("by-gpg.asc");
        run_ok(
            gpg(&home)
                .args(["--yes", "--trust-model", "always", "--armor", "--encrypt", "-r", UID, "-o"])
                .arg(&by_gpg)
                .arg(env.path("plain")),
        );
        assert_ok(&env.run(&["upload", "secure", "by-gpg.asc"], b"").await);
        number += 1;
        let passphrase = format!("{PASSPHRASE}\n");
        let n = number.to_string();
        let args = ["download", "secure", &n, "-o", "restored", "--decrypt-with", secret, "--passphrase-stdin"];
        let down = env.run(&args, passphrase.as_bytes()).await;
        assert_ok(&down);
        assert!(std::fs::read(env.path("restored")).unwrap() == plain, "the client reads gpg's message ({algorithm})");
        std::fs::remove_file(env.path("restored")).unwrap();

        // A wrong passphrase: a clear refusal, and no file.
        let wrong = env.run(&args, b"not the passphrase\n").await;
        assert_exit(&wrong, 2, "passphrase");
        assert!(!env.path("restored").exists());

        // Stream the client's own message back through the client.
        let own = number - 1;
        let via_env = env
            .run_env(
                &["download", "secure", &own.to_string(), "-o", "-", "--decrypt-with", secret, "--quiet"],
                b"",
                &[("BACKUP_PASSPHRASE", PASSPHRASE)],
            )
            .await;
        assert_ok(&via_env);
        assert!(via_env.stdout == plain, "both ends the client ({algorithm})");
        kept.push((secret.to_owned(), dir));
    }

    // A key for signing only is not encrypted to.
    let dir = tempfile::tempdir().unwrap();
    let (public, _) = key(dir.path(), RSA_SIGN_ONLY);
    let refused = env.run(&["upload", "secure", "plain", "--encrypt-to", public.to_str().unwrap()], b"").await;
    assert_exit(&refused, 2, "no key that may encrypt");

    // A message altered after encryption fails its integrity check: exit 4, no file.
    let mut text = String::from_utf8(std::fs::read(env.path("by-gpg.asc")).unwrap()).unwrap();
    let line_start = text.len() / 2;
    let at = line_start + text[line_start..].find('\n').unwrap() + 10;
    let flipped = if &text[at..at + 1] == "A" { "B" } else { "A" };
    text.replace_range(at..at + 1, flipped);
    std::fs::write(env.path("altered.asc"), text).unwrap();
    assert_ok(&env.run(&["upload", "secure", "altered.asc"], b"").await);
    let (secret, _dir) = kept.pop().unwrap();
    let altered = env
        .run_env(
            &["download", "secure", "latest", "-o", "altered-plain", "--decrypt-with", &secret],
            b"",
            &[("BACKUP_PASSPHRASE", PASSPHRASE)],
        )
        .await;
    assert_exit(&altered, 4, "integrity");
    let left: Vec<String> = std::fs::read_dir(env.work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.contains("altered-plain")), "nothing left behind: {left:?}");
    env.server.shutdown().await;
}
