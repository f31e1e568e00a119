//! A crash test with a real process: a child process (this test binary, re-run) uploads into
//! SQLite + local disk and reports every acknowledged version; the parent kills it with
//! SIGKILL at random moments, 30 times, then recovers and checks that every acknowledged
//! version is present and verifies, nothing pending or partial is visible, and no orphan
//! object or staging file remains.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_core::catalog::CatalogExt;
use backup_core::testing::{body_of, check_described, check_recovered, pattern};
use backup_core::{
    Actor, CollectionId, CollectionSpec, Engine, ErrorKind, Limits, ManualClock, VersionQuery, VersionSelector,
};
use backup_store::{SqliteCatalog, local_disk_store};
use futures::TryStreamExt;

const DIR_VAR: &str = "BACKUP_CRASH_TEST_DIR";
const KILLS: usize = 30;

fn collection() -> CollectionId {
    "crash".parse().unwrap()
}

async fn engine(dir: &Path, clock: Option<Arc<ManualClock>>) -> Engine {
    let catalog = SqliteCatalog::open(dir.join("catalog.db")).await.unwrap();
    let store = local_disk_store(dir.join("blobs")).unwrap();
    let mut b = Engine::builder()
        .catalog(Arc::new(catalog))
        .store(store)
        .part_size(64 << 10)
        .lease(Duration::from_secs(2))
        .grace(Duration::ZERO)
        // The same instance each run: a restart releases what the killed one left at once.
        .instance("crash-test");
    if let Some(clock) = clock {
        b = b.clock(clock);
    }
    b.build().unwrap()
}

/// The child: uploads forever, printing `ACK <number> <id> <size> <digest>` after each
/// acknowledged upload. It only runs when the parent sets the folder variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else { return };
    let engine = engine(Path::new(&dir), None).await;
    let me = Actor::user("crash");
    let limits = Limits::new(100_000, 4 << 20, 100_000 * (4 << 20)).unwrap();
    match engine.create_collection(&me, &collection(), CollectionSpec::new("c-${version}", limits)).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("{e}"),
    }
    let mut seed = u64::from(std::process::id()) << 20;
    loop {
        seed += 1;
        let size = 1024 + (seed.wrapping_mul(2_654_435_761) % (1 << 20)) as usize;
        let v = engine.upload(&me, &collection(), body_of(pattern(seed, size), 16 << 10)).await.unwrap();
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {} {} {} {}", v.number, v.id, v.size, v.digest).unwrap();
        out.flush().unwrap();
    }
}

struct Ack {
    number: u64,
    id: String,
    size: u64,
    digest: String,
}

fn run_child_and_kill(dir: &Path, after: Duration, acks: &mut Vec<Ack>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).filter(|l| l.starts_with("ACK ")).collect::<Vec<_>>()
    });
    std::thread::sleep(after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for line in reader.join().unwrap() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() == 5 {
            acks.push(Ack {
                number: f[1].parse().unwrap(),
                id: f[2].into(),
                size: f[3].parse().unwrap(),
                digest: f[4].into(),
            });
        }
    }
}

