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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::cli::Upload;
use crate::client::{Client, read_json, segment};
use crate::error::{CliError, Result};
use crate::openpgp::Recipient;
use crate::output::{Output, size};
use crate::pipe::{self, ChunkWriter, is_upload_stopped};

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
    client.require_token()?;
    let metadata = metadata_headers(&args.metadata)?;
    let key = match &args.idempotency_key {
        Some(key) => {
            backup_core::check_idempotency_key(key).map_err(|e| CliError::usage(format!("--idempotency-key: {e}")))?;
            key.clone()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let recipient = args.encrypt_to.as_deref().map(Recipient::load).transpose()?;
    let source = Source::open(&args)?;
    let child = source.child();
    // Encryption changes the length: only a plain file's is known up front.
    let length = if recipient.is_none() { source.size() } else { None };
    let bar = out.progress(length, &format!("uploading to {}", args.collection));

    let (writer, mut rx) = pipe::upload_channel();
    let producer = tokio::task::spawn_blocking(move || produce(source, recipient.as_ref(), writer));
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let progress = bar.clone();
    // Whether the request got as far as its body (a connection was made): only then can the
    // server have stored anything.
    let reached = Arc::new(AtomicBool::new(false));
    let reached_body = reached.clone();
    let body = futures::stream::poll_fn(move |cx| {
        reached_body.store(true, Ordering::Relaxed);
        rx.poll_recv(cx)
    })
    .inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            progress.inc(chunk.len() as u64);
        }
    });
    let path = format!("/api/alpha/repository/collection/{}/version", segment(&args.collection));
    let mut request = client
        .request(Method::POST, &path)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body));
    if let Some(n) = length {
        request = request.header(CONTENT_LENGTH, n);
    }
    for (name, value) in metadata {
        request = request.header(name, value);
    }
    request = request.header(IDEMPOTENCY_KEY, &key);
    // Never sent twice: a lost answer does not mean that nothing was stored (the key tells).
    let answer = match client.send_once(request).await {
        Ok(response) => read_json(response).await,
        Err(e) => Err(e),
    };
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
    // The whole body went out and the answer is missing or says the outcome is unknown: ask
    // the server by the key whether the version was stored, before calling it a failure.
    let answer = match (answer, &produced) {
        (Err(e), Ok(())) if reached.load(Ordering::Relaxed) && outcome_unclear(&e) => {
            match stored_under(client, &args.collection, &key).await {
                Ok(Some(version)) => {
                    out.note(&format!("the answer was lost ({e}); the server had stored the version"));
                    Ok(json!({ "data": { "version": version } }))
                }
                Ok(None) => Err(e),
                Err(asked) => Err(CliError::network(format!(
                    "{e}; whether the server stored the version is unknown ({asked}): look for it with \
                 `backup-cli list {}`, or upload again with --idempotency-key {key}",
                    args.collection
                ))),
            }
        }
        (answer, _) => answer,
    };
    match (answer, produced) {
        (Ok(value), Ok(())) => report(out, &args.collection, &value, sent.load(Ordering::Relaxed)),
        // The command's failure is the news, whatever the request then made of it.
        (Ok(value), Err(CliError::CommandFailed(why))) => Err(CliError::CommandFailed(format!(
            "{why}, but the server stored version {} anyway: delete it",
            cell_number(&value)
        ))),
        (Ok(_), Err(e)) => Err(e),
        // A refusal came first (the command was then stopped because of it).
        (Err(e @ CliError::Refused { .. }), _) => Err(e),
        // The source failed, and failing the body is what broke the request.
        (Err(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
    }
}

/// The request header of an upload's idempotency key.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Whether a failed upload may have been stored all the same: the connection broke after the
/// body went out, or the server said it does not know (a 5xx).
fn outcome_unclear(e: &CliError) -> bool {
    match e {
        CliError::Network(_) => true,
        CliError::Refused { status, .. } => (500..=599).contains(status),
        _ => false,
    }
}

/// The version the server stored under this idempotency key, if any (asked again while the
/// network fails).
async fn stored_under(client: &Client, collection: &str, key: &str) -> Result<Option<Value>> {
    let path = format!(
        "/api/stable/repository/collection/{}/version?idempotencyKey={}",
        segment(collection),
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
    );
    let found = client.get_json(&path).await?;
    Ok(found.pointer("/data/versions/0").cloned())
}

/// `--meta NAME=VALUE` as the server's `X-Backup-Meta-NAME` headers, values
/// percent-encoded (so that any text, new lines too, fits in a header).
fn metadata_headers(raw: &[String]) -> Result<Vec<(String, String)>> {
    let mut metadata = backup_core::Metadata::new();
    for entry in raw {
        let (name, value) =
            entry.split_once('=').ok_or_else(|| CliError::usage(format!("--meta {entry:?} is not NAME=VALUE")))?;
        metadata.insert(name.to_owned(), value.to_owned());
    }
    // The engine's own rules, checked before the upload starts.
    backup_core::check_metadata(&metadata).map_err(|e| CliError::usage(format!("--meta: {e}")))?;
    Ok(metadata
        .iter()
        .map(|(name, value)| {
            let value = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
            (format!("x-backup-meta-{name}"), value)
        })
        .collect())
}

fn cell_number(value: &Value) -> String {
    value.pointer("/data/version/versionNumber").map(Value::to_string).unwrap_or_else(|| "?".to_owned())
}

/// Checks the server's account of what it stored against what was sent, and shows it.
fn report(out: Output, collection: &str, value: &Value, sent: u64) -> Result<()> {
    let version = value.pointer("/data/version").cloned().unwrap_or(Value::Null);
    let number = version.get("versionNumber").and_then(Value::as_u64);
    let stored = version.get("filesize").and_then(Value::as_u64);
    let Some(number) = number else {
        return Err(CliError::network(format!("the server's answer has no version number: {value}")));
    };
    if stored != Some(sent) {
        return Err(CliError::integrity(format!(
            "sent {sent} bytes but the server stored version {number} with {} bytes",
            stored.map_or("an unknown number of".to_owned(), |n| n.to_string())
        )));
    }
    let digest = version.get("digest").and_then(Value::as_str).unwrap_or("-").to_owned();
    out.result(&json!({ "version": version }), || {
        println!("{number}");
    });
    out.note(&format!("stored version {number} of {collection}: {}, {digest}", size(sent)));
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
