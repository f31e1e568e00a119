//! Group commit: writes that wait for the writer thread run together in one transaction,
//! each in its own savepoint, and share one sync of the log. Every write still sees the ones before it
//! (they run in order on one connection) and fails alone (its savepoint is rolled back); none
//! is acknowledged before the transaction holding it is committed, and a batch holding a
//! synced write is durable before any of its writes is acknowledged. A batch of relaxed writes
//! only (steps the protocol marks relaxed: reservations, renewals, aborts) does not wait for
//! the disk.

use std::panic::AssertUnwindSafe;

use backup_core::{Error, ErrorKind, Result};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::BACKEND;
use crate::error::sqlite_error;

/// A write waiting for a batch.
pub(super) trait Job: Send {
    /// Whether the write must be on disk before it is acknowledged.
    fn synced(&self) -> bool;

    /// Runs the write in a savepoint of `tx` and keeps its outcome. An error is the batch's:
    /// the transaction can no longer be trusted.
    fn run(&mut self, tx: &Transaction<'_>) -> std::result::Result<(), String>;

    /// Delivers the kept outcome, or `failure` when the batch did not commit.
    fn finish(self: Box<Self>, failure: Option<&str>);
}

/// A write and where its result goes.
pub(super) struct WriteJob<T, F> {
    operation: &'static str,
    synced: bool,
    write: Option<F>,
    outcome: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob<T, F> {
    pub(super) fn new(
        operation: &'static str,
        synced: bool,
        write: F,
        reply: tokio::sync::oneshot::Sender<Result<T>>,
    ) -> Self {
        WriteJob { operation, synced, write: Some(write), outcome: None, reply }
    }
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> Result<T> + Send,
{
    fn synced(&self) -> bool {
        self.synced
    }

    fn run(&mut self, tx: &Transaction<'_>) -> std::result::Result<(), String> {
        let Some(write) = self.write.take() else { return Ok(()) };
        tx.execute_batch("SAVEPOINT write").map_err(|e| e.to_string())?;
        // A panicking write fails alone, like one that returns an error.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| write(tx)))
            .unwrap_or_else(|_| Err(Error::internal(format!("sqlite {} panicked", self.operation))));
        let end = if outcome.is_ok() { "RELEASE write" } else { "ROLLBACK TO write; RELEASE write" };
        tx.execute_batch(end).map_err(|e| e.to_string())?;
        self.outcome = Some(outcome);
        Ok(())
    }

    fn finish(self: Box<Self>, failure: Option<&str>) {
        let result = match (failure, self.outcome) {
            (None, Some(outcome)) => outcome,
            (Some(reason), _) => {
                Err(Error::backend(ErrorKind::Unavailable, BACKEND, self.operation, reason.to_owned()))
            }
            (None, None) => Err(Error::internal(format!("sqlite {} was not run", self.operation))),
        };
        // The caller may have gone (its future dropped); the write stands or not either way.
        let _ = self.reply.send(result);
    }
}

/// Runs every waiting job in one `BEGIN IMMEDIATE` transaction on `conn` and commits it, then
/// delivers each outcome. Nothing to do when an earlier batch took the jobs. Each batch sets
/// how its commit syncs: fully when it holds a synced write, else not at all.
pub(super) fn run_batch(conn: &mut Connection, mut jobs: Vec<Box<dyn Job>>) {
    if jobs.is_empty() {
        return;
    }
    let sync =
        if jobs.iter().any(|j| j.synced()) { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
    let failure = match conn.execute_batch(sync) {
        Err(e) => Some(sqlite_error("set sync")(e).to_string()),
        Ok(()) => run_in_transaction(conn, &mut jobs),
    };
    for job in jobs {
        job.finish(failure.as_deref());
    }
}

fn run_in_transaction(conn: &mut Connection, jobs: &mut [Box<dyn Job>]) -> Option<String> {
    match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Err(e) => Some(sqlite_error("begin")(e).to_string()),
        Ok(tx) => {
            let broken = jobs.iter_mut().find_map(|job| job.run(&tx).err());
            match broken {
                // Dropping the transaction rolls every write of the batch back.
                Some(reason) => Some(format!("the batch of writes failed: {reason}")),
                None => tx.commit().err().map(|e| sqlite_error("commit")(e).to_string()),
            }
        }
    }
}
