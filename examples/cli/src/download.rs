//! `download`: a version streams to a temporary file next to the target (or to standard
//! output), is checked against the size and digest the server announced, and only then is
//! renamed to the target name. A cut, damaged or undecryptable download never leaves a file
//! under that name: the temporary file is removed (a process killed outright leaves a hidden
//! `.NAME.*.partial` beside it, never the target).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use backup_client::Client;
use futures::StreamExt;
use serde_json::json;
use tempfile::NamedTempFile;

use crate::cli::Download;
use crate::error::{CliError, Result};
use crate::openpgp::Decryptor;
use crate::output::{Output, size};
use crate::pipe::{self, ChunkReader, TransferCut};
use crate::require_token;

/// Where the bytes go.
enum Target {
    Stdout,
    /// `replace`: whether an existing file under `path` may be replaced (the user named the
    /// file, or gave `--force`); otherwise the name came from the server or the default.
    File {
        path: PathBuf,
        tmp: NamedTempFile,
        replace: bool,
    },
}

/// Downloads; prints where the version went.
pub(crate) async fn run(client: &Client, out: Output, args: Download) -> Result<()> {
    require_token(client)?;
    backup_client::check_version_selector(&args.version)?;
    let passphrase = if args.passphrase_stdin {
        Some(crate::read_stdin_line("passphrase")?)
    } else {
        std::env::var("BACKUP_PASSPHRASE").ok()
    };
    let decryptor = args.decrypt_with.as_deref().map(|key| Decryptor::load(key, passphrase)).transpose()?;
    // Retried until the server answers; the size and digest it announces are checked by the
    // library as the bytes stream.
    let mut download = client.download(&args.collection, &args.version).await?;
    let length = download.content_length();
    let digest = download.digest().map(ToString::to_string);

    let target = open_target(args.output.as_deref(), download.file_name(), &args, decryptor.is_some())?;
    let sink: Box<dyn Write + Send> = match &target {
        Target::Stdout => Box::new(BufWriter::with_capacity(pipe::CHUNK, std::io::stdout())),
        Target::File { tmp, .. } => {
            let clone = || tmp.as_file().try_clone().map_err(|e| CliError::local("write", tmp.path(), e));
            Box::new(SyncingWriter::new(clone()?, clone()?))
        }
    };
    let what = match &target {
        Target::Stdout => "standard output".to_owned(),
        Target::File { path, .. } => path.display().to_string(),
    };

    let bar = out.progress(length, &format!("downloading {} {}", args.collection, args.version));
    let (mut tx, reader) = pipe::download_channel();
    let sink_name = what.clone();
    let consumer = tokio::task::spawn_blocking(move || consume(reader, sink, decryptor.as_ref(), &sink_name));
    let progress = bar.clone();
    let pump = async move {
        while let Some(chunk) = download.next().await {
            match chunk {
                Ok(c) => {
                    progress.inc(c.len() as u64);
                    if !tx.send(&c).await {
                        return;
                    }
                }
                Err(e) => {
                    let e = match CliError::from(e) {
                        CliError::Integrity(why) => {
                            CliError::Integrity(format!("{why}; nothing was written under the target name"))
                        }
                        e => e,
                    };
                    tx.cut(TransferCut(e)).await;
                    return;
                }
            }
        }
        tx.finish().await;
    };
    let outcome = tokio::select! {
        // Ctrl-C or a TERM (a job's timeout): the temporary file is removed on the way out.
        signal = stopped() => Err(CliError::usage(format!("{signal}; nothing was written under the target name"))),
        (_, consumed) = futures::future::join(pump, consumer) => {
            consumed.unwrap_or_else(|e| Err(CliError::usage(format!("the download's writer failed: {e}"))))
        }
    };
    bar.finish_and_clear();
    // Any error drops `target`, and with it the temporary file.
    let received = outcome?;
    let written = match target {
        Target::Stdout => "-".to_owned(),
        Target::File { path, tmp, replace } => {
            commit(tmp, &path, replace)?;
            path.display().to_string()
        }
    };
    out.result(
        &json!({
            "collection": args.collection,
            "version": args.version,
            "file": written,
            "size": received,
            "digest": digest,
            "decrypted": args.decrypt_with.is_some(),
        }),
        || {
            if written != "-" {
                println!("{written}");
            }
        },
    );
    out.note(&format!(
        "downloaded {} {} to {what}: {}, {}",
        args.collection,
        args.version,
        size(received),
        digest.as_deref().map_or("no digest announced".to_owned(), |d| format!("{d} verified"))
    ));
    Ok(())
}

