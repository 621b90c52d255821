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

    #[error(
        "{path} is locked by another valerix-backup run ({holder}); {hint}",
        hint = Kind::Locked.info().hint
    )]
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

    /// The one target of a command failed; its report holds the cause as
    /// text (a command over several targets fails with `Partial`).
    #[error("{target}: {error}")]
    Failed { target: String, error: String },

    /// A check ran and found problems (status, audit, config check,
    /// azure-check, a restore whose row counts differ from the dump's); the
    /// message says which.
    #[error("{0}")]
    Unsound(String),

    /// A server answered something this program cannot read (psql output,
    /// a Resource Manager document).
    #[error("{0}")]
    Unexpected(String),

    /// A program or environment variable a run needs is absent (the
    /// PostgreSQL client tools, a database's `password_env`).
    #[error("{0}")]
    Missing(String),

    /// An Azure long-running operation (a geo-restore) ended in failure.
    #[error("{0}")]
    OperationFailed(String),

    /// Azure refused to create a resource whose name is taken.
    #[error("{0}")]
    Conflict(String),

    /// The environment lacks what the config needs (a variable, a secret).
    #[error("{0}")]
    Setup(String),

    /// A refused or failed request to Azure; the text is already redacted.
    #[error("{0}")]
    Offsite(String),

    /// Azure has no such resource (container, server, paired region).
    #[error("{0}")]
    NotFound(String),

    /// Azure refused the credential, or the identity may not do this.
    #[error("{0}")]
    Authentication(String),

    /// Azure throttled the request (429) past the retries.
    #[error("{0}")]
    Throttled(String),

    /// A wait ran out: a long-running operation, a server not yet Ready.
    #[error("{0}")]
    Timeout(String),

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

    /// The store refused to change or delete an object under an
    /// immutability policy or a legal hold (Azure's 409
    /// BlobImmutableDueToPolicy / BlobImmutableDueToLegalHold): the copy is
    /// safe, which is the point; callers that delete report it and go on.
    #[error("{0}")]
    Immutable(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The kind of this error: its row in [`KINDS`].
    pub fn kind(&self) -> Kind {
        match self {
            Error::Config { .. } => Kind::Config,
            Error::UnknownTarget { .. } => Kind::UnknownTarget,
            Error::Invalid { .. } => Kind::Invalid,
            Error::NoBackup { .. } => Kind::NoBackup,
            Error::Locked { .. } => Kind::Locked,
            Error::Io { .. } => Kind::Io,
            Error::Tool { .. } => Kind::Tool,
            Error::Corrupt { .. } => Kind::Corrupt,
            Error::Refused(_) => Kind::Refused,
            Error::Failed { .. } => Kind::Failed,
            Error::Unsound(_) => Kind::Unsound,
            Error::Unexpected(_) => Kind::Unexpected,
            Error::Missing(_) => Kind::Missing,
            Error::OperationFailed(_) => Kind::OperationFailed,
            Error::Conflict(_) => Kind::Conflict,
            Error::Setup(_) => Kind::Setup,
            Error::Offsite(_) => Kind::Offsite,
            Error::NotFound(_) => Kind::NotFound,
            Error::Authentication(_) => Kind::Authentication,
            Error::Throttled(_) => Kind::Throttled,
            Error::Timeout(_) => Kind::Timeout,
            Error::Interrupted => Kind::Interrupted,
            Error::Partial { .. } => Kind::Partial,
            Error::Warning(_) => Kind::Warning,
            Error::Clock(_) => Kind::Clock,
            Error::Immutable(_) => Kind::Immutable,
        }
    }

    /// The exit status, from [`KINDS`].
    pub fn exit_code(&self) -> i32 {
        self.kind().info().exit
    }
}

/// One row of the error table.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// kebab-case, for logs and JSON.
    pub name: &'static str,
    pub exit: i32,
    /// What the user can do about it, where there is something general to
    /// say; messages that add it end with ` (<hint>)`.
    pub hint: &'static str,
}

/// Declares [`Kind`] and [`KINDS`] from one table, so that a kind cannot
/// exist without its exit status.
macro_rules! kinds {
    ($($kind:ident $name:literal $exit:literal $hint:literal;)*) => {
        /// Every kind of error the library returns.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($kind,)*
        }

        /// The error kinds as data: name, exit status, hint (after
        /// pgBackRest's `build/error.yaml` and restic's exit codes).
        pub const KINDS: &[KindInfo] = &[
            $(KindInfo { kind: Kind::$kind, name: $name, exit: $exit, hint: $hint },)*
        ];
    };
}

