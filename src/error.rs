//! Typed errors of the library, and the exit status each maps to.
//!
//! Every error renders as one line that names the cause; the binary prints it
//! after `valerix-backup: error:`. Secrets never enter these messages: the
//! only strings that reach them are paths, names and the stderr of PostgreSQL
//! tools, which libpq never fills with passwords.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {msg}")]
    Config { path: PathBuf, msg: String },

    #[error("unknown target '{target}' (configured: {known})")]
    UnknownTarget { target: String, known: String },

    #[error("invalid {what} '{value}': {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },

    #[error("no backup {what}")]
    NoBackup { what: String },

    #[error("{path} is locked by another valerix-backup run ({holder}); wait for it to finish")]
    Locked { path: PathBuf, holder: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },

    #[error("{file}: {reason}")]
    Corrupt { file: String, reason: String },

    #[error("{0}")]
    Refused(String),

    #[error("{0}")]
    Check(String),

    /// The environment lacks what the config needs (a variable, a secret).
    #[error("{0}")]
    Setup(String),

    /// A refused or failed request to Azure; the text is already redacted.
    #[error("{0}")]
    Offsite(String),

    #[error("interrupted")]
    Interrupted,

    #[error("{failed} of {total} failed: {summary}")]
    Partial {
        failed: usize,
        total: usize,
        summary: String,
    },

    /// The work asked for was done and something after it was not (a
    /// backup written, its old ones not deleted): exit 3, as a partial run.
    #[error("{0}")]
    Warning(String),

    /// The clock disagrees with the backups' dates: deleting by age could
    /// delete the wrong ones.
    #[error("{0}")]
    Clock(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Exit statuses, after restic's: 1 failure, 2 bad usage or config,
    /// 3 partial (some targets failed, or retention failed after a good
    /// backup), 11 locked, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. }
            | Error::UnknownTarget { .. }
            | Error::Invalid { .. }
            | Error::Refused(_)
            | Error::Setup(_) => 2,
            Error::Partial { .. } | Error::Warning(_) => 3,
            Error::Locked { .. } => 11,
            Error::Interrupted => 130,
            _ => 1,
        }
    }
}

/// Adds a context line to `std::io::Error`s, the way `anyhow::Context` does,
/// while keeping the library's error typed.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
