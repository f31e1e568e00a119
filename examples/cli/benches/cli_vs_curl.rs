//! P9: `backup-cli` against curl, moving the same 1 GiB file to and from the same server in
//! the same run (the server runs in a process of its own, on the embedded default: local
//! disk and SQLite, with no confirmation grace so that throughput is compared, not a timer).
//!
//! First with the server's data, the file and the downloads in memory (`/dev/shm`), which
//! gives the headline ratios, then again on disk (`…_disk`), where every upload is synced by
//! the server and every download by the client.
//!
//! Rounds alternate curl and the client (`P9_ROUNDS`, default 7), each run starting after a
//! `sync` so that no run pays for the write-back of the one before; each side's median time
//! counts. The ratio is the client's throughput over curl's (goal >= 0.95 each way). Then
//! the encrypted throughput (an OpenPGP key made by gpg, when gpg is installed) and the
//! client's peak resident memory during a 1 GiB upload and download.
//!
//! Fairness notes: curl uploads with `-T` (streamed, with a length, as the client does for a
//! file) and downloads to a file; the client also checks the digest of what it downloads,
//! writes through a temporary file and syncs it before renaming. `P9_SIZE_MIB` (1024),
//! `P9_MEMORY_WORK` (default /dev/shm), `P9_WORK` (a folder on the disk, default /var/tmp).
//!
//! Run: `cargo bench -p backup-cli --bench cli_vs_curl`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_server::{ServerConfig, spawn};

#[path = "../tests/support/peak_rss.rs"]
mod peak_rss;
use peak_rss::PeakRss;

const PASSWORD: &str = "a password for the benchmark";
const PASSPHRASE: &str = "a passphrase for the benchmark";

fn main() {
    if let Some(data) = std::env::var_os("P9_SERVE_DATA") {
        serve(Path::new(&data));
        return;
    }
    if !Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        println!("skipped: P9 cli_vs_curl: curl is not installed");
        return;
    }
    let size_mib: u64 = std::env::var("P9_SIZE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let rounds: u32 = std::env::var("P9_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    // The headline figures: the server's data, the input and the downloads in memory
    // (tmpfs), so that the clients are compared and not this machine's shared disk, whose
    // speed varied by two between back-to-back runs. Then the same on disk.
    let memory = std::env::var("P9_MEMORY_WORK").unwrap_or_else(|_| "/dev/shm".to_owned());
    if Path::new(&memory).is_dir() {
        measure(Path::new(&memory), "", size_mib, rounds, true);
    } else {
        println!("skipped: P9 cli_vs_curl in memory: no {memory}");
    }
    let disk = std::env::var("P9_WORK").unwrap_or_else(|_| "/var/tmp".to_owned());
    measure(Path::new(&disk), "_disk", size_mib, rounds, false);
}

/// One set of rounds with everything under `base`; figures named with `suffix`.
/// The server, in a process of its own as it runs in production (this program again, with
/// `P9_SERVE_DATA`): it prints its address, and stops when its standard input closes.
fn serve(data: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let mut config = ServerConfig::for_tests().user("bench", PASSWORD, &[]).collection(
        "bench",
        2,
        "8G",
        "32G",
        &[("bench", &["collectionManager"])],
    );
    {
        let a = config.args_mut();
        a.storage_url = None;
        a.catalog_url = None;
        a.data_dir = data.to_path_buf();
    }
    let server = runtime.block_on(spawn(config)).expect("the server starts");
    println!("{}", server.addr);
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    runtime.block_on(server.shutdown());
}

/// A server process of [`serve`].
struct ServerProcess {
    child: std::process::Child,
    url: String,
}

impl ServerProcess {
    fn start(data: &Path) -> ServerProcess {
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .env("P9_SERVE_DATA", data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server process starts");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert!(!line.trim().is_empty(), "the server process printed no address");
        ServerProcess { url: format!("http://{}", line.trim()), child }
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn measure(base: &Path, suffix: &str, size_mib: u64, rounds: u32, encrypted: bool) {
    let work = tempfile::Builder::new().prefix("p9.").tempdir_in(base).expect("a work folder");
    let server = ServerProcess::start(&work.path().join("server"));
    let url = server.url.clone();
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
    // Uploads first, then downloads: an upload's aftermath on the server (the rotation
    // deleting the oldest version) must not land in a download's time.
    for _ in 0..rounds {
        curl_up.push(timed(&mut curl_upload()).0);
        let (t, rss) = timed(&mut cli(&["upload", "bench", &input_arg, "--quiet"]));
        cli_up.push(t);
        up_rss = up_rss.max(rss);
    }
    // Each download writes a new file (the last run's is removed untimed): replacing a
    // 1 GiB file costs freeing it, and the client, which renames over the old file only at
    // the end, also needs room for both meanwhile, which on a full tmpfs made it wait for
    // memory to be reclaimed. Neither is the transfer this compares.
    for _ in 0..rounds {
        let _ = std::fs::remove_file(work.path().join("by-curl"));
        curl_down.push(timed(&mut curl_download()).0);
        let _ = std::fs::remove_file(work.path().join("by-cli"));
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
    line(&format!("cli_upload_vs_curl{suffix}"), &cli_up, &curl_up);
    line(&format!("cli_download_vs_curl{suffix}"), &cli_down, &curl_down);
    println!(
        "P9 cli_peak_rss{suffix} upload_mib={:.1} download_mib={:.1} size_mib={size_mib}",
        mib(up_rss),
        mib(down_rss)
    );
    if !encrypted {
        server.stop();
        return;
    }
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
    server.stop();
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs a command to success after a `sync` and a pause (for what the run before left to
/// the server's background tasks and to the kernel); its wall time and peak resident memory.
fn timed(cmd: &mut Command) -> (Duration, u64) {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).spawn().expect("the command runs");
    let peak = PeakRss::watch(child.id());
    let status = child.wait().unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    (elapsed, peak.bytes())
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