// Exit statuses, as README's "Exit statuses" documents them: 1 failure,
// 2 bad usage or config, 3 partial (some targets failed, or retention failed
// after a good backup), 11 locked, 130 interrupted.
kinds! {
    Config          "config"           2   "";
    UnknownTarget   "unknown-target"   2   "";
    Invalid         "invalid"          2   "";
    NoBackup        "no-backup"        1   "";
    Locked          "locked"           11  "wait for it to finish";
    Io              "io"               1   "";
    Tool            "tool"             1   "";
    Corrupt         "corrupt"          1   "";
    Refused         "refused"          2   "";
    Failed          "failed"           1   "";
    Unsound         "unsound"          1   "";
    Unexpected      "unexpected"       1   "";
    Missing         "missing"          1   "";
    OperationFailed "operation-failed" 1   "";
    Conflict        "conflict"         1   "";
    Setup           "setup"            2   "";
    Offsite         "offsite"          1   "";
    NotFound        "not-found"        1   "";
    Authentication  "authentication"   1   "the credential was refused: check the key, SAS or its expiry";
    Throttled       "throttled"        1   "";
    Timeout         "timeout"          1   "";
    Interrupted     "interrupted"      130 "";
    Partial         "partial"          3   "";
    Warning         "warning"          3   "";
    Clock           "clock"            1   "";
    Immutable       "immutable"        1   "";
}

impl Kind {
    pub const fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.info().name)
    }
}

/// The outcome of a command over several targets (databases, files), from
/// each target's name and error: `Ok` when none failed, the error itself when
/// the only target failed (exit 1), else `Partial` naming every failure
/// (exit 3).
pub fn outcome<'a>(
    what: &str,
    results: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<()> {
    let results: Vec<_> = results.into_iter().collect();
    let failed: Vec<(&str, &str)> = results
        .iter()
        .filter_map(|(name, e)| e.map(|e| (*name, e)))
        .collect();
    match failed.as_slice() {
        [] => Ok(()),
        [(name, e)] if results.len() == 1 => Err(Error::Failed {
            target: name.to_string(),
            error: e.to_string(),
        }),
        _ => Err(Error::Partial {
            failed: failed.len(),
            total: results.len(),
            summary: format!(
                "{what} of {}",
                failed
                    .iter()
                    .map(|(name, e)| format!("{name} ({e})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_order_of_the_kinds() {
        for (i, row) in KINDS.iter().enumerate() {
            assert_eq!(row.kind as usize, i, "{}", row.name);
            assert_eq!(row.kind.info().name, row.name);
        }
    }

    #[test]
    fn exit_statuses_are_the_documented_ones() {
        let code = |e: Error| e.exit_code();
        assert_eq!(code(Error::Setup("x".into())), 2);
        assert_eq!(code(Error::Refused("x".into())), 2);
        assert_eq!(code(Error::Warning("x".into())), 3);
        assert_eq!(code(Error::Timeout("x".into())), 1);
        assert_eq!(code(Error::Authentication("x".into())), 1);
        assert_eq!(code(Error::Interrupted), 130);
        // Once one stringly `Check` kind, and exit 1 as it was.
        for e in [
            Error::Unsound("x".into()),
            Error::Unexpected("x".into()),
            Error::Missing("x".into()),
            Error::OperationFailed("x".into()),
            Error::Conflict("x".into()),
        ] {
            assert_eq!(code(e), 1);
        }
        let locked = Error::Locked {
            path: "l".into(),
            holder: "pid 1".into(),
        };
        assert_eq!(code(locked), 11);
    }

    #[test]
    fn one_failure_of_one_is_itself_more_are_partial() {
        assert!(outcome("backup", [("order", None)]).is_ok());
        let one = outcome("backup", [("order", Some("refused"))]).unwrap_err();
        assert_eq!(
            (one.to_string().as_str(), one.exit_code()),
            ("order: refused", 1)
        );
        assert_eq!(one.kind(), Kind::Failed);
        let two = outcome("backup", [("order", Some("refused")), ("inventory", None)]);
        let two = two.unwrap_err();
        assert_eq!(two.to_string(), "1 of 2 failed: backup of order (refused)");
        assert_eq!(two.exit_code(), 3);
    }
}
