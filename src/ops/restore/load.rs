//! A fresh database from a backup, shared by `restore` and `verify --deep`.
//!
//! [`prepare`] makes the scratch file `pg_restore --jobs` needs (a seekable
//! plain dump). An indexed backup is inflated on every core, each gzip
//! member checked; its other checks (SHA-256 against the manifest, the
//! archive scan, `pg_restore --list`, the sizes) are left to run beside the
//! load, as the fresh database is not live until the swap: nothing forces
//! them to come first, only the swap must wait for them. Any other gzip file
//! is read serially with every check made before the load, as before.
//!
//! [`load_fresh`] creates the fresh database, starts the load at once, and
//! returns only when the load, the row counts and the checks all agree; a
//! check that fails while the load runs stops it (the caller then drops the
//! fresh database through its journal).

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::catalog::fsutil::ScratchFile;
use crate::catalog::{Catalog, LocalBackup};
use crate::error::{Error, IoContext, Result};
use crate::ops::journal::Journal;
use crate::ops::read::{ReadResult, check_inflated, indexed, inflate_backup, inflate_sealed};
use crate::ops::read::{expected_tables, read_backup};
use crate::ops::{Context, Observer};
use crate::pg::archive::TableRows;
use crate::pg::db::Server;
use crate::pg::offsets;
use crate::pg::tools::{StderrTail, kill_group, spawn, tool_error};

/// A backup made ready to load.
pub(crate) struct Prepared {
    pub scratch: ScratchFile,
    /// The serial read, every check made; `None` when the checks are left
    /// to run beside the load.
    pub read: Option<ReadResult>,
    pub plain_bytes: u64,
    /// Seconds spent reading (serial) or inflating (parallel).
    pub secs: f64,
    /// The fresh database was created beside the inflation.
    pub created: bool,
}

/// Writes the plain dump of `b` to a scratch file named for `purpose`.
/// `parallel` allows the parallel path for an indexed file. After the
/// serial path the caller compares the read with the manifest.
///
/// On the parallel path `create` (the fresh database's creation) runs on
/// another thread while the members inflate: the inflation works the local
/// cores, the creation the server. On the serial path it is not run (every
/// check comes before anything is created, as before). The second value
/// says whether it was run, also when the first is an error, so that the
/// caller knows whether there may be a database to drop ([`give_up`]).
pub(crate) fn prepare(
    ctx: &Context,
    catalog: &Catalog,
    b: &LocalBackup,
    purpose: &str,
    parallel: bool,
    obs: &dyn Observer,
    create: &(dyn Fn() -> Result<()> + Sync),
) -> (Result<Prepared>, bool) {
    let t = Instant::now();
    let name = b.file_name();
    let (scratch, mut file) = match ScratchFile::create(catalog.dir(), &format!("{purpose}-{name}"))
    {
        Ok(created) => created,
        Err(e) => return (Err(e), false),
    };
    let threads = ctx.cfg.restore_jobs();
    // An encrypted file's members are inside its ciphertext: decrypted as
    // they are read, inflated as they arrive.
    let sealed = parallel && b.encrypted();
    let source = if parallel && !sealed {
        indexed(b)
    } else {
        Ok(None)
    };
    let source = match source {
        Ok(None) if sealed => {
            let inflate = || inflate_sealed(ctx, b, &file, threads, obs);
            let how = format!("decrypted as read, {threads} threads");
            return beside_creation(ctx, b, (scratch, &file, how), t, create, obs, inflate);
        }
        Ok(Some(source)) => source,
        Ok(None) => {
            info!("{name}: no member index (plain gzip or an older backup): read serially");
            let read = read_backup(ctx, b, Some(&mut file), obs).map(|read| {
                fill_offsets(&name, &file);
                Prepared {
                    scratch,
                    plain_bytes: read.plain_bytes,
                    read: Some(read),
                    secs: t.elapsed().as_secs_f64(),
                    created: false,
                }
            });
            return (read, false);
        }
        Err(e) => return (Err(e), false),
    };
    let how = format!("{} gzip members, {threads} threads", source.1.len());
    let inflate = || inflate_backup(ctx, b, &source, &file, threads, obs).map(Some);
    beside_creation(ctx, b, (scratch, &file, how), t, create, obs, inflate)
}

