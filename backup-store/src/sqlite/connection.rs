//! Connections and the catalog's own threads: one writer (group commit), a few readers.
//!
//! The catalog never runs on Tokio's blocking pool: a process whose blocking threads are all
//! busy (slow downloads, password hashing, file I/O) must still reach its catalog. Callers
//! send closures to these threads and await the answer.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backup_core::{Error, ErrorKind, Result};
use rusqlite::{Connection, OpenFlags};

use super::BACKEND;
use super::group_commit::{self, Job};
use crate::error::sqlite_error;

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader threads, each with its own connection.
const READERS: usize = 4;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a transaction rolls it back when the transaction is dropped, so what a
    // poisoned lock guards is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens a connection in WAL mode with full sync and foreign keys.
pub(super) fn open_connection(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::backend(ErrorKind::Unavailable, BACKEND, "open", format!("cannot open {}: {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error("open"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sqlite_error("open"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::backend(
            ErrorKind::Unavailable,
            BACKEND,
            "open",
            format!("{} cannot use write-ahead logging (journal mode {mode})", path.display()),
        ));
    }
    // A page cache of up to 32 MiB (SQLite's default is 2 MiB): a commit that trashes an old
    // version touches index pages far from the newest rows, and a long history should not
    // turn those into reads.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;")
        .map_err(sqlite_error("open"))?;
    Ok(conn)
}

/// A read running on a reader thread: it gets a connection, or why there is none.
pub(super) type ReadJob = Box<dyn FnOnce(Result<&mut Connection>) + Send>;

/// The threads of one catalog; they stop when it is dropped.
#[derive(Debug)]
pub(super) struct Threads {
    pub(super) path: PathBuf,
    writes: Mutex<Sender<Box<dyn Job>>>,
    reads: Mutex<Sender<ReadJob>>,
}

impl Threads {
    /// Starts the writer on `writer` and the readers on connections they open.
    pub(super) fn start(path: PathBuf, writer: Connection) -> Result<Threads> {
        let (writes, write_rx) = std::sync::mpsc::channel::<Box<dyn Job>>();
        spawn("sqlite-writer", move || write_loop(writer, write_rx))?;
        let (reads, read_rx) = std::sync::mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let (rx, path) = (read_rx.clone(), path.clone());
            spawn(&format!("sqlite-reader-{i}"), move || read_loop(&path, &rx))?;
        }
        Ok(Threads { path, writes: Mutex::new(writes), reads: Mutex::new(reads) })
    }

    /// Queues a write for the next batch.
    pub(super) fn write(&self, job: Box<dyn Job>) -> Result<()> {
        lock(&self.writes).send(job).map_err(|_| stopped("write"))
    }

    /// Queues a read.
    pub(super) fn read(&self, job: ReadJob) -> Result<()> {
        lock(&self.reads).send(job).map_err(|_| stopped("read"))
    }
}

fn stopped(what: &'static str) -> Error {
    Error::backend(ErrorKind::Unavailable, BACKEND, what, "the catalog's thread stopped")
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| Error::backend(ErrorKind::Unavailable, BACKEND, "start", format!("cannot start {name}: {e}")))
}

/// Takes every write waiting, runs them as one batch, and again, until the catalog is gone.
fn write_loop(mut conn: Connection, rx: Receiver<Box<dyn Job>>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        group_commit::run_batch(&mut conn, jobs);
    }
}

fn read_loop(path: &Path, rx: &Mutex<Receiver<ReadJob>>) {
    let mut conn: Option<Connection> = None;
    loop {
        let job = match lock(rx).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if conn.is_none() {
            match open_connection(path) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            job(Ok(c));
        }
    }
}
