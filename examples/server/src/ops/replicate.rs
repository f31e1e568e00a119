//! Replicas: the stores `--replica-url` and the manifests' `spec.replicas` name, and one
//! replication loop per replica (each holding the replica's log cursor, so that of several
//! instances sharing a catalog one copies to a replica at a time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::replica::{Replica, ReplicationOptions};
use backup_core::{CollectionId, Engine, ErrorKind};
use backup_policy::manifest::Manifests;
use backup_store::{StoreOptions, open_store};
use tokio::task::JoinHandle;

use crate::config::Args;

/// What a replica is made of, to tell whether a reload changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Declared {
    name: String,
    url: String,
    delete_after: Option<Duration>,
    collections: Option<Vec<CollectionId>>,
}

/// The replicas the flags and the manifests declare: the flags' copy every collection, a
/// manifest's only its collection's (collections naming the same replica share it, and must
/// give it the same URL). A replica promoted to primary is not one.
fn declared(args: &Args, manifests: &Manifests) -> Result<Vec<Declared>, String> {
    let mut out: Vec<Declared> = Vec::new();
    for (name, url) in &args.replica_urls {
        if out.iter().any(|d| &d.name == name) {
            return Err(format!("--replica-url: two replicas are called {name}"));
        }
        if args.promote_replica.as_ref() == Some(name) {
            continue;
        }
        out.push(Declared {
            name: name.clone(),
            url: url.clone(),
            delete_after: args.replica_delete_after,
            collections: None,
        });
    }
    let mut by_collection: BTreeMap<String, Declared> = BTreeMap::new();
    for c in &manifests.collections {
        for (i, r) in c.replicas.iter().enumerate() {
            let at = format!("{}: spec.replicas[{i}]", c.file.display());
            if args.replica_urls.iter().any(|(n, _)| n == &r.name) {
                return Err(format!("{at}: {:?} is a --replica-url already (it copies every collection)", r.name));
            }
            let entry = by_collection.entry(r.name.clone()).or_insert_with(|| Declared {
                name: r.name.clone(),
                url: r.url.clone(),
                delete_after: r.delete_after.or(args.replica_delete_after),
                collections: Some(Vec::new()),
            });
            if entry.url != r.url {
                return Err(format!("{at}: replica {:?} has another URL in another collection's manifest", r.name));
            }
            if let Some(list) = entry.collections.as_mut() {
                list.push(c.id.clone());
            }
        }
    }
    out.extend(by_collection.into_values());
    Ok(out)
}

/// Opens a declared replica's store.
fn open(args: &Args, d: &Declared) -> Result<Replica, String> {
    let at = |e: backup_core::Error| format!("replica {}: {e}", d.name);
    let mut replica = open_store(&d.url, &StoreOptions::default())
        .and_then(|opened| opened.replica(&d.name))
        .map_err(at)?
        .location(crate::storage_url_shown(&d.url))
        .lag_limit(args.replica_lag_limit);
    if let Some(delay) = d.delete_after {
        replica = replica.delete_after(delay);
    }
    if let Some(collections) = &d.collections {
        replica = replica.only_for(collections.iter().cloned());
    }
    Ok(replica)
}

/// The replicas of the flags and manifests, opened, for the engine.
///
/// # Errors
/// A line naming the flag or the manifest's entry that cannot be.
pub(crate) fn replicas(args: &Args, manifests: &Manifests) -> Result<Vec<Replica>, String> {
    declared(args, manifests)?.iter().map(|d| open(args, d)).collect()
}

/// The replication loops, one per replica, kept in step with the engine's replicas.
#[derive(Debug)]
pub(crate) struct Replication {
    engine: Engine,
    owner: String,
    options: ReplicationOptions,
    poll: Duration,
    declared: Mutex<Vec<Declared>>,
    loops: Mutex<BTreeMap<String, JoinHandle<()>>>,
}

impl Replication {
    /// Loops for the engine's replicas, as `owner`.
    pub(crate) fn start(engine: Engine, args: &Args, manifests: &Manifests, owner: String) -> Arc<Replication> {
        let options =
            ReplicationOptions::default().workers(usize::from(args.replica_workers)).throttle(args.replica_rate);
        let replication = Arc::new(Replication {
            engine,
            owner,
            options,
            poll: args.replica_poll.max(Duration::from_millis(10)),
            declared: Mutex::new(declared(args, manifests).unwrap_or_default()),
            loops: Mutex::new(BTreeMap::new()),
        });
        replication.sync_loops();
        replication
    }