/// The parallel path of [`prepare`]: `inflate` (the members on every core
/// into the scratch `file`; `how`, for the log) while `create` runs on
/// another thread. An `inflate` that finds no index (`None`) falls back to
/// the serial read, the database already created.
fn beside_creation(
    ctx: &Context,
    b: &LocalBackup,
    (scratch, file, how): (ScratchFile, &std::fs::File, String),
    t: Instant,
    create: &(dyn Fn() -> Result<()> + Sync),
    obs: &dyn Observer,
    inflate: impl FnOnce() -> Result<Option<u64>>,
) -> (Result<Prepared>, bool) {
    let name = b.file_name();
    let (inflated, created) = std::thread::scope(|s| {
        let creating = s.spawn(create);
        let inflated = inflate();
        let created = creating
            .join()
            .unwrap_or_else(|_| Err(Error::Unexpected("the creating thread panicked".into())));
        (inflated, created)
    });
    // The file's fault is the one to report when both failed.
    let plain_bytes = match (inflated, created) {
        (Err(e), _) | (Ok(_), Err(e)) => return (Err(e), true),
        (Ok(n), Ok(())) => n,
    };
    let Some(plain_bytes) = plain_bytes else {
        info!("{name}: no member index inside: read serially");
        let read = file
            .try_clone()
            .ctx(|| format!("reopening the scratch file of {name}"))
            .and_then(|mut f| read_backup(ctx, b, Some(&mut f), obs));
        return (
            read.map(|read| {
                fill_offsets(&name, file);
                Prepared {
                    scratch,
                    plain_bytes: read.plain_bytes,
                    read: Some(read),
                    secs: t.elapsed().as_secs_f64(),
                    created: true,
                }
            }),
            true,
        );
    };
    fill_offsets(&name, file);
    let secs = t.elapsed().as_secs_f64();
    info!("{name}: inflated in parallel ({how}) in {secs:.1} s; checking it beside the load");
    let prepared = Prepared {
        scratch,
        read: None,
        plain_bytes,
        secs,
        created: true,
    };
    (Ok(prepared), true)
}

/// Closes the journal of a run that failed before its load: drops the
/// fresh database when its creation was attempted (it may have committed
/// even if its answer was lost), else only removes the journal.
pub(crate) fn give_up(journal: Journal, server: &Server, attempted: bool) {
    if attempted {
        journal.abandon(server);
    } else if let Err(e) = journal.finish() {
        warn!("{e}");
    }
}

/// Writes into the scratch archive the data offsets that pg_dump, writing
/// to a pipe, could not (see [`offsets`]): `pg_restore --jobs` then seeks
/// to each table's data and schedules the largest tables first. An archive
/// whose blocks do not match its table of contents is left as it is; the
/// archive checks say what is wrong with it.
fn fill_offsets(name: &str, file: &std::fs::File) {
    let t = Instant::now();
    match offsets::fill(file) {
        Ok(n) => debug!(
            "{name}: {n} data offsets written into the archive's table of contents in {:.2} s",
            t.elapsed().as_secs_f64()
        ),
        Err(e) => debug!("{name}: data offsets not written: {e}"),
    }
}

/// What a load proved.
pub(crate) struct Loaded {
    /// The read of the backup, every check passed.
    pub read: ReadResult,
    /// The tables restored, with the row counts the dump has and the fresh
    /// database holds.
    pub tables: Vec<TableRows>,
    /// How many tables had to be counted with `count(*)`; the others the
    /// server's insert counters proved (`Server::prove_rows`).
    pub tables_counted: usize,
    /// Seconds from the start of the load (or the creation of the fresh
    /// database, when it was not created beside the inflation) to the last
    /// row count.
    pub load_secs: f64,
    /// Seconds the checks beside the load went on after it and the row
    /// counts (0 when they finished first, as they usually do).
    pub check_wait_secs: f64,
}

/// Creates `fresh` like `like`, restores the dump prepared from `b` into it
/// in parallel (only `tables`, when given) and proves the row counts.
pub(crate) fn load_fresh(
    ctx: &Context,
    server: &Server,
    fresh: &str,
    like: &str,
    b: &LocalBackup,
    prepared: &Prepared,
    tables: &[String],
) -> Result<Loaded> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Stops the checks on every way out that no longer needs them.
        let _stop = StopOnDrop(&stop);
        let mut checks = Checks::start(s, ctx, b, prepared, &stop);
        let t = Instant::now();
        if !prepared.created {
            server.create_like(fresh, like)?;
        }
        run_pg_restore(
            ctx,
            server,
            fresh,
            &prepared.scratch.path,
            tables,
            &mut checks,
        )?;
        let expected = match &b.manifest {
            Some(m) => m.tables.clone(),
            None => expected_tables(b, checks.wait()?),
        };
        let expected = only(expected, tables);
        let proof = server.prove_rows(fresh, &expected, ctx.cfg.restore_jobs());
        let load_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let read = checks.finish()?;
        let check_wait_secs = t.elapsed().as_secs_f64();
        if prepared.read.is_none() {
            info!(
                "{}: checked beside the load (waited {check_wait_secs:.2} s for the checks \
                 after the load and the counts)",
                b.file_name()
            );
        }
        let proof = proof?;
        if proof.counted > 0 {
            info!(
                "{fresh}: {} of {} tables counted with count(*) (the server's insert counters \
                 did not prove them)",
                proof.counted,
                expected.len()
            );
        }
        if let Some((want, got)) = expected
            .iter()
            .zip(&proof.tables)
            .find(|(w, g)| w.rows != g.rows)
        {
            return Err(Error::Unsound(format!(
                "restored table {}.{} has {} rows, the dump has {}",
                want.schema, want.name, got.rows, want.rows
            )));
        }
        Ok(Loaded {
            read,
            tables: expected,
            tables_counted: proof.counted,
            load_secs,
            check_wait_secs,
        })
    })
}

