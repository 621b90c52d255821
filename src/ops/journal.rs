//! The journal of a run that creates or renames databases, and the recovery
//! of runs that died half-way.
//!
//! A restore loads a fresh database and then swaps names with the live one;
//! a deep verify loads a scratch database and drops it. Killed in between
//! (SIGKILL, OOM, a container stop, a lost connection), either would leave a
//! database behind, and a restore killed inside its swap would leave the
//! live database refusing connections. So, as pgBackRest records intent
//! before a destructive step, the run first writes a journal into the backup
//! directory (0600) naming the live, fresh and old databases and the step,
//! and holds it locked while it lives. Any later run finds journals whose
//! owner is gone and settles them from what the server shows:
//!
//! - fresh database still there: the swap never committed. The live
//!   database gets its connections back, unchanged; the fresh one, which
//!   only that run created, is dropped. The restore must be rerun.
//! - fresh database gone, old one there: the swap committed. The live name
//!   holds the restored (already proven) data; the previous database is kept
//!   under its `__old_` name, accepting connections, for the operator.
//!
//! Nothing else is ever dropped: the journal is the proof that the fresh
//! database is the dead run's own (its name is unique to that run).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::catalog::Catalog;
use crate::catalog::fsutil::{OwnedFile, claim_abandoned};
use crate::config::Database;
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::pg::db::Server;

pub const JOURNAL_SUFFIX: &str = ".journal";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Restore,
    Verify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Creating and loading `fresh`; the live database is not touched.
    Load,
    /// Renaming: `live` may refuse connections until the swap is settled.
    Swap,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    /// The configured database (its `name`), whose server and credentials
    /// a recovery uses.
    pub database: String,
    pub host: String,
    pub port: u16,
    /// The name that holds (or will hold) the restored data.
    pub live: String,
    /// The database this run creates.
    pub fresh: String,
    /// The name the replaced database takes in the swap, if one is replaced.
    pub old: Option<String>,
    pub keep_old: bool,
    /// The backup file being restored.
    pub file: String,
    pub step: Step,
    pub pid: u32,
    pub started: String,
}

impl Record {
    pub fn new(kind: Kind, db: &Database, live: &str, fresh: &str, file: String) -> Record {
        Record {
            kind,
            database: db.name.clone(),
            host: db.host.clone(),
            port: db.port,
            live: live.to_string(),
            fresh: fresh.to_string(),
            old: None,
            keep_old: false,
            file,
            step: Step::Load,
            pid: std::process::id(),
            started: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }

    fn what(&self) -> String {
        match self.kind {
            Kind::Restore => format!(
                "restore of {} from {} (pid {}, started {})",
                self.live, self.file, self.pid, self.started
            ),
            Kind::Verify => format!(
                "verify --deep of {} (pid {}, started {})",
                self.file, self.pid, self.started
            ),
        }
    }
}

/// A journal held by the running command; dropping it without
/// [`Journal::finish`] leaves it for the next run to settle.
#[derive(Debug)]
pub struct Journal {
    file: OwnedFile,
    pub record: Record,
}

impl Journal {
    pub fn begin(catalog: &Catalog, record: Record) -> Result<Journal> {
        let path = catalog
            .dir()
            .join(format!(".{}{JOURNAL_SUFFIX}", record.fresh));
        let file = OwnedFile::create(&path, &to_json(&record))?;
        Ok(Journal { file, record })
    }

    /// Records the next step before it is taken.
    pub fn step(&mut self, step: Step) -> Result<()> {
        self.record.step = step;
        self.file.replace(&to_json(&self.record))
    }

    /// The run is over and nothing is left to settle.
    pub fn finish(self) -> Result<()> {
        self.file.remove()
    }

