//! P9: `backup-cli` against curl, moving the same 1 GiB file to and from the same server in
//! the same run (the server runs in this process, on the embedded default: local disk and
//! SQLite, with no confirmation grace so that throughput is compared, not a timer).
//!
//! Rounds alternate curl and the client (`P9_ROUNDS`, default 5), each run starting after a
//! `sync` so that no run pays for the write-back of the one before; each side's median time
//! counts. The ratio is the client's throughput over curl's (goal >= 0.95 each way). Then
//! the encrypted throughput (an OpenPGP key made by gpg, when gpg is installed) and the
//! client's peak resident memory during a 1 GiB upload and download.
//!
//! Fairness notes: curl uploads with `-T` (streamed, with a length, as the client does for a
//! file) and downloads to a file; the client also checks the digest of what it downloads,
//! writes through a temporary file and syncs it before renaming. `P9_SIZE_MIB` (1024),
//! `P9_WORK` (a folder on the disk to use, default /var/tmp).
//!
//! Run: `cargo bench -p backup-cli --bench cli_vs_curl`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_server::{ServerConfig, spawn};

const PASSWORD: &str = "a password for the benchmark";
const PASSPHRASE: &str = "a passphrase for the benchmark";

fn main() {
    if !Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        println!("skipped: P9 cli_vs_curl: curl is not installed");
        return;
    }
    let size_mib: u64 = std::env::var("P9_SIZE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let rounds: u32 = std::env::var("P9_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let base = std::env::var("P9_WORK").unwrap_or_else(|_| "/var/tmp".to_owned());
    let work = tempfile::Builder::new().prefix("p9.").tempdir_in(&base).expect("a work folder");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");

    let mut config = ServerConfig::for_tests().user("bench", PASSWORD, &[]).collection(
        "bench",
        3,
        &format!("{}M", size_mib * 2),
        &format!("{}M", size_mib * 8),
        &[("bench", &["collectionManager"])],
    );
    {
        let a = config.args_mut();
        a.storage_url = None;
        a.catalog_url = None;
        a.data_dir = work.path().join("server");
    }
    let server = runtime.block_on(spawn(config)).expect("the server starts");
    let url = server.url("");
    let cli_home = work.path().join("cli");
    std::fs::create_dir_all(&cli_home).unwrap();
    let cli = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_backup-cli"));
        c.args(args).env("BACKUP_SERVER", &url).env("BACKUP_CLI_CONFIG_DIR", &cli_home).current_dir(work.path());
        c
    };
    let mut login =
        cli(&["login", "--username", "bench", "--password-stdin", "--quiet"]).stdin(Stdio::piped()).spawn().unwrap();
    login.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(login.wait().unwrap().success(), "the client logs in");
    let tokens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cli_home.join("tokens.json")).unwrap()).unwrap();
    let token = tokens["servers"][url.trim_end_matches('/')]["token"].as_str().unwrap().to_owned();

    let input = work.path().join("input");
    write_noise(&input, size_mib << 20);
    let bytes = size_mib << 20;
    let upload_url = format!("{url}/api/alpha/repository/collection/bench/version");
    let download_url = format!("{url}/api/alpha/repository/collection/bench/version/latest");
    let auth = format!("Authorization: Bearer {token}");
    let curl_upload = || {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "-f",
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/octet-stream",
            "-o",
            "/dev/null",
            "-T",
        ])
        .arg(&input)
        .arg(&upload_url);
        c
    };
    let curl_download = || {
        let mut c = Command::new("curl");
        c.args(["-sS", "-f", "-H", &auth, "-o"]).arg(work.path().join("by-curl")).arg(&download_url);
        c
    };
    let input_arg = input.to_str().unwrap().to_owned();

    let (mut curl_up, mut cli_up, mut curl_down, mut cli_down) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut up_rss, mut down_rss) = (0u64, 0u64);
    for _ in 0..rounds {
        curl_up.push(timed(&mut curl_upload()).0);
        let (t, rss) = timed(&mut cli(&["upload", "bench", &input_arg, "--quiet"]));
        cli_up.push(t);
        up_rss = up_rss.max(rss);
        curl_down.push(timed(&mut curl_download()).0);
        let (t, rss) = timed(&mut cli(&["download", "bench", "latest", "-o", "by-cli", "--quiet"]));
        cli_down.push(t);
        down_rss = down_rss.max(rss);
    }
    assert_eq!(std::fs::metadata(work.path().join("by-cli")).unwrap().len(), bytes, "the client downloaded it all");
    let mib_s = |d: Duration| size_mib as f64 / d.as_secs_f64();
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    // Every run's seconds too: on a shared disk one run can be far off, which the median
    // absorbs and these show.
    let runs = |v: &[Duration]| v.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join("/");
    let line = |name: &str, cli: &[Duration], curl: &[Duration]| {
        println!(
            "P9 {name} ratio={:.2} cli_mib_s={:.0} curl_mib_s={:.0} size_mib={size_mib} rounds={rounds} cli_runs_s={} curl_runs_s={}",
            median(curl).as_secs_f64() / median(cli).as_secs_f64(),
            mib_s(median(cli)),
            mib_s(median(curl)),
            runs(cli),
            runs(curl),
        );
    };
    line("cli_upload_vs_curl", &cli_up, &curl_up);
    line("cli_download_vs_curl", &cli_down, &curl_down);
    println!("P9 cli_peak_rss upload_mib={:.1} download_mib={:.1} size_mib={size_mib}", mib(up_rss), mib(down_rss));

    match gpg_key(work.path()) {
        None => println!("skipped: P9 cli_encrypted: gpg is not installed"),
        Some((public, secret)) => {
            let (public, secret) = (public.to_str().unwrap().to_owned(), secret.to_str().unwrap().to_owned());
            let (enc_up, enc_up_rss) =
                timed(&mut cli(&["upload", "bench", &input_arg, "--encrypt-to", &public, "--quiet"]));
            let (dec_down, dec_rss) = timed(
                cli(&["download", "bench", "latest", "-o", "decrypted", "--decrypt-with", &secret, "--quiet"])
                    .env("BACKUP_PASSPHRASE", PASSPHRASE),
            );
            assert_eq!(std::fs::metadata(work.path().join("decrypted")).unwrap().len(), bytes, "decrypted it all");
            println!(
                "P9 cli_encrypted upload_mib_s={:.0} download_mib_s={:.0} upload_peak_rss_mib={:.1} download_peak_rss_mib={:.1} size_mib={size_mib}",
                mib_s(enc_up),
                mib_s(dec_down),
                mib(enc_up_rss),
                mib(dec_rss)
            );
        }
    }
    runtime.block_on(server.shutdown());
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs a command to success after a `sync`; its wall time and peak resident memory.
fn timed(cmd: &mut Command) -> (Duration, u64) {
    let _ = Command::new("sync").status();
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).spawn().expect("the command runs");
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib * 1024);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let status = child.wait().unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    (elapsed, sampler.join().unwrap())
}

