//! `verify`: the checks the seed's verify-backup.sh meant to make, made real.
//! Reads each file whole (see `ops::read`) and compares it with its manifest;
//! `--deep` also restores it into a scratch database, compares every table's
//! row count and reports how long the restore took: the measured RTO. A deep
//! verify loads as a restore does (`ops::restore::load`): an indexed file
//! with a manifest is inflated on every core and checked beside the load,
//! and the verdict waits for the load, the checks and the counts.

use std::time::Instant;

use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::{Catalog, LocalBackup, Stamp};
use crate::config::{Database, SetKind};
use crate::error::{Error, Result};
use crate::ops::journal::{self, Journal, Kind, Record};
use crate::ops::read::{ReadResult, check_manifest, check_sealed, expected_tables, read_backup};
use crate::ops::restore::load;
use crate::ops::{Context, Observer, outcome};
use crate::pg::archive::TableRows;
use crate::pg::db::Server;
use crate::pipeline::encryption::ENV_IDENTITY_FILE;

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub results: Vec<DbVerify>,
}

#[derive(Debug, Serialize, Default)]
pub struct DbVerify {
    pub database: String,
    pub timestamp: Option<Stamp>,
    pub file: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub has_manifest: bool,
    pub sha256: Option<String>,
    pub tables: usize,
    pub rows: u64,
    /// Seconds of reading and checking that the verdict waited for: the
    /// read pass; with `--deep` on an indexed file, the parallel inflation
    /// plus what the checks beside the load took beyond it.
    pub read_secs: f64,
    /// `--deep` only: seconds to restore into a scratch database, count and
    /// drop it.
    pub restore_secs: Option<f64>,
    /// `--deep` only: tables whose rows had to be counted with `count(*)`;
    /// the server's insert counters proved the others.
    pub tables_counted: Option<usize>,
    /// What was not checked, and why (an encrypted backup without its
    /// identity: only the file as stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchecked: Option<String>,
    /// A configuration archive: the files it holds (read to the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
}

impl VerifyReport {
    pub fn outcome(&self) -> Result<()> {
        let results = self.results.iter();
        outcome(
            "verification",
            results.map(|r| (r.database.as_str(), r.error.as_deref())),
        )
    }
}

pub fn verify(
    ctx: &Context,
    stamp: Option<Stamp>,
    targets: &[String],
    deep: bool,
    obs: &dyn Observer,
) -> Result<VerifyReport> {
    let dbs = ctx.cfg.select_sets(targets)?;
    let catalog = Catalog::open_existing(&ctx.cfg);
    if deep {
        // No directory lock (a deep verify runs beside backups): journals
        // are claimed one by one, only once their owner is gone.
        journal::recover(ctx, &catalog);
    }
    let mut results = Vec::new();
    for db in dbs {
        let mut r = DbVerify {
            database: db.dbname.clone(),
            ..Default::default()
        };
        let found = catalog.find(db, stamp.as_ref());
        let res = found.and_then(|b| {
            r.timestamp = Some(b.stamp);
            r.file = Some(b.file_name());
            r.has_manifest = b.manifest.is_some();
            verify_one(ctx, &catalog, db, &b, deep, &mut r, obs)
        });
        match res {
            Ok(()) => {
                r.ok = true;
                let holds = match r.files {
                    Some(n) => format!("{n} files"),
                    None => format!("{} tables, {} rows", r.tables, r.rows),
                };
                info!(
                    "{}: {} verified ({holds})",
                    db.dbname,
                    r.file.as_deref().unwrap_or("")
                );
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                warn!("{}: verification failed: {e}", db.dbname);
                r.error = Some(e.to_string());
            }
        }
        results.push(r);
    }
    Ok(VerifyReport { results })
}

