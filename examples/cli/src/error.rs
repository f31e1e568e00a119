//! What can go wrong, sorted by the exit code a script sees.

use std::fmt;

/// The process's exit codes (the README documents them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCode {
    /// The server refused the request; its reason is printed.
    Refused = 1,
    /// Bad flags or local input: a missing file, an unreadable key, a wrong passphrase, a
    /// full disk.
    Usage = 2,
    /// The server could not be reached, or a transfer was cut.
    Network = 3,
    /// Bytes that are not what the server stored: a size, digest or OpenPGP integrity
    /// mismatch. Nothing was written under the target name.
    Integrity = 4,
    /// The `--command` producing an upload failed; the server stored nothing.
    CommandFailed = 5,
}

/// An error of a command, with the exit code it leads to.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CliError {
    /// The server answered with an error status.
    #[error("the server refused: {message} (HTTP {status}){hint}", hint = hint(*status))]
    Refused { status: u16, message: String },
    /// Bad flags or local input.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached, or a transfer was cut.
    #[error("{0}")]
    Network(String),
    /// Bytes that are not what the server stored.
    #[error("{0}")]
    Integrity(String),
    /// The producer command failed.
    #[error("{0}")]
    CommandFailed(String),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => "; log in again with `backup-cli login`",
        _ => "",
    }
}

impl CliError {
    pub(crate) fn usage(what: impl fmt::Display) -> Self {
        CliError::Usage(what.to_string())
    }

    pub(crate) fn network(what: impl fmt::Display) -> Self {
        CliError::Network(what.to_string())
    }

    pub(crate) fn integrity(what: impl fmt::Display) -> Self {
        CliError::Integrity(what.to_string())
    }

    /// A local file operation that failed, naming the file.
    pub(crate) fn local(what: &str, path: &std::path::Path, e: std::io::Error) -> Self {
        CliError::Usage(format!("cannot {what} {}: {e}", path.display()))
    }

    /// The exit code this error leads to.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Refused { .. } => ExitCode::Refused,
            CliError::Usage(_) => ExitCode::Usage,
            CliError::Network(_) => ExitCode::Network,
            CliError::Integrity(_) => ExitCode::Integrity,
            CliError::CommandFailed(_) => ExitCode::CommandFailed,
        }
    }
}

impl From<backup_client::Error> for CliError {
    /// The library's kinds onto the documented exit codes.
    fn from(e: backup_client::Error) -> Self {
        use backup_client::ErrorKind;
        match e {
            backup_client::Error::Refused { status, message } => CliError::Refused { status, message },
            e => match e.kind() {
                ErrorKind::Network | ErrorKind::Protocol | ErrorKind::OutcomeUnknown => {
                    CliError::Network(e.to_string())
                }
                ErrorKind::Integrity => CliError::Integrity(e.to_string()),
                _ => CliError::Usage(e.to_string()),
            },
        }
    }
}

pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
