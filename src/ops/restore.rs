//! `restore`: the seed's interface, made safe.
//!
//! 1. decompress the backup into a private scratch file, so that
//!    `pg_restore --jobs` can work in parallel: an indexed file's gzip
//!    members on every core, each member checked (see [`load`]), while the
//!    fresh database is created from template0 beside it; any other file in
//!    one serial read pass that makes every check of step 3 first;
//! 2. restore into the fresh database, at once;
//! 3. beside the load: SHA-256 and sizes against the manifest, archive
//!    completeness and row counts, `pg_restore --list`; a failure stops the
//!    load. After it, prove it: the row count of every table equals the
//!    count in the dump;
//! 4. only when the load, the checks and the counts all agree, swap names
//!    in one transaction (or, with `--into`, give the fresh database its own
//!    name beside the live one);
//! 5. drop the previous database (or keep it with `--keep-old`, under a
//!    name unique to this restore: `<db>__old_<UTC time of the restore>`).
//!
//! Any failure before step 4 drops the fresh database and leaves the live
//! one as it was. A journal (`ops::journal`) names the databases before the
//! fresh one is created, so a run killed at any point is settled by the
//! next one.

pub(crate) mod load;

use std::time::Instant;

use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::{Catalog, LocalBackup, Stamp};
use crate::config::Database;
use crate::error::{Error, Result};
use crate::ops::fetch::{Fetched, FetchedCopy};
use crate::ops::journal::{Journal, Kind, Record, Settled, Step, settle};
use crate::ops::read::check_manifest;
use crate::ops::report;
use crate::ops::{Context, Observer, lock_catalog, outcome};
use crate::pg::db::Server;

#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// `None` = the newest backup.
    pub stamp: Option<Stamp>,
    pub targets: Vec<String>,
    /// Restore beside the live database under this name.
    pub into: Option<String>,
    /// Only these tables (requires `into`).
    pub tables: Vec<String>,
    /// Keep the replaced database as `<db>__old_<time of the restore>`.
    pub keep_old: bool,
    /// What `--from-azure` fetched first ([`fetch`]): the blobs and the
    /// time it took, for the post-mortem record.
    pub fetched: Option<Fetched>,
}

#[derive(Debug, Clone)]
pub struct PlanItem {
    pub db: Database,
    pub backup: LocalBackup,
    /// The database name that will hold the restored data.
    pub target: String,
    /// Whether `target` exists now and will be replaced.
    pub replaces: bool,
}

#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub items: Vec<PlanItem>,
    pub request: RestoreRequest,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub results: Vec<DbRestore>,
}

#[derive(Debug, Serialize, Default)]
pub struct DbRestore {
    pub database: String,
    pub file: String,
    pub target: String,
    pub ok: bool,
    pub error: Option<String>,
    /// Seconds of checking that the restore waited for: the serial read
    /// pass, or the parallel inflation (gzip members checked) plus whatever
    /// the checks beside the load took beyond the load and the row counts.
    pub verify_secs: f64,
    /// Seconds from creating the fresh database to its last row count.
    pub restore_secs: f64,
    /// Seconds of the swap (or rename, with `--into`).
    pub swap_secs: f64,
    /// All of it, with the journal and dropping the replaced database.
    pub total_secs: f64,
    pub tables: usize,
    pub rows: u64,
    /// Tables whose rows had to be counted with `count(*)`; the server's
    /// insert counters proved the others.
    pub tables_counted: usize,
    pub kept_old: Option<String>,
    /// The restored database took its name; an error after that is a
    /// failure to clean up, not of the restore.
    pub swapped: bool,
}

impl RestoreReport {
    pub fn outcome(&self) -> Result<()> {
        let results = self.results.iter();
        outcome(
            "restore",
            results.map(|r| (r.database.as_str(), r.error.as_deref())),
        )
    }
}

impl PlanItem {
    /// One sentence for the confirmation prompt.
    pub fn describe(&self) -> String {
        let b = &self.backup;
        let what = format!(
            "{} ({} bytes, taken {})",
            b.file_name(),
            b.size,
            b.stamp.to_utc().format("%Y-%m-%d %H:%M:%S UTC")
        );
        if self.replaces {
            format!(
                "replace live database {} on {}:{} with {what}",
                self.target, self.db.host, self.db.port
            )
        } else {
            format!(
                "create database {} on {}:{} from {what}",
                self.target, self.db.host, self.db.port
            )
        }
    }
}