fn verify_one(
    ctx: &Context,
    catalog: &Catalog,
    db: &Database,
    b: &LocalBackup,
    deep: bool,
    r: &mut DbVerify,
    obs: &dyn Observer,
) -> Result<()> {
    if db.kind == SetKind::Config {
        return verify_config(ctx, b, r);
    }
    if !deep && b.encrypted() && ctx.cfg.identity_path().is_none() {
        let t = Instant::now();
        r.sha256 = Some(check_sealed(b)?);
        let m = b
            .manifest
            .as_ref()
            .expect("check_sealed requires a manifest");
        r.tables = m.tables.len();
        r.rows = m.total_rows();
        r.unchecked = Some(format!(
            "encrypted, and no identity is configured: its SHA-256 as stored was checked, \
             not the dump inside (set {ENV_IDENTITY_FILE} or [encryption] identity_file)"
        ));
        r.read_secs = t.elapsed().as_secs_f64();
        return Ok(());
    }
    if !deep {
        let t = Instant::now();
        let read = read_backup(ctx, b, None, obs)?;
        r.sha256 = Some(read.sha256.clone());
        check_manifest(b, &read)?;
        require_manifest(b)?;
        found(r, &read, &expected_tables(b, &read));
        r.read_secs = t.elapsed().as_secs_f64();
        return Ok(());
    }
    // Only a backup with a sound manifest is checked beside the load: any
    // other fails, and the serial read says why before anything is loaded.
    let parallel = b.manifest.is_some() && b.manifest_error.is_none();
    let t = Instant::now();
    let server = Server::new(&ctx.tools, db);
    let run = format!("{}_{}", Stamp::now(), std::process::id());
    let name = server
        .unused_names(&db.dbname, &["verify"], &run)?
        .remove(0);
    let record = Record::new(Kind::Verify, db, &db.dbname, &name, b.file_name());
    let journal = Journal::begin(catalog, record)?;
    let create = || server.create_like(&name, &db.dbname);
    let (prepared, attempted) = load::prepare(ctx, catalog, b, "verify", parallel, obs, &create);
    let checked = prepared.and_then(|p| {
        if let Some(read) = &p.read {
            r.sha256 = Some(read.sha256.clone());
            check_manifest(b, read)?;
            require_manifest(b)?;
        }
        Ok(p)
    });
    let prepared = match checked {
        Ok(prepared) => prepared,
        Err(e) => {
            load::give_up(journal, &server, attempted);
            return Err(e);
        }
    };
    let loaded = load::load_fresh(ctx, &server, &name, &db.dbname, b, &prepared, &[]);
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            journal.abandon(&server);
            return Err(e);
        }
    };
    server.drop_database(&name)?;
    journal.finish()?;
    r.sha256 = Some(loaded.read.sha256.clone());
    found(r, &loaded.read, &loaded.tables);
    r.read_secs = prepared.secs + loaded.check_wait_secs;
    // The creation of the scratch database ran beside the inflation.
    r.restore_secs = Some(t.elapsed().as_secs_f64() - r.read_secs);
    r.tables_counted = Some(loaded.tables_counted);
    Ok(())
}

fn require_manifest(b: &LocalBackup) -> Result<()> {
    if b.manifest.is_some() {
        return Ok(());
    }
    Err(Error::Corrupt {
        file: b.file_name(),
        reason: "no manifest: gzip and dump structure are fine, but there is no SHA-256 \
                 to check it against"
            .into(),
    })
}

fn found(r: &mut DbVerify, read: &ReadResult, tables: &[TableRows]) {
    r.sha256 = Some(read.sha256.clone());
    r.tables = tables.len();
    r.rows = tables.iter().map(|t| t.rows).sum();
}

/// A configuration archive, `--deep` or not (there is no database to load
/// it into): its SHA-256 and size, and every tar member read to the end
/// against the manifest's file list; without the identity of an encrypted
/// one, only the file as stored.
fn verify_config(ctx: &Context, b: &LocalBackup, r: &mut DbVerify) -> Result<()> {
    let t = Instant::now();
    if b.encrypted() && ctx.cfg.identity_path().is_none() {
        r.sha256 = Some(check_sealed(b)?);
        r.unchecked = Some(format!(
            "encrypted, and no identity is configured: its SHA-256 as stored was checked, \
             not the archive inside (set {ENV_IDENTITY_FILE} or [encryption] identity_file)"
        ));
    } else {
        let (sha256, files) = crate::ops::config_backup::verify(ctx, b)?;
        require_manifest(b)?;
        r.sha256 = Some(sha256);
        r.files = Some(files);
    }
    r.read_secs = t.elapsed().as_secs_f64();
    Ok(())
}