/// The tables of `all` that `--table` names (all of them without one).
fn only(mut all: Vec<TableRows>, tables: &[String]) -> Vec<TableRows> {
    if !tables.is_empty() {
        all.retain(|t| {
            tables
                .iter()
                .any(|w| w == &t.name || *w == format!("{}.{}", t.schema, t.name))
        });
    }
    all
}

/// `pg_restore --jobs` of `plain` into `fresh`. Killed (with its workers)
/// when the run is interrupted or a check beside it fails; when it fails,
/// a failed check is the better explanation and is reported instead.
fn run_pg_restore(
    ctx: &Context,
    server: &Server,
    fresh: &str,
    plain: &Path,
    tables: &[String],
    checks: &mut Checks,
) -> Result<()> {
    let jobs = ctx.cfg.restore_jobs().to_string();
    let mut cmd = ctx.tools.command("pg_restore", server.db, fresh)?;
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--jobs",
        &jobs,
        "--dbname",
        fresh,
    ]);
    for t in tables {
        cmd.args(["--table", t]);
    }
    cmd.arg(plain).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(e) = checks.failure() {
        return Err(e); // no load to start
    }
    let mut child = spawn(&mut cmd, "pg_restore")?;
    let stderr = StderrTail::start(&mut child);
    let status = wait_beside(ctx, &mut child, checks)?;
    if status.success() {
        return Ok(());
    }
    checks.wait()?;
    Err(tool_error("pg_restore", status, &stderr.finish()))
}

/// Waits for the load; kills its process group on an interrupt or when a
/// check fails, and returns that error.
fn wait_beside(ctx: &Context, child: &mut Child, checks: &mut Checks) -> Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().ctx(|| "waiting for pg_restore".into())? {
            return Ok(status);
        }
        let failed = if ctx.cancel.load(Ordering::Relaxed) {
            Some(Error::Interrupted)
        } else {
            checks.failure()
        };
        if let Some(e) = failed {
            kill_group(child.id());
            let _ = child.wait();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The checks of the backup: made by the serial read, or running on a
/// thread beside the load.
struct Checks<'s> {
    running: Option<ScopedJoinHandle<'s, Result<ReadResult>>>,
    read: Option<ReadResult>,
    error: Option<Error>,
}

impl<'s> Checks<'s> {
    fn start<'e>(
        s: &'s Scope<'s, 'e>,
        ctx: &'s Context,
        b: &'s LocalBackup,
        prepared: &'s Prepared,
        stop: &'s AtomicBool,
    ) -> Checks<'s> {
        let running = prepared.read.is_none().then(|| {
            s.spawn(move || {
                check_inflated(ctx, b, &prepared.scratch.path, prepared.plain_bytes, stop)
            })
        });
        Checks {
            running,
            read: prepared.read.clone(),
            error: None,
        }
    }

    /// Takes in the thread's result once it is done (or, with `block`, when
    /// it is).
    fn poll(&mut self, block: bool) {
        if !self
            .running
            .as_ref()
            .is_some_and(|h| block || h.is_finished())
        {
            return;
        }
        let joined = self.running.take().map(|h| h.join());
        match joined {
            Some(Ok(Ok(read))) => self.read = Some(read),
            Some(Ok(Err(e))) => self.error = Some(e),
            Some(Err(_)) => self.error = Some(Error::Unexpected("a check thread panicked".into())),
            None => {}
        }
    }

    /// The error of checks that have failed by now (given once).
    fn failure(&mut self) -> Option<Error> {
        self.poll(false);
        self.error.take()
    }

    /// Waits for the checks: their read, or their error.
    fn wait(&mut self) -> Result<&ReadResult> {
        self.poll(true);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.read
            .as_ref()
            .ok_or_else(|| Error::Unexpected("the checks' failure was reported already".into()))
    }

    fn finish(mut self) -> Result<ReadResult> {
        self.wait()?;
        Ok(self.read.expect("a read after a wait"))
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