fn staging_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else if e.file_name().to_string_lossy().contains('#') {
                found.push(e.path());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if std::env::var(DIR_VAR).is_ok() {
        return; // In the child: only crash_child runs.
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut rng = started.elapsed().as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let mut acks = Vec::new();
    for _ in 0..KILLS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = Duration::from_millis(80 + rng % 400);
        let dir = dir.path().to_path_buf();
        let acks_before = acks.len();
        acks = tokio::task::spawn_blocking(move || {
            let mut acks = acks;
            run_child_and_kill(&dir, after, &mut acks);
            acks
        })
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(240), "bounded in time");
        let _ = acks_before;
    }
    assert!(acks.len() > KILLS, "the children made progress: {} acknowledged", acks.len());

    // Had the catalog been lost right after the last kill, a catalog rebuilt from the store
    // alone would give out no number the lost one had given (a child may have been killed
    // between a commit and its description). (Into a catalog of its own; the store is only
    // read.)
    let original = SqliteCatalog::open(dir.path().join("catalog.db")).await.unwrap();
    let given = original.collection_state(&collection()).await.unwrap().counters.next_number;
    drop(original);
    let rebuilt = Engine::builder()
        .catalog(Arc::new(SqliteCatalog::open(dir.path().join("rebuilt.db")).await.unwrap()))
        .store(local_disk_store(dir.path().join("blobs")).unwrap())
        .adopt_store(true)
        .build()
        .unwrap();
    let report = rebuilt.rebuild_catalog(&backup_core::RebuildOptions::empty_catalog()).await.unwrap();
    let resumed = rebuilt.catalog().collection_state(&collection()).await.unwrap().counters.next_number;
    assert!(
        resumed >= given,
        "numbers below {given} were given out; the rebuilt catalog resumes at {resumed}: {}",
        report.summary()
    );
    // An acknowledged version was described before it was acknowledged: it comes back.
    for ack in &acks {
        let v = rebuilt.catalog().get_version(&collection(), VersionSelector::Number(ack.number)).await;
        assert_eq!(v.map(|v| v.id.to_string()).ok().as_deref(), Some(ack.id.as_str()), "version {}", ack.number);
    }
    drop(rebuilt);

    // Restart: recover with every lease and grace long past.
    // First as the same instance at once: what the last child left is released without
    // waiting for its lease.
    let now = engine(dir.path(), None).await;
    let first = now.recover().await.unwrap();
    assert!(first.is_clean(), "{first:?}");
    let pending = now.catalog().list_pending(&Default::default(), 10).await.unwrap();
    assert!(pending.is_empty(), "a restart releases the dead instance's uploads: {pending:?} ({first:?})");
    drop(now);
    let clock = Arc::new(ManualClock::new(chrono::Utc::now() + chrono::Duration::hours(1)));
    let engine = engine(dir.path(), Some(clock)).await;
    let report = engine.recover().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.unknown_objects, 0, "the engine never leaves an object its catalog does not know: {report:?}");
    let removed =
        backup_store::local_disk::remove_stale_staging_files(&dir.path().join("blobs"), Duration::ZERO).unwrap();
    eprintln!("{} kills, {} acknowledged, recover: {report:?}, staging files removed: {removed}", KILLS, acks.len());

    let me = Actor::user("checker");
    let id = collection();
    for ack in &acks {
        let v = engine
            .version(&me, &id, VersionSelector::Number(ack.number))
            .await
            .unwrap_or_else(|e| panic!("acknowledged {} lost: {e}", ack.number));
        assert_eq!((v.id.to_string(), v.size, v.digest.to_string()), (ack.id.clone(), ack.size, ack.digest.clone()));
    }
    // Every committed version (acknowledged or not) verifies; nothing pending is visible.
    let state = engine.catalog().collection_state(&id).await.unwrap();
    assert!(state.pending.is_empty(), "pending uploads remain after recover");
    let mut listed = Vec::new();
    let mut query = VersionQuery::first(1000);
    loop {
        let page = engine.versions(&me, &id, query).await.unwrap();
        listed.extend(page.items);
        match page.next {
            Some(after) => query = VersionQuery::first(1000).after(after),
            None => break,
        }
    }
    let numbers: Vec<u64> = listed.iter().map(|v| v.number).collect();
    assert_eq!(numbers, (1..state.counters.next_number).collect::<Vec<_>>(), "consecutive numbers, no gaps");
    for v in &listed {
        let d = engine.download(&me, &id, VersionSelector::Number(v.number)).await.unwrap();
        let n = d.into_stream().try_fold(0u64, |n, c| async move { Ok(n + c.len() as u64) }).await.unwrap();
        assert_eq!(n, v.size);
    }
    check_recovered(&engine, chrono::Utc::now() + chrono::Duration::hours(2)).await.unwrap();
    // Every version a killed child committed without its description is described now.
    check_described(&engine).await.unwrap();
    assert!(staging_files(&dir.path().join("blobs")).is_empty(), "no staging file remains");
}
