//! `upload`: a file, standard input or a command's output streams into a new version.
//!
//! The body is produced on a blocking thread (file, pipe, OpenPGP) and handed to the HTTP
//! request a chunk at a time. Its end is sent only once the source is known to be good: for
//! a `--command`, after the command exited with 0. When it fails (even after its output
//! ended), the body ends with an error instead, the request is aborted before its last byte,
//! and the server, which commits only a complete body, stores nothing.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_client::{Client, UploadOptions, Version};
use futures::StreamExt;
use serde_json::json;

use crate::cli::Upload;
use crate::error::{CliError, Result};
use crate::openpgp::Recipient;
use crate::output::{Output, size};
use crate::pipe::{self, ChunkWriter, is_upload_stopped};
use crate::require_token;

/// Where the bytes come from.
enum Source {
    File { path: PathBuf, file: std::fs::File, size: Option<u64> },
    Stdin,
    Command { line: String, child: Arc<Mutex<Child>>, stdout: std::process::ChildStdout },
}

impl Source {
    fn open(args: &Upload) -> Result<Source> {
        if let Some(line) = &args.command {
            if line.trim().is_empty() {
                return Err(CliError::usage("--command is empty"));
            }
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(line)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| CliError::usage(format!("cannot run `{line}`: {e}")))?;
            let stdout = child.stdout.take().ok_or_else(|| CliError::usage("the command has no standard output"))?;
            return Ok(Source::Command { line: line.clone(), child: Arc::new(Mutex::new(child)), stdout });
        }
        match &args.file {
            None => Ok(Source::Stdin),
            Some(p) if p.as_os_str() == "-" => Ok(Source::Stdin),
            Some(path) => {
                let file = std::fs::File::open(path).map_err(|e| CliError::local("open", path, e))?;
                let meta = file.metadata().map_err(|e| CliError::local("read", path, e))?;
                if meta.is_dir() {
                    return Err(CliError::usage(format!("{} is a folder; upload an archive of it", path.display())));
                }
                // A pipe or device has no size to announce.
                let size = meta.is_file().then_some(meta.len());
                Ok(Source::File { path: path.clone(), file, size })
            }
        }
    }

    fn size(&self) -> Option<u64> {
        match self {
            Source::File { size, .. } => *size,
            _ => None,
        }
    }

    fn child(&self) -> Option<Arc<Mutex<Child>>> {
        match self {
            Source::Command { child, .. } => Some(child.clone()),
            _ => None,
        }
    }
}