/// Checks the request and finds the backups, changing nothing.
pub fn plan(ctx: &Context, req: &RestoreRequest) -> Result<RestorePlan> {
    if !req.tables.is_empty() && req.into.is_none() {
        return Err(Error::Refused(
            "--table restores part of a database; use it with --into NEWDB so the live \
             database keeps its other tables"
                .into(),
        ));
    }
    let dbs = ctx.cfg.select(&req.targets)?;
    if req.into.is_some() && dbs.len() != 1 {
        return Err(Error::Refused(
            "--into takes exactly one target database".into(),
        ));
    }
    let catalog = Catalog::open_existing(&ctx.cfg);
    let stamp = match req.stamp {
        None if dbs.len() > 1 => {
            let common = catalog.latest_common(&dbs)?;
            match common {
                Some(s) => info!("latest backup of all {} databases: {s}", dbs.len()),
                None => {
                    warn!("no timestamp has a backup of every database; using each one's newest")
                }
            }
            common
        }
        s => s,
    };
    let mut items = Vec::new();
    for db in dbs {
        let backup = match &stamp {
            Some(s) => catalog.find(db, Some(s))?,
            None => newest_usable(&catalog, db)?,
        };
        let server = Server::new(&ctx.tools, db);
        let target = match &req.into {
            Some(into) => {
                check_db_name(into)?;
                into.clone()
            }
            None => db.dbname.clone(),
        };
        let exists = server.survey(std::slice::from_ref(&target))?[0];
        if exists && req.into.is_some() {
            return Err(Error::Refused(format!(
                "database {target} already exists; --into never overwrites (pick a new name)"
            )));
        }
        let replaces = exists;
        items.push(PlanItem {
            db: db.clone(),
            backup,
            target,
            replaces,
        });
    }
    Ok(RestorePlan {
        items,
        request: req.clone(),
    })
}

/// Restores what `plan` names, database by database, and writes the
/// post-mortem record of the run (see [`report`]), whatever its outcome.
pub fn execute(ctx: &Context, plan: &RestorePlan, obs: &dyn Observer) -> Result<RestoreReport> {
    let mut rec = match &plan.request.fetched {
        None => report::Record::new(report::Kind::Restore, ""),
        Some(f) => {
            let mut rec = report::Record::starting_at(report::Kind::Restore, "", f.started);
            let got = format!("{} blob(s) downloaded and checked", f.copies.len());
            rec.step_at(FETCH_STEP, f.started, f.secs, true, Some(&got));
            rec
        }
    };
    let mut results = Vec::new();
    let run = restore_items(ctx, plan, obs, &mut rec, &mut results);
    let report = RestoreReport { results };
    record_results(&mut rec, plan, &report);
    match run {
        Ok(()) => {
            report::finish(ctx, rec, &report.outcome());
            Ok(report)
        }
        Err(e) => {
            report::finish_with(ctx, rec, Some(&e));
            Err(e)
        }
    }
}

fn restore_items(
    ctx: &Context,
    plan: &RestorePlan,
    obs: &dyn Observer,
    rec: &mut report::Record,
    results: &mut Vec<DbRestore>,
) -> Result<()> {
    let catalog = Catalog::open(&ctx.cfg)?;
    let _lock = lock_catalog(ctx, &catalog)?;
    for item in &plan.items {
        let fetched = plan.request.fetched.as_ref();
        rec.source(source_of(item, fetched.map_or(&[], |f| &f.copies)));
        let t0 = Instant::now();
        let mut r = DbRestore {
            database: item.db.dbname.clone(),
            file: item.backup.file_name(),
            target: item.target.clone(),
            ..Default::default()
        };
        match restore_one(ctx, &catalog, item, &plan.request, &mut r, obs) {
            Ok(()) => {
                r.ok = true;
                info!(
                    "{}: restored {} into {} ({} tables, {} rows) in {:.1} s",
                    item.db.dbname,
                    r.file,
                    r.target,
                    r.tables,
                    r.rows,
                    t0.elapsed().as_secs_f64()
                );
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) if r.swapped => {
                warn!(
                    "{}: restored into {}, but finishing failed: {e}",
                    item.db.dbname, r.target
                );
                r.error = Some(format!("restored, but finishing failed: {e}"));
            }
            Err(e) => {
                warn!(
                    "{}: restore failed, live database untouched: {e}",
                    item.db.dbname
                );
                r.error = Some(e.to_string());
            }
        }
        r.total_secs = t0.elapsed().as_secs_f64();
        results.push(r);
    }
    Ok(())
}