    /// Drops this run's fresh database and closes the journal. When the drop
    /// fails (the server went away), the journal stays for the next run to
    /// settle and the failure is a warning: the caller's own error, the
    /// cause of the clean-up, is the one worth reporting.
    pub fn abandon(self, server: &Server) {
        match server.drop_database(&self.record.fresh) {
            Ok(()) => {
                if let Err(e) = self.finish() {
                    warn!("{e}");
                }
            }
            Err(e) => warn!(
                "could not drop {}; the next run drops it: {e}",
                self.record.fresh
            ),
        }
    }
}

fn to_json(r: &Record) -> Vec<u8> {
    serde_json::to_vec_pretty(r).expect("a record serializes")
}

/// Where a settled swap stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was renamed: the live database is as it was and accepts
    /// connections; the fresh database is gone.
    RolledBack,
    /// The renames committed: `live` holds the restored data and `old` the
    /// previous database (still refusing connections: the caller decides
    /// whether to keep or drop it).
    Swapped,
}

/// Brings the databases of `r` to one of the two safe states, judging from
/// the server what the interrupted step had done. Idempotent: settling twice
/// changes nothing more.
pub fn settle(server: &Server, r: &Record) -> Result<Settled> {
    let fresh = server.exists(&r.fresh)?;
    let swapped = !fresh && r.step == Step::Swap && server.exists(&r.live)? && {
        match &r.old {
            Some(old) => server.exists(old)?,
            None => true, // --into: the rename of fresh to its name committed
        }
    };
    if swapped {
        return Ok(Settled::Swapped);
    }
    if fresh {
        server.drop_database(&r.fresh)?;
    }
    if r.step == Step::Swap
        && r.old.is_some()
        && server.accepts_connections(&r.live)? == Some(false)
    {
        server.allow_connections(&r.live)?;
    }
    Ok(Settled::RolledBack)
}

/// Settles every journal whose run is gone, with one warning line each.
/// Journals that cannot be settled now (server down, database no longer
/// configured) stay for the next run; their warning says why.
pub fn recover(ctx: &Context, catalog: &Catalog) -> Vec<String> {
    let mut lines = Vec::new();
    for path in catalog.hidden_files(JOURNAL_SUFFIX) {
        let line = match recover_one(ctx, &path) {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            Err(e) => format!(
                "{}: could not settle an interrupted run, will retry on the next one: {e}",
                path.display()
            ),
        };
        warn!("{line}");
        lines.push(line);
    }
    lines
}

fn recover_one(ctx: &Context, path: &Path) -> Result<Option<String>> {
    let Some(_held) = claim_abandoned(path)? else {
        return Ok(None); // its run is still going
    };
    let r = read(path)?;
    let db = ctx
        .cfg
        .databases
        .iter()
        .find(|d| d.name == r.database && d.host == r.host && d.port == r.port)
        .ok_or_else(|| {
            Error::Refused(format!(
                "database {} on {}:{} is no longer configured; settle {} by hand",
                r.database,
                r.host,
                r.port,
                r.what()
            ))
        })?;
    let server = Server::new(&ctx.tools, db);
    let line = match (r.kind, settle(&server, &r)?) {
        (Kind::Verify, _) => format!(
            "{} was interrupted; dropped its scratch database {}",
            r.what(),
            r.fresh
        ),
        (Kind::Restore, Settled::RolledBack) => format!(
            "{} was interrupted before its swap completed: {} is unchanged and accepts \
             connections, the half-made {} was dropped; run the restore again",
            r.what(),
            r.live,
            r.fresh
        ),
        (Kind::Restore, Settled::Swapped) => {
            let kept = match &r.old {
                Some(old) => {
                    server.allow_connections(old)?;
                    format!("; the previous database is kept as {old} (drop it when done)")
                }
                None => String::new(),
            };
            format!(
                "{} was interrupted after its swap: {} holds the restored backup{kept}",
                r.what(),
                r.live
            )
        }
    };
    std::fs::remove_file(path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    Ok(Some(line))
}

fn read(path: &Path) -> Result<Record> {
    let text =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
        file: path.display().to_string(),
        reason: format!("not a journal of valerix-backup ({e}); look at it and remove it by hand"),
    })
}

/// Journals left by runs that are gone, for `status`.
pub fn pending(catalog: &Catalog) -> Vec<PathBuf> {
    catalog
        .hidden_files(JOURNAL_SUFFIX)
        .into_iter()
        .filter(|p| matches!(claim_abandoned(p), Ok(Some(_))))
        .collect()
}
