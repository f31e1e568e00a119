//! What the server does besides answering requests: manifests kept in sync, the scheduled
//! maintenance, scrubs and snapshots, the catalog rebuild and the import from
//! backup-repository, and their progress.

pub(crate) mod audit;
pub(crate) mod import;
pub(crate) mod notify;
pub(crate) mod probes;
pub(crate) mod progress;
pub(crate) mod recovery;
pub(crate) mod replicate;
pub(crate) mod sync;
