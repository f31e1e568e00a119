//! The command line: flags, commands and their help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A client for the backup server (and backup-repository's API): backups in and out from a
/// shell, streamed, with progress on a terminal and exit codes for scripts.
///
/// Exit codes: 0 done, 1 refused by the server (its reason is printed), 2 usage or local
/// input (flags, files, keys, passphrase, disk), 3 network (unreachable, cut transfer),
/// 4 integrity (size, digest or OpenPGP check failed; nothing written under the target
/// name), 5 the `--command` of an upload failed (nothing stored).
#[derive(Debug, Parser)]
#[command(name = "backup-cli", version, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The server's address, such as `http://127.0.0.1:8080`.
    #[arg(long, env = "BACKUP_SERVER", global = true)]
    pub(crate) server: Option<String>,
    /// A token to use instead of the one `login` stored.
    #[arg(long, env = "BACKUP_TOKEN", global = true, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Machine-readable output: one JSON document on standard output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// No progress bars and no messages but errors.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// How many times an idempotent request (listing, download, health) is tried in all when
    /// the network fails or the server is busy. Uploads, deletions and logins are never
    /// repeated blindly.
    #[arg(long, default_value_t = 4, global = true, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) attempts: u32,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Log in and store the token for this server (mode 0600 in the user's config folder).
    Login(Login),
    /// Revoke the stored token and forget it.
    Logout,
    /// Upload a file, standard input, or a command's output as a new version.
    Upload(Upload),
    /// Download a version to a file (through a temporary file renamed at the end) or to
    /// standard output.
    Download(Download),
    /// The versions of a collection.
    List(CollectionArg),
    /// The collections you may see.
    Collections,
    /// Delete a version (restorable within the server's trash retention).
    Delete(VersionArg),
    /// Restore a deleted version.
    Restore(VersionArg),
    /// A collection's health: backup window, soft and hard limits, integrity. Exits 1 when
    /// a check fails.
    Health(Health),
    /// What the retention will keep and evict at the next upload, with the reasons.
    Retention(CollectionArg),
    /// Ask the server to read every version of a collection back and check its digest.
    Verify(CollectionArg),
    /// The audit log (of one collection, or all you may see): who did what, when, with each
    /// event's chain hash. `--follow` keeps printing new events until interrupted; with
    /// `--json`, one JSON object per line then.
    Audit(Audit),
}

#[derive(Debug, Args)]
pub(crate) struct Audit {
    /// Only this collection's events.
    pub(crate) collection: Option<String>,
    /// Only events numbered above this.
    #[arg(long)]
    pub(crate) after: Option<u64>,
    /// Keep waiting for new events (every two seconds) until interrupted.
    #[arg(long, short)]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Login {
    /// The user, or `user$accessKey` for an access key.
    #[arg(long, short)]
    pub(crate) username: String,
    /// Read the password from the first line of standard input (otherwise `BACKUP_PASSWORD`,
    /// or a prompt on a terminal).
    #[arg(long)]
    pub(crate) password_stdin: bool,
    /// Narrow the token to roles on a collection: `COLLECTION=ROLE[,ROLE…]`; repeatable.
    #[arg(long = "scope", value_name = "COLLECTION=ROLES")]
    pub(crate) scopes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct Upload {
    /// The collection's id.
    pub(crate) collection: String,
    /// The file to upload, or `-` for standard input (the default without `--command`).
    pub(crate) file: Option<PathBuf>,
    /// Run this command with `sh -c` and upload its standard output. When it exits
    /// non-zero, even after its output ended, the upload is cancelled and nothing is stored.
    #[arg(long, conflicts_with = "file")]
    pub(crate) command: Option<String>,
    /// Encrypt to this OpenPGP public key (ASCII-armored or binary) while uploading; the
    /// server receives an ASCII-armored OpenPGP message.
    #[arg(long, value_name = "KEY")]
    pub(crate) encrypt_to: Option<PathBuf>,
    /// Record `NAME=VALUE` in the version's metadata (names: letters, digits, `.`, `_`,
    /// `-`; stored in lower case); repeatable.
    #[arg(long = "meta", value_name = "NAME=VALUE")]
    pub(crate) metadata: Vec<String>,
    /// The upload's idempotency key (default: a new UUID each run). When the answer is lost
    /// after the whole body went out, the client asks the server by this key whether the
    /// version was stored; give the same key to a job's retries and the server stores the
    /// backup once.
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct Download {
    /// The collection's id.
    pub(crate) collection: String,
    /// `latest`, `N` or `vN`.
    #[arg(default_value = "latest")]
    pub(crate) version: String,
    /// Where to write: a file (default: the version's file name in the current folder) or
    /// `-` for standard output. A file named here is replaced only once the download is
    /// complete and verified.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
    /// Replace an existing file whose name the server chose (no `-o FILE`); without it such a
    /// download is refused before it starts, as `curl -J` does.
    #[arg(long)]
    pub(crate) force: bool,
    /// Decrypt with this OpenPGP secret key (ASCII-armored or binary) while downloading.
    #[arg(long, value_name = "KEY")]
    pub(crate) decrypt_with: Option<PathBuf>,
    /// Read the secret key's passphrase from the first line of standard input (otherwise
    /// `BACKUP_PASSPHRASE`, or none).
    #[arg(long, requires = "decrypt_with")]
    pub(crate) passphrase_stdin: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CollectionArg {
    /// The collection's id.
    pub(crate) collection: String,
}

#[derive(Debug, Args)]
pub(crate) struct VersionArg {
    /// The collection's id.
    pub(crate) collection: String,
    /// The version's number (`N` or `vN`).
    pub(crate) version: String,
}

#[derive(Debug, Args)]
pub(crate) struct Health {
    /// The collection's id.
    pub(crate) collection: String,
    /// The collection's health secret, if it has one.
    #[arg(long, env = "BACKUP_HEALTH_CODE", hide_env_values = true)]
    pub(crate) code: Option<String>,
}