/// A file of bytes that do not compress, written a MiB at a time.
fn write_noise(path: &Path, len: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// A Curve25519 key made by gpg, exported: (public, secret).
fn gpg_key(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).ok()?;
    let params = dir.join("key-params");
    std::fs::write(
        &params,
        format!(
            "Key-Type: EDDSA\nKey-Curve: ed25519\nSubkey-Type: ECDH\nSubkey-Curve: cv25519\nName-Real: p9\nName-Email: p9@example.org\nExpire-Date: 0\nPassphrase: {PASSPHRASE}\n%commit\n"
        ),
    )
    .ok()?;
    let gpg = || {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &home).args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            PASSPHRASE,
        ]);
        c
    };
    if !gpg().arg("--gen-key").arg(&params).status().is_ok_and(|s| s.success()) {
        return None;
    }
    let public = dir.join("p9-public.asc");
    let secret = dir.join("p9-secret.asc");
    let export = |args: &[&str], to: &Path| {
        let out = gpg().args(args).output().ok().filter(|o| o.status.success())?;
        std::fs::write(to, out.stdout).ok()
    };
    export(&["--armor", "--export", "p9@example.org"], &public)?;
    export(&["--armor", "--export-secret-keys", "p9@example.org"], &secret)?;
    Some((public, secret))
}