/// Uploads; prints the new version's number (or the version as JSON).
pub(crate) async fn run(client: &Client, out: Output, args: Upload) -> Result<()> {
    require_token(client)?;
    // Flags are checked before a command runs.
    let mut options = UploadOptions::new();
    for (name, value) in metadata(&args.metadata)? {
        options = options.metadata(name, value);
    }
    if let Some(key) = &args.idempotency_key {
        backup_core::check_idempotency_key(key).map_err(|e| CliError::usage(format!("--idempotency-key: {e}")))?;
        options = options.idempotency_key(key);
    }
    let recipient = args.encrypt_to.as_deref().map(Recipient::load).transpose()?;
    let source = Source::open(&args)?;
    let child = source.child();
    // Encryption changes the length: only a plain file's is known up front.
    let length = if recipient.is_none() { source.size() } else { None };
    if let Some(n) = length {
        options = options.content_length(n);
    }
    let bar = out.progress(length, &format!("uploading to {}", args.collection));

    let (writer, mut rx) = pipe::upload_channel();
    let producer = tokio::task::spawn_blocking(move || produce(source, recipient.as_ref(), writer));
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let progress = bar.clone();
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            progress.inc(chunk.len() as u64);
        }
    });
    // Sent once; a lost answer is settled by the library, which asks the server by the key.
    let answer = client.upload(&args.collection, body, options).await.map_err(|e| match e {
        backup_client::Error::OutcomeUnknown { ref key, .. } => CliError::network(format!(
            "{e}: look for it with `backup-cli list {}`, or upload again with --idempotency-key {key}",
            args.collection
        )),
        e => CliError::from(e),
    });
    bar.finish_and_clear();
    let produced = match &answer {
        // The body ended, so the producer has (or is about to) finish.
        Ok(_) => producer.await.map_err(|e| CliError::usage(format!("the upload's reader failed: {e}")))?,
        Err(_) => {
            // The server answered before the end (a refusal), or the connection broke:
            // stop the command rather than let it run for nothing. The producer ends when
            // its channel closes.
            if let Some(child) = &child
                && let Ok(mut child) = child.lock()
            {
                let _ = child.kill();
            }
            match tokio::time::timeout(Duration::from_secs(5), producer).await {
                Ok(Ok(Err(e))) if !matches!(e, CliError::Network(_)) => Err(e),
                _ => Ok(()),
            }
        }
    };
    match (answer, produced) {
        (Ok(uploaded), Ok(())) => {
            if let Some(lost) = &uploaded.lost_answer {
                out.note(&format!("the answer was lost ({lost}); the server had stored the version"));
            }
            if uploaded.replayed {
                // The key's version was stored by an earlier run: the server answered with it
                // as soon as it read the key, without this body (which it may not have read
                // whole), so what was sent says nothing about what is stored.
                out.note(&format!(
                    "idempotency key {:?} already stored version {}: nothing was stored again",
                    uploaded.idempotency_key, uploaded.version.number
                ));
                return report(out, &args.collection, &uploaded.version, None);
            }
            report(out, &args.collection, &uploaded.version, Some(sent.load(Ordering::Relaxed)))
        }
        // The command's failure is the news, whatever the request then made of it.
        (Ok(uploaded), Err(CliError::CommandFailed(why))) => Err(CliError::CommandFailed(format!(
            "{why}, but the server stored version {} anyway: delete it",
            uploaded.version.number
        ))),
        (Ok(_), Err(e)) => Err(e),
        // A refusal came first (the command was then stopped because of it).
        (Err(e @ CliError::Refused { .. }), _) => Err(e),
        // The source failed, and failing the body is what broke the request.
        (Err(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
    }
}

/// `--meta NAME=VALUE`, checked by the engine's own rules before the upload starts.
fn metadata(raw: &[String]) -> Result<backup_core::Metadata> {
    let mut metadata = backup_core::Metadata::new();
    for entry in raw {
        let (name, value) =
            entry.split_once('=').ok_or_else(|| CliError::usage(format!("--meta {entry:?} is not NAME=VALUE")))?;
        metadata.insert(name.to_owned(), value.to_owned());
    }
    backup_core::check_metadata(&metadata).map_err(|e| CliError::usage(format!("--meta: {e}")))?;
    Ok(metadata)
}

/// Checks the server's account of what it stored against what was sent (when this request
/// stored it), and shows it.
fn report(out: Output, collection: &str, version: &Version, sent: Option<u64>) -> Result<()> {
    let number = version.number;
    if let Some(sent) = sent
        && version.size != sent
    {
        return Err(CliError::integrity(format!(
            "sent {sent} bytes but the server stored version {number} with {} bytes",
            version.size
        )));
    }
    let digest = version.digest.as_ref().map_or("-".to_owned(), ToString::to_string);
    out.result(&json!({ "version": version.json() }), || {
        println!("{number}");
    });
    out.note(&format!("stored version {number} of {collection}: {}, {digest}", size(version.size)));
    Ok(())
}

/// A `--command` that runs: its line and its process.
type RunningCommand = (String, Arc<Mutex<Child>>);

/// Reads the source into the body (through OpenPGP when asked), then ends the body, or
/// fails it when the source failed.
fn produce(source: Source, recipient: Option<&Recipient>, mut writer: ChunkWriter) -> Result<()> {
    let expected = source.size();
    let (reader, what, child): (Box<dyn Read + Send>, String, Option<RunningCommand>) = match source {
        Source::File { path, file, .. } => (Box::new(file), path.display().to_string(), None),
        Source::Stdin => (Box::new(std::io::stdin()), "standard input".to_owned(), None),
        Source::Command { line, child, stdout } => {
            (Box::new(stdout), format!("the output of `{line}`"), Some((line, child)))
        }
    };
    let copied = match recipient {
        Some(r) => r.encrypt(reader, &mut writer).map(|()| None),
        None => writer.copy_from(reader).map(Some).map_err(|e| {
            if is_upload_stopped(&e) {
                CliError::network("the upload stopped")
            } else {
                CliError::usage(format!("cannot read {what}: {e}"))
            }
        }),
    };
    let copied = match copied {
        Ok(n) => n,
        Err(e) => {
            if let Some((_, child)) = &child {
                kill(child);
            }
            writer.fail(std::io::Error::other(e.to_string()));
            return Err(e);
        }
    };
    if let (Some(expected), Some(copied)) = (expected, copied)
        && expected != copied
    {
        let e = format!("{what} changed size while it was read ({expected} bytes, then {copied}); nothing was stored");
        writer.fail(std::io::Error::other(e.clone()));
        return Err(CliError::usage(e));
    }
    if let Some((line, child)) = child {
        let status = wait(&child).map_err(|e| CliError::usage(format!("cannot wait for `{line}`: {e}")))?;
        if !status.success() {
            let why = format!("`{line}` failed ({status}); the upload was cancelled");
            writer.fail(std::io::Error::other(why.clone()));
            return Err(CliError::CommandFailed(why));
        }
    }
    writer.finish().map_err(|_| CliError::network("the upload stopped"))
}

fn kill(child: &Mutex<Child>) {
    if let Ok(mut child) = child.lock() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits for the command's exit without holding its lock (the request side may kill it).
fn wait(child: &Mutex<Child>) -> std::io::Result<std::process::ExitStatus> {
    loop {
        let polled = child.lock().map_err(|_| std::io::Error::other("the command's handle is poisoned"))?.try_wait()?;
        if let Some(status) = polled {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
