//! The harness's one error type. Messages are one line and say what was being done.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {seconds:.1}s; last log lines:\n{log_tail}")]
    NotReady {
        what: String,
        seconds: f64,
        log_tail: String,
    },
    #[error("{what} exited early ({status}); last log lines:\n{log_tail}")]
    Exited {
        what: String,
        status: String,
        log_tail: String,
    },
    #[error("{path} not found: {hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("http: {0}")]
    Http(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attach a short "what were we doing" context to io errors.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
