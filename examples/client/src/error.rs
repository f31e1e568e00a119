//! The one error of the crate, sorted by what a caller does about it ([`ErrorKind`]).

use std::fmt;
use std::path::Path;

/// A boxed error, the source of a failed upload body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a call.
///
/// Match on [`Error::kind`] to branch; the variants carry what a caller must show (the
/// server's status and reason, the idempotency key of an upload whose outcome is unknown).
/// `Display` is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status.
    #[error("the server refused: {message} (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's reason (backup-repository's `error` or `message`, with the content
        /// rule's `data.reason`), or the status's own text.
        message: String,
    },
    /// The server could not be reached, did not answer in time, or a transfer was cut.
    #[error("{message}")]
    Network {
        /// What happened, naming the server.
        message: String,
        /// The HTTP client's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The server answered, but not as the API says (not JSON, no token, no version).
    #[error("{message}")]
    Protocol {
        /// What is missing or wrong.
        message: String,
    },
    /// The bytes received are not what the server announced: their number or their digest.
    #[error("{message}")]
    Integrity {
        /// The announced and the received size or digest.
        message: String,
    },
    /// An argument the server would refuse anyway, refused before any request: a server
    /// address that is not `http(s)://host`, metadata or an idempotency key the engine does not
    /// take, a version selector that is not `latest`, `N` or `vN`.
    #[error("{message}")]
    InvalidInput {
        /// What is wrong with which argument.
        message: String,
    },
    /// A local file (the token store) could not be read or written.
    #[error("{message}")]
    Local {
        /// What failed, naming the file.
        message: String,
        /// The file system's error.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The body of an upload failed (its stream yielded an error): the request was aborted
    /// before its end, so the server stored nothing.
    #[error("the upload's body failed: {source}")]
    Body {
        /// The stream's error.
        #[source]
        source: BoxError,
    },
    /// An upload's answer was lost after its body went out, and asking the server by the
    /// idempotency key failed too: the version may or may not be stored. Upload again with
    /// the same key to store it at most once.
    #[error("{error}; whether the server stored the version is unknown ({lookup})")]
    OutcomeUnknown {
        /// The upload's idempotency key.
        key: String,
        /// What hid the upload's answer.
        error: Box<Error>,
        /// Why the lookup by the key failed.
        lookup: Box<Error>,
    },
}

/// The kind of an [`Error`], for callers that branch (exit codes, retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Refused`].
    Refused,
    /// [`Error::Network`].
    Network,
    /// [`Error::Protocol`].
    Protocol,
    /// [`Error::Integrity`].
    Integrity,
    /// [`Error::InvalidInput`].
    InvalidInput,
    /// [`Error::Local`].
    Local,
    /// [`Error::Body`].
    Body,
    /// [`Error::OutcomeUnknown`].
    OutcomeUnknown,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Network { .. } => ErrorKind::Network,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Integrity { .. } => ErrorKind::Integrity,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Local { .. } => ErrorKind::Local,
            Error::Body { .. } => ErrorKind::Body,
            Error::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying an idempotent request again may succeed: the network failed, or the
    /// server said it is busy or unavailable for now (429, 502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::Refused { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }

    /// Whether an upload that failed this way may have been stored all the same: the
    /// connection broke, or the server said it does not know (a 5xx).
    pub(crate) fn outcome_unclear(&self) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::Refused { status, .. } => (500..=599).contains(status),
            _ => false,
        }
    }

    pub(crate) fn protocol(message: impl fmt::Display) -> Self {
        Error::Protocol { message: message.to_string() }
    }

    pub(crate) fn integrity(message: impl fmt::Display) -> Self {
        Error::Integrity { message: message.to_string() }
    }

    pub(crate) fn invalid(message: impl fmt::Display) -> Self {
        Error::InvalidInput { message: message.to_string() }
    }

    /// A local file operation that failed, naming the file.
    pub(crate) fn local(what: &str, path: &Path, e: std::io::Error) -> Self {
        Error::Local { message: format!("cannot {what} {}: {e}", path.display()), source: Some(e) }
    }

    /// A network error whose text is prefixed with `context` (`the download was cut`).
    pub(crate) fn network_in(context: &str, e: reqwest::Error) -> Self {
        match Error::from(e) {
            Error::Network { message, source } => Error::Network { message: format!("{context}: {message}"), source },
            other => other,
        }
    }
}

/// The statuses a server answers while it is busy or unavailable for now.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl From<reqwest::Error> for Error {
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
        let message = if e.is_connect() {
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
        Error::Network { message, source: Some(Box::new(e)) }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
