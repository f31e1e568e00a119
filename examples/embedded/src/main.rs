//! Embeds the backup engine in a command-line program.
//!
//! ```text
//! cargo run --release -p backup-embedded -- --input backup.tar.gz --copies 4 --keep 3
//! pg_dump mydb | cargo run --release -p backup-embedded -- --output restored.sql
//! ```
//!
//! It keeps blobs in a folder on local disk (fsync on) and metadata in the embedded SQLite
//! catalog next to them, so the repository persists from run to run: `recover()` first
//! finishes whatever an interrupted run left. Then it creates the collection (first run) that
//! keeps `--keep` versions, uploads the input (a file, or standard input) as a stream,
//! uploads `--copies − 1` more versions by streaming the latest one back in, which makes the
//! FIFO rotation evict the oldest, lists the versions, and downloads the latest with its
//! digest verified to `--output` (or only verifies it). Memory stays bounded by the part size
//! whatever the input size.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use backup_core::{
    Actor, CollectionId, CollectionSpec, ErrorKind, Limits, UploadOptions, VersionQuery, VersionSelector,
};
use clap::Parser;
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

/// Upload, rotate, list and download with the embedded engine on local disk.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Folder for the catalog and the blobs (created if missing).
    #[arg(long, default_value = "./data/embedded")]
    data: PathBuf,
    /// The file to back up; standard input when absent.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Versions to upload in all (the first from the input, the rest copied from the latest).
    #[arg(long, default_value_t = 4)]
    copies: u32,
    /// Versions the collection keeps (FIFO rotation).
    #[arg(long, default_value_t = 3)]
    keep: u32,
    /// Where to write the latest version; it is only verified when absent.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.copies == 0 || args.keep == 0 {
        return Err("--copies and --keep must be at least 1".into());
    }
    // One process at a time works in the folder: its uploads are its own, and what an
    // interrupted run left is released at once.
    let engine = backup_store::local_repository(&args.data).await?.instance("backup-embedded").build()?;
    // Finish what an interrupted run left: uploads, trash, garbage, staging files (those of
    // killed processes went when the folder was opened).
    let report = engine.recover().await?;
    if report.released_own_uploads + report.aborted_uploads + report.purged_versions + report.garbage_deleted > 0 {
        println!("recover: {report:?}");
    }
    for warning in report.warnings() {
        eprintln!("warning: {warning}");
    }

    let me = Actor::user("embedded");
    let id: CollectionId = "demo".parse()?;
    // Up to 1 TiB per version: the example is about streams, not quotas.
    let soft = 1u64 << 40;
    let spec = CollectionSpec::new("demo-${version}.bin", Limits::new(args.keep, soft, u64::from(args.keep) * soft)?)
        .with_description("backup-embedded demo");
    match engine.create_collection(&me, &id, spec).await {
        Ok(_) => println!("created collection {id}, keeping {} versions", args.keep),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }

    let started = Instant::now();
    let first = match &args.input {
        Some(path) => {
            let file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let len = file.metadata().await?.len();
            let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
            engine.upload_with(&me, &id, body, UploadOptions::new().expected_size(len)).await?
        }
        None => {
            let body = tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), 1 << 20);
            engine.upload(&me, &id, body).await?
        }
    };
    report_rate("uploaded", first.size, started.elapsed());

    for _ in 1..args.copies {
        let started = Instant::now();
        let latest = engine.download(&me, &id, VersionSelector::Latest).await?;
        let size = latest.version().size;
        let v = engine.upload_with(&me, &id, latest.into_stream(), UploadOptions::new().expected_size(size)).await?;
        report_rate(&format!("copied to version {}", v.number), v.size, started.elapsed());
    }

    println!("versions of {id}:");
    for v in engine.versions(&me, &id, VersionQuery::first(1000)).await?.items {
        println!(
            "  {:>3}  {:<20} {:>14} bytes  {}  {}",
            v.number,
            v.filename,
            v.size,
            v.digest,
            v.created_at.to_rfc3339()
        );
    }

    let started = Instant::now();
    let download = engine.download(&me, &id, VersionSelector::Latest).await?;
    let (version, mut stream) = download.into_parts();
    let mut sink: Option<tokio::fs::File> = match &args.output {
        Some(path) => Some(tokio::fs::File::create(path).await?),
        None => None,
    };
    // Every chunk is checked as it flows; the stream ends in an error if the bytes differ.
    while let Some(chunk) = stream.try_next().await? {
        if let Some(f) = sink.as_mut() {
            f.write_all(&chunk).await?;
        }
    }
    if let Some(mut f) = sink {
        f.flush().await?;
    }
    report_rate(&format!("downloaded version {} (digest verified)", version.number), version.size, started.elapsed());
    Ok(())
}

fn report_rate(what: &str, bytes: u64, took: Duration) {
    let mbps = bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9);
    println!("{what}: {bytes} bytes in {:.2} s ({mbps:.0} MB/s)", took.as_secs_f64());
}
