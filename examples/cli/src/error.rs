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
#[derive(Debug, thiserror::Error)]
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

    /// Whether a retry of an idempotent request may succeed: the network, or a server that
    /// said it is busy or unavailable for now.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            CliError::Network(_) => true,
            CliError::Refused { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}

impl From<reqwest::Error> for CliError {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's Display leaves out the cause ("error sending request for url …"); the
        // innermost error says what actually happened (refused, reset, timed out).
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        let server = e.url().map(|u| u.origin().ascii_serialization()).unwrap_or_else(|| "the server".to_owned());
        let text = if e.is_connect() {
            format!("cannot connect to {server}: {cause}")
        } else if e.is_timeout() {
            format!("{server} did not answer in time: {cause}")
        } else if e.is_body() || e.is_decode() {
            format!("the transfer from {server} was cut: {cause}")
        } else if e.is_request() {
            format!("the request to {server} failed (the transfer was cut): {cause}")
        } else {
            format!("{e}: {cause}")
        };
        CliError::Network(text)
    }
}

pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