/// How many bytes are written between two background syncs.
const SYNC_EVERY: u64 = 64 << 20;

/// A file writer that has a second thread sync what it wrote every [`SYNC_EVERY`] bytes, so
/// that the sync before the rename is short: the disk writes while the network delivers,
/// instead of all at the end (that was a sixth of a 1 GiB download). Unbuffered: it is
/// given whole chunks.
struct SyncingWriter {
    out: std::fs::File,
    unsynced: u64,
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    syncer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl SyncingWriter {
    fn new(file: std::fs::File, for_syncs: std::fs::File) -> Self {
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = std::thread::spawn(move || {
            // An error is kept and returned: a later sync of the same file may not report
            // it again.
            while woken.recv().is_ok() {
                for_syncs.sync_data()?;
            }
            Ok(())
        });
        SyncingWriter { out: file, unsynced: 0, wake: Some(wake), syncer: Some(syncer) }
    }
}

impl Write for SyncingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(data)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.out.flush()?;
            self.unsynced = 0;
            if let Some(wake) = &self.wake {
                // A sync still running covers this too.
                let _ = wake.try_send(());
            }
        }
        Ok(n)
    }

    /// Flushes, waits for the background syncs and reports their errors.
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.wake = None;
        match self.syncer.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the background sync failed")),
            None => Ok(()),
        }
    }
}

/// Waits for Ctrl-C or SIGTERM; which one came.
async fn stopped() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                Ok(()) = tokio::signal::ctrl_c() => "interrupted",
                Some(()) = term.recv() => "terminated",
                else => futures::future::pending::<&'static str>().await,
            };
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling here: never "stopped".
        futures::future::pending::<()>().await;
    }
    "interrupted"
}

/// Resolves the target, and creates the temporary file beside it.
fn open_target(output: Option<&Path>, server_name: Option<&str>, args: &Download, decrypting: bool) -> Result<Target> {
    let default_name = || {
        let name = server_name.map(str::to_owned).unwrap_or_else(|| format!("{}-{}", args.collection, args.version));
        // A decrypted backup is no longer the `.gpg` file the server holds.
        match name.rsplit_once('.') {
            Some((stem, "gpg" | "asc" | "pgp")) if decrypting && !stem.is_empty() => stem.to_owned(),
            _ => name,
        }
    };
    let (path, named_by_user) = match output {
        Some(p) if p.as_os_str() == "-" => return Ok(Target::Stdout),
        Some(p) if p.is_dir() => (p.join(default_name()), false),
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(default_name()), false),
    };
    let replace = named_by_user || args.force;
    if !replace && std::fs::symlink_metadata(&path).is_ok() {
        return Err(refuse_to_replace(&path));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{base}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(|e| CliError::local("create a file in", &dir, e))?;
    Ok(Target::File { path, tmp, replace })
}

/// The refusal to replace a file whose name the user did not give.
fn refuse_to_replace(path: &Path) -> CliError {
    CliError::usage(format!(
        "{} exists and its name came from the server: give --force to replace it, or -o to name the file",
        path.display()
    ))
}

/// Writes what arrives (decrypted when asked) on the blocking thread.
fn consume(
    mut reader: ChunkReader,
    mut sink: Box<dyn Write + Send>,
    decryptor: Option<&Decryptor>,
    what: &str,
) -> Result<u64> {
    let write_failed = |e: std::io::Error| CliError::usage(format!("cannot write {what}: {e}"));
    match decryptor {
        None => {
            while let Some(chunk) = reader.next_chunk().map_err(read_failure)? {
                sink.write_all(&chunk).map_err(write_failed)?;
            }
        }
        Some(d) => {
            d.decrypt(&mut reader, &mut sink)?;
        }
    }
    sink.flush().map_err(write_failed)?;
    reader.finish().map_err(read_failure)
}

fn read_failure(e: std::io::Error) -> CliError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<TransferCut>()) {
        Some(cut) => cut.0.clone(),
        None => CliError::network(format!("the download was cut: {e}")),
    }
}

/// Makes the verified file durable, then gives it the target name: replacing a file there
/// only when `replace`; otherwise atomically refused if one appeared during the download.
fn commit(tmp: NamedTempFile, path: &Path, replace: bool) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| CliError::local("write", tmp.path(), e))?;
    if replace {
        tmp.persist(path).map_err(|e| CliError::local("rename the download to", path, e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => refuse_to_replace(path),
            _ => CliError::local("rename the download to", path, e.error),
        })?;
    }
    // The rename itself survives a crash once the folder is synced (where folders open).
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()).or(Some(Path::new(".")))
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