    /// Applies reloaded manifests: the replicas change only when their declarations did (a
    /// replica that goes keeps its cursor, and goes on where it stopped if it comes back).
    ///
    /// # Errors
    /// As [`replicas`]; the replicas in force stay.
    pub(crate) fn reload(&self, args: &Args, manifests: &Manifests) -> Result<(), String> {
        let now = declared(args, manifests)?;
        let mut before = self.declared.lock().unwrap_or_else(|p| p.into_inner());
        if *before == now {
            return Ok(());
        }
        let opened = now.iter().map(|d| open(args, d)).collect::<Result<Vec<_>, _>>()?;
        self.engine.set_replicas(opened).map_err(|e| e.to_string())?;
        *before = now;
        drop(before);
        self.sync_loops();
        Ok(())
    }

    /// A loop for each replica, none for those gone.
    fn sync_loops(&self) {
        let names: Vec<String> = self.engine.replicas().iter().map(|r| r.name().to_owned()).collect();
        let mut loops = self.loops.lock().unwrap_or_else(|p| p.into_inner());
        loops.retain(|name, task| {
            let keep = names.contains(name);
            if !keep {
                task.abort();
            }
            keep
        });
        for name in names {
            loops.entry(name.clone()).or_insert_with(|| {
                tokio::spawn(replicate(self.engine.clone(), name, self.owner.clone(), self.options.clone(), self.poll))
            });
        }
    }

    /// Stops every loop (a copy in flight is left unfinished: the next run finds it absent or
    /// whole, never partial).
    pub(crate) fn stop(&self) {
        for task in self.loops.lock().unwrap_or_else(|p| p.into_inner()).values() {
            task.abort();
        }
    }
}

/// Replicates to `name` until aborted: a run, then another at once while there is more, else
/// a pause of `poll`.
async fn replicate(engine: Engine, name: String, owner: String, options: ReplicationOptions, poll: Duration) {
    let mut warned = false;
    loop {
        let more = match engine.replicate(&name, &owner, &options).await {
            Ok(run) => {
                if run.copied > 0 || run.deleted > 0 || run.failed > 0 {
                    tracing::info!(replica = %name, copied = run.copied, bytes = run.bytes, already_there = run.already_there,
                        failed = run.failed, deleted = run.deleted, "replication");
                }
                match &run.unavailable {
                    Some(reason) if !warned => {
                        tracing::warn!(replica = %name, reason = %reason, "the replica cannot be written; its queue waits");
                        warned = true;
                    }
                    None if warned => {
                        tracing::info!(replica = %name, "the replica is back; its queue goes on");
                        warned = false;
                    }
                    _ => {}
                }
                run.more && run.unavailable.is_none()
            }
            Err(e @ backup_core::Error::RepositoryMismatch { .. }) => {
                tracing::error!(replica = %name, error = %e, "the replica belongs to another repository; nothing is copied to it");
                false
            }
            // Another instance holds the replica's cursor.
            Err(e) if e.kind() == ErrorKind::Conflict => false,
            Err(e) => {
                tracing::error!(replica = %name, error = %e, "replication failed; it runs again");
                false
            }
        };
        if !more {
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_declare_replicas_and_promotion_takes_one_out() {
        let args = Args::try_parse_from([
            "backup-server",
            "--replica-url",
            "a=memory://",
            "--replica-url",
            "b=memory://",
            "--promote-replica",
            "a",
        ])
        .unwrap();
        let d = declared(&args, &Manifests { collections: Vec::new(), users: Vec::new() }).unwrap();
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(args.storage().unwrap(), "memory://");
        for bad in ["nameless", "Bad=memory://", "x=no-url"] {
            assert!(Args::try_parse_from(["backup-server", "--replica-url", bad]).is_err(), "{bad}");
        }
        let unknown = Args::try_parse_from(["backup-server", "--promote-replica", "z"]).unwrap();
        assert!(unknown.storage().unwrap_err().contains("no --replica-url is called z"));
    }
}