const FETCH_STEP: &str = "fetch from Azure";

/// `restore --from-azure`'s first step: [`crate::ops::fetch::fetch`], and
/// when it fails, the restore's post-mortem record says so (no database was
/// touched). On success [`execute`] records it, once the restore is done.
pub fn fetch(
    ctx: &Context,
    targets: &[String],
    stamp: Option<Stamp>,
    obs: &dyn Observer,
) -> Result<Fetched> {
    let (started, t) = (chrono::Utc::now(), Instant::now());
    crate::ops::fetch::fetch(ctx, targets, stamp, obs).inspect_err(|e| {
        let mut rec = report::Record::starting_at(report::Kind::Restore, "", started);
        let secs = t.elapsed().as_secs_f64();
        rec.step_at(FETCH_STEP, started, secs, false, Some(&e.to_string()));
        rec.undo("nothing to undo: the fetch failed before any database was touched");
        report::finish_with(ctx, rec, Some(e));
    })
}

/// The copy `item` restores from: its file, and the blob it was fetched
/// from when it was.
fn source_of(item: &PlanItem, fetched: &[FetchedCopy]) -> report::Source {
    let b = &item.backup;
    let blob = fetched.iter().find(|c| c.dbname == b.dbname);
    report::Source {
        of: b.dbname.clone(),
        path: Some(b.path.display().to_string()),
        blob: blob.map(|c| c.blob.clone()),
        tier: blob.map(|c| c.tier.to_string()),
        sha256: b.manifest.as_ref().map(|m| m.sha256.clone()),
        size_bytes: Some(b.size),
        backup_time: Some(b.stamp.to_utc()),
    }
}

/// Each database's steps, what was kept and how to undo it.
fn record_results(rec: &mut report::Record, plan: &RestorePlan, report: &RestoreReport) {
    for (item, r) in plan.items.iter().zip(&report.results) {
        let db = &item.db;
        rec.target(format!("{} on {}:{}", r.target, db.host, db.port));
        let name = &r.database;
        rec.step(&format!("{name}: verify the backup"), r.verify_secs, None);
        rec.step(&format!("{name}: load and count"), r.restore_secs, None);
        if r.swapped {
            rec.step(&format!("{name}: swap names"), r.swap_secs, None);
        }
        let counts = format!("{} tables, {} rows", r.tables, r.rows);
        match &r.error {
            None => rec.step(&format!("{name}: in all"), r.total_secs, Some(&counts)),
            Some(e) => rec.failed_step(&format!("{name}: in all"), r.total_secs, e),
        }
        if let Some(old) = &r.kept_old {
            rec.kept(format!("{old} (the database {} replaced)", r.target));
        }
        rec.undo(undo_line(item, r, plan.request.into.is_some()));
    }
}

fn undo_line(item: &PlanItem, r: &DbRestore, into: bool) -> String {
    let (t, server) = (&r.target, format!("{}:{}", item.db.host, item.db.port));
    match (r.swapped || (r.ok && into), &r.kept_old) {
        (false, _) => format!("{t}: nothing to undo, the live database was not changed"),
        _ if into => format!(
            "{t}: a new database beside the live one; DROP DATABASE \"{t}\" on {server} removes it"
        ),
        (true, Some(old)) => format!(
            "{t}: put the replaced database back on {server} (no session connected to \
             either): ALTER DATABASE \"{t}\" RENAME TO \"{t}__undone\"; ALTER DATABASE \
             \"{old}\" RENAME TO \"{t}\""
        ),
        (true, None) => format!(
            "{t}: the replaced database was dropped (no --keep-old); to go back, restore \
             the backup before {} (valerix-backup list {})",
            item.backup.stamp, item.db.name
        ),
    }
}

