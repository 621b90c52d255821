//! The commands' work: options in, a report out. The CLI and the agent
//! call these; the CLI prints what they return, the agent records it. What
//! happens while a workflow runs (progress, each database done, warnings)
//! reaches the caller through an [`Observer`].

pub mod anomaly;
pub mod audit;
pub mod backup;
pub mod check;
pub mod config_backup;
pub mod fetch;
pub mod geo;
pub mod hold;
pub mod inspect;
pub mod journal;
pub mod read;
pub mod report;
pub mod restore;
pub mod upload;
pub mod verify;

use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::warn;

use crate::catalog::{Catalog, Lock};
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::pg::tools::{PgTools, kill_group};
use crate::ui::{Bar, Progress};

/// What a workflow tells its caller while it runs. Every method has a
/// do-nothing default, so a caller implements only what it shows or
/// records: the CLI drives its progress display, the agent records
/// metrics and sends alerts. The same facts are in the report at the end.
pub trait Observer {
    /// A byte counter for a long streaming step (`order_db: dumping`).
    fn bytes(&self, msg: String) -> Bar {
        let _ = msg;
        Bar::hidden()
    }

    /// A spinner with a message that changes, for a long wait
    /// (`operation InProgress (40 s)`).
    fn spinner(&self, msg: &str) -> Bar {
        let _ = msg;
        Bar::hidden()
    }

    /// One database's backup finished, well or not.
    fn backed_up(&self, db: &backup::DbBackup) {
        let _ = db;
    }

    /// Retention could not do its work; the backups are fine.
    fn retention_warning(&self, warning: &str) {
        let _ = warning;
    }

    /// A new backup far off the usual size of its database.
    fn size_anomaly(&self, anomaly: &anomaly::SizeAnomaly) {
        let _ = anomaly;
    }

    /// One file's upload finished, well or not.
    fn uploaded(&self, blob: &upload::BlobUpload) {
        let _ = blob;
    }
}

/// An observer that only shows progress on the terminal (or nothing, when
/// the display is hidden).
impl Observer for Progress {
    fn bytes(&self, msg: String) -> Bar {
        Progress::bytes(self, msg)
    }

    fn spinner(&self, msg: &str) -> Bar {
        Progress::spinner(self, msg)
    }
}

/// What every operation needs: the config, the tools, the progress display
/// and the flag set by SIGINT/SIGTERM.
pub struct Context {
    pub cfg: Config,
    pub tools: PgTools,
    pub progress: Progress,
    pub cancel: Arc<AtomicBool>,
}

impl Context {
    pub fn new(cfg: Config, progress: Progress, cancel: Arc<AtomicBool>) -> Context {
        let tools = PgTools::new(&cfg);
        Context {
            cfg,
            tools,
            progress,
            cancel,
        }
    }

    pub fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Waits for a child, killing it when the run is interrupted.
    pub fn wait_child(&self, child: &mut Child, name: &str) -> Result<ExitStatus> {
        loop {
            if let Some(status) = child.try_wait().ctx(|| format!("waiting for {name}"))? {
                return Ok(status);
            }
            if self.cancel.load(Ordering::Relaxed) {
                kill_group(child.id());
                let _ = child.wait();
                return Err(Error::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Takes the backup directory's lock for a run that writes, then tidies
/// what runs that died left behind: partial files and interrupted restores
/// (see [`journal`]). Every command and agent job that writes comes here.
pub fn lock_catalog(ctx: &Context, catalog: &Catalog) -> Result<Lock> {
    let lock = catalog.lock()?;
    for p in catalog.remove_stale_partials()? {
        warn!("removed {} left by an interrupted run", p.display());
    }
    journal::recover(ctx, catalog);
    Ok(lock)
}

/// Kills the child `pid` if the run is cancelled before `done` is set, so
/// an interrupt also ends a child that is stalled (say, on a server lock)
/// and the reader blocked on its output sees end of file.
pub fn kill_on_cancel<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    cancel: &'s AtomicBool,
    done: &'s AtomicBool,
    pid: u32,
) {
    scope.spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if cancel.load(Ordering::Relaxed) {
                kill_group(pid);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

pub use crate::error::outcome;