fn restore_one(
    ctx: &Context,
    catalog: &Catalog,
    item: &PlanItem,
    req: &RestoreRequest,
    r: &mut DbRestore,
    obs: &dyn Observer,
) -> Result<()> {
    let b = &item.backup;
    let server = Server::new(&ctx.tools, &item.db);
    // Names unique to this restore: nothing of an earlier run is ever
    // reused, dropped or overwritten (a kept `__old_` database above all).
    let run = Stamp::now().to_string();
    let mut names = server.unused_names(&item.target, &["restore", "old"], &run)?;
    let (old, fresh) = (names.pop(), names.pop().expect("two names"));
    let mut record = Record::new(
        Kind::Restore,
        &item.db,
        &item.target,
        &fresh,
        r.file.clone(),
    );
    if item.replaces && req.into.is_none() {
        record.old = old;
        record.keep_old = req.keep_old;
    }
    // Before the fresh database can exist, so that a run killed at any
    // point is settled by the next one.
    let mut journal = Journal::begin(catalog, record)?;
    let create = || server.create_like(&fresh, &item.db.dbname);
    let parallel = b.manifest_error.is_none();
    let (prepared, attempted) = load::prepare(ctx, catalog, b, "restore", parallel, obs, &create);
    let checked = prepared.and_then(|p| match &p.read {
        Some(read) => check_manifest(b, read).map(|()| p),
        None => Ok(p),
    });
    let prepared = match checked {
        Ok(prepared) => prepared,
        Err(e) => {
            load::give_up(journal, &server, attempted);
            return Err(e);
        }
    };
    if b.manifest.is_none() {
        warn!(
            "{}: no manifest, so no SHA-256 to check; gzip and dump structure verified",
            r.file
        );
    }
    if prepared.read.is_some() {
        info!(
            "{}: verified {} in {:.1} s",
            item.db.dbname, r.file, prepared.secs
        );
    }
    let loaded = load::load_fresh(
        ctx,
        &server,
        &fresh,
        &item.db.dbname,
        b,
        &prepared,
        &req.tables,
    );
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            // Ours alone (created by this run, named in its journal).
            journal.abandon(&server);
            return Err(e);
        }
    };
    drop(prepared.scratch);
    r.verify_secs = prepared.secs + loaded.check_wait_secs;
    r.restore_secs = loaded.load_secs;
    r.tables = loaded.tables.len();
    r.rows = loaded.tables.iter().map(|t| t.rows).sum();
    r.tables_counted = loaded.tables_counted;

    let t = Instant::now();
    journal.step(Step::Swap)?;
    let placed = match &journal.record.old {
        Some(old) => server.swap(&item.target, &fresh, old),
        None => server.rename(&fresh, &item.target),
    };
    if let Err(e) = placed {
        // The error may have come after the commit (a lost connection):
        // the server, not the error, tells whether the swap happened.
        if settle(&server, &journal.record)? == Settled::RolledBack {
            journal.finish()?;
            return Err(e);
        }
        warn!(
            "{}: the swap reported an error but committed: {e}",
            item.db.dbname
        );
    }
    r.swapped = true;
    r.swap_secs = t.elapsed().as_secs_f64();
    if let Some(old) = journal.record.old.clone() {
        if req.keep_old {
            server.allow_connections(&old)?;
            info!("{}: previous database kept as {old}", item.db.dbname);
            r.kept_old = Some(old);
        } else {
            server.drop_database(&old)?;
        }
    }
    journal.finish()
}

/// The newest sound backup of `db` (newer damaged ones are named and
/// skipped); the newest file of any kind when none is sound (say, only
/// files written by the seed's scripts, without manifests).
fn newest_usable(catalog: &Catalog, db: &Database) -> Result<LocalBackup> {
    let all = catalog.list(&[db])?;
    let Some(sound) = all.iter().rev().find(|b| b.is_sound()) else {
        return catalog.find(db, None);
    };
    for newer in all.iter().filter(|b| b.stamp > sound.stamp) {
        warn!(
            "skipping {} ({}); restoring the newest sound backup",
            newer.file_name(),
            newer.state()
        );
    }
    Ok(sound.clone())
}

fn check_db_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "database name",
            value: name.to_string(),
            why: "use 1-63 letters, digits, '_' or '-'",
        })
    }
}
