//! `backup`: pg_dump's uncompressed custom-format stream, scanned, gzipped on
//! all cores and hashed in one pass, into a hidden file that is renamed only
//! when complete and on disk; then its manifest; then local retention, the
//! size check and, when asked for, the upload of what the run wrote.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::fsutil::AtomicFile;
use crate::catalog::{CLOCK_SLACK, Catalog, Manifest, Stamp, dump_name_as, manifest, utc_time};
use crate::config::{Database, SetKind};
use crate::error::{Error, Result};
use crate::ops::anomaly::{self, SizeAnomaly};
use crate::ops::config_backup;
use crate::ops::upload::{self, Selection, TierChoice, UploadReport};
use crate::ops::{Context, Observer, kill_on_cancel, outcome};
use crate::pg::archive::ArchiveScanner;
use crate::pg::rechunk::Rechunk;
use crate::pg::tools::{StderrTail, kill_group, spawn, tool_error};
use crate::pipeline::compress::{CompressError, libdeflate_level};
use crate::pipeline::encryption::Sealed;
use crate::pipeline::{CompressOptions, HashingWriter, compress_parallel};

#[derive(Debug, Default, Clone)]
pub struct BackupOptions {
    /// The databases to back up; none means all.
    pub targets: Vec<String>,
    /// Apply local retention after the backup (default on).
    pub prune: bool,
    /// Then send what this run wrote offsite (`backup --upload`; the agent
    /// whenever `[azure]` is set).
    pub upload: bool,
}

/// A backup run: the local backups and, when asked for, their upload.
#[derive(Debug)]
pub struct BackupRun {
    pub backup: BackupReport,
    /// `None` when no upload was asked for.
    pub upload: Option<UploadStep>,
}

/// What became of the upload after the backup.
#[derive(Debug)]
pub enum UploadStep {
    /// No database was backed up, so there was nothing to send.
    Skipped,
    Done(UploadReport),
    /// The upload could not start or went wrong as a whole.
    Failed(Error),
}

impl UploadStep {
    pub fn report(&self) -> Option<&UploadReport> {
        match self {
            UploadStep::Done(r) => Some(r),
            UploadStep::Skipped | UploadStep::Failed(_) => None,
        }
    }
}

/// JSON: the backup report alone, or `{"backup": ..., "upload": ...}`
/// (`null` when the upload did not report) when an upload was asked for.
impl Serialize for BackupRun {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let Some(step) = &self.upload else {
            return self.backup.serialize(s);
        };
        let mut m = s.serialize_struct("BackupRun", 2)?;
        m.serialize_field("backup", &self.backup)?;
        m.serialize_field("upload", &step.report())?;
        m.end()
    }
}

impl BackupRun {
    /// A failed database first, then the upload's failure, then a
    /// retention warning (exit status 3): retention never keeps a good
    /// backup from going offsite, nor hides an upload that failed.
    pub fn outcome(self) -> Result<()> {
        self.backup.backed_up()?;
        match self.upload {
            Some(UploadStep::Failed(e)) => return Err(e),
            Some(UploadStep::Done(r)) => r.outcome()?,
            Some(UploadStep::Skipped) | None => {}
        }
        self.backup.retention_outcome()
    }
}

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub timestamp: Stamp,
    pub results: Vec<DbBackup>,
    /// Files removed by retention.
    pub pruned: Vec<String>,
    /// What retention could not do; the backups themselves are fine.
    pub retention_warnings: Vec<String>,
    /// New backups far off the usual size of their database: worth a
    /// look, not a failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub size_anomalies: Vec<SizeAnomaly>,
}

#[derive(Debug, Serialize)]
pub struct DbBackup {
    pub database: String,
    pub dbname: String,
    pub ok: bool,
    pub error: Option<String>,
    pub manifest: Option<Manifest>,
}

impl BackupReport {
    /// `Ok` when every database was backed up.
    pub fn backed_up(&self) -> Result<()> {
        let results = self.results.iter();
        outcome(
            "backup",
            results.map(|r| (r.dbname.as_str(), r.error.as_deref())),
        )
    }

    /// A warning (exit status 3) when retention failed after good backups.
    pub fn retention_outcome(&self) -> Result<()> {
        if self.retention_warnings.is_empty() {
            return Ok(());
        }
        Err(Error::Warning(format!(
            "backup done, but {}",
            self.retention_warnings.join("; ")
        )))
    }
}

/// `backup [--upload]`: each database, then local retention, the size
/// check, and the upload of what this run wrote.
pub fn backup(ctx: &Context, opts: &BackupOptions, obs: &dyn Observer) -> Result<BackupRun> {
    let backup = local(ctx, opts, obs)?;
    let upload = opts
        .upload
        .then(|| send_offsite(ctx, &backup, &opts.targets, obs));
    Ok(BackupRun { backup, upload })
}

/// Uploads what this run wrote, even when some databases failed.
fn send_offsite(
    ctx: &Context,
    report: &BackupReport,
    targets: &[String],
    obs: &dyn Observer,
) -> UploadStep {
    if !report.results.iter().any(|r| r.ok) {
        return UploadStep::Skipped;
    }
    let sel = Selection::At(report.timestamp);
    match upload::upload(ctx, sel, TierChoice::Auto, targets, obs) {
        Ok(r) => UploadStep::Done(r),
        Err(e) => UploadStep::Failed(e),
    }
}

/// The local part: the dumps, retention and the size check.
fn local(ctx: &Context, opts: &BackupOptions, obs: &dyn Observer) -> Result<BackupReport> {
    let dbs = ctx.cfg.select_sets(&opts.targets)?;
    let catalog = Catalog::open(&ctx.cfg)?;
    let _lock = crate::ops::lock_catalog(ctx, &catalog)?;
    let stamp = free_stamp(&catalog, &dbs);
    info!(
        "backup {stamp} of {} database(s) into {}",
        dbs.len(),
        catalog.dir().display()
    );

    let mut results = Vec::new();
    for db in &dbs {
        ctx.check_cancel()?;
        let r = match db.kind {
            SetKind::Config => config_backup::backup(ctx, &catalog, db, stamp),
            SetKind::Postgres => backup_one(ctx, &catalog, db, stamp, obs),
        };
        match &r {
            Ok(m) if m.config.is_some() => info!(
                "{}: {} ({} bytes, sha256 {}, {} files, {:.1} s)",
                db.dbname,
                m.file,
                m.size_bytes,
                &m.sha256[..12],
                m.config.as_ref().map_or(0, |c| c.files.len()),
                m.duration_secs
            ),
            Ok(m) => info!(
                "{}: {} ({} bytes, sha256 {}, {} rows in {} tables, {:.1} s)",
                db.dbname,
                m.file,
                m.size_bytes,
                &m.sha256[..12],
                m.total_rows(),
                m.tables.len(),
                m.duration_secs
            ),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => warn!("{}: backup failed: {e}", db.dbname),
        }
        // A configuration archive that lacks what could not be read is
        // kept, and fails its set as a failed dump does.
        let error = match &r {
            Err(e) => Some(e.to_string()),
            Ok(m) => config_backup::failure(m),
        };
        let done = DbBackup {
            database: db.name.clone(),
            dbname: db.dbname.clone(),
            ok: error.is_none(),
            error,
            manifest: r.ok(),
        };
        obs.backed_up(&done);
        results.push(done);
    }

    // Only databases backed up now: while backups fail, old ones stay.
    let done: Vec<&Database> = dbs
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.ok)
        .map(|(d, _)| *d)
        .collect();
    let (mut pruned, mut retention_warnings) = (Vec::new(), Vec::new());
    if opts.prune {
        (pruned, retention_warnings) = retention(ctx, &catalog, &done, stamp);
    }
    for w in &retention_warnings {
        obs.retention_warning(w);
    }
    // After retention, so the sizes compared are those that stay.
    let size_anomalies: Vec<SizeAnomaly> = done
        .iter()
        .filter(|db| db.kind == SetKind::Postgres)
        .filter_map(|db| anomaly::check_newest(&ctx.cfg, &catalog, db))
        .collect();
    for a in &size_anomalies {
        warn!("{a}");
        obs.size_anomaly(a);
    }
    Ok(BackupReport {
        timestamp: stamp,
        results,
        pruned,
        retention_warnings,
        size_anomalies,
    })
}

/// Local retention after a backup: the files it removed and what went
/// wrong. A failure here never fails the backup (written and sound by
/// now) nor what follows it, such as its upload; each is a warning.
fn retention(
    ctx: &Context,
    catalog: &Catalog,
    dbs: &[&Database],
    stamp: Stamp,
) -> (Vec<String>, Vec<String>) {
    let (mut pruned, mut warnings) = (Vec::new(), Vec::new());
    if dbs.is_empty() {
        return (pruned, warnings);
    }
    // The configuration archive has no server: a run that backed up only
    // it is judged by the local clock checks alone.
    let server_clock = match dbs.iter().find(|d| d.kind == SetKind::Postgres) {
        Some(first) => check_server_clock(ctx, first),
        None => Ok(()),
    };
    let expired =
        match server_clock.and_then(|()| catalog.expired(dbs, ctx.cfg.retention_days, stamp)) {
            Ok(e) => e,
            Err(e) => {
                warnings.push(e.to_string());
                Vec::new()
            }
        };
    for old in expired {
        match catalog.remove(&old) {
            Ok(()) => {
                info!(
                    "retention: removed {} (older than {} days)",
                    old.file_name(),
                    ctx.cfg.retention_days
                );
                pruned.push(old.file_name());
            }
            Err(e) => warnings.push(format!("retention failed: {e}")),
        }
    }
    for w in &warnings {
        warn!("{w}");
    }
    (pruned, warnings)
}

/// A clock that jumped ahead dates this run's backup late and makes every
/// older one look past retention, and nothing in the backup directory can
/// tell (its dates are what is judged). The database server's clock is an
/// independent one, a query away on the connection the backup just used.
fn check_server_clock(ctx: &Context, db: &Database) -> Result<()> {
    let sql = "SELECT floor(extract(epoch FROM clock_timestamp()))::bigint;";
    let unread = |why: String| {
        Error::Clock(format!(
            "retention deleted nothing: cannot read the clock of {}'s database server: {why}",
            db.dbname
        ))
    };
    let server = ctx
        .tools
        .query(db, &db.dbname, sql)
        .map_err(|e| unread(e.to_string()))?
        .first()
        .and_then(|row| row.first()?.parse().ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or_else(|| unread("psql printed no time".into()))?;
    let local = Utc::now();
    let apart = (local - server).abs();
    if apart <= CLOCK_SLACK {
        return Ok(());
    }
    let apart = match apart.num_minutes() {
        m if m < 24 * 60 => format!("{m} minutes"),
        m => format!("{:.1} days", m as f64 / (24.0 * 60.0)),
    };
    Err(Error::Clock(format!(
        "retention deleted nothing: this machine's clock ({}) is {} {} the clock of {}'s \
         database server ({}); check the clock (timedatectl)",
        utc_time(local),
        apart,
        if local > server { "ahead of" } else { "behind" },
        db.dbname,
        utc_time(server)
    )))
}

/// Now, or the next second not yet used by one of `dbs` (two runs within
/// one second must not collide).
fn free_stamp(catalog: &Catalog, dbs: &[&Database]) -> Stamp {
    let mut stamp = Stamp::now();
    while dbs.iter().any(|db| catalog.holds_dump(&db.dbname, &stamp)) {
        stamp = stamp.next_second();
    }
    stamp
}

fn backup_one(
    ctx: &Context,
    catalog: &Catalog,
    db: &Database,
    stamp: Stamp,
    obs: &dyn Observer,
) -> Result<Manifest> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let recipients = ctx.cfg.recipients();
    let file = dump_name_as(&db.dbname, &stamp, !recipients.is_empty());
    let mut out = AtomicFile::create(&catalog.dir().join(&file))?;
    let temp_name = out.temp_path().display().to_string();

    let mut cmd = ctx.tools.command("pg_dump", db, &db.dbname)?;
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd, "pg_dump")?;
    let stderr = StderrTail::start(&mut child);
    let stdout = child.stdout.take().expect("piped stdout");

    let mut scanner = ArchiveScanner::new();
    let bar = obs.bytes(format!("{}: dumping", db.dbname));
    // Compressed, then encrypted when recipients are configured, then
    // hashed: the manifest's SHA-256 is of the bytes stored.
    let mut writer = Sealed::new(HashingWriter::new(out.file()), recipients)
        .map_err(|e| Error::io(format!("encrypting {temp_name}"), e))?;
    let opts = CompressOptions {
        level: ctx.cfg.compression_level,
        threads: ctx.cfg.compression_threads(),
        ..Default::default()
    };
    let done = AtomicBool::new(false);
    let compressed = std::thread::scope(|s| {
        kill_on_cancel(s, &ctx.cancel, &done, child.id());
        // Row-sized chunks merged before compression (see pg::rechunk).
        let input = Rechunk::new(stdout);
        let r = compress_parallel(input, &mut writer, opts, &ctx.cancel, |chunk| {
            bar.inc(chunk.len());
            scanner.feed(chunk).map_err(|e| e.to_string())
        });
        done.store(true, Ordering::Relaxed);
        r
    });
    drop(bar);
    if compressed.is_err() {
        kill_group(child.id());
    }
    let status = ctx.wait_child(&mut child, "pg_dump")?;
    let stderr = stderr.finish();
    // age's last chunk, written only after everything before it.
    let sealed = writer.finish();

    ctx.check_cancel()?;
    let stats = match compressed {
        Err(CompressError::Cancelled) => return Err(Error::Interrupted),
        Err(CompressError::Write(e)) => return Err(Error::io(format!("writing {temp_name}"), e)),
        Err(CompressError::Inspect(reason)) => {
            return Err(Error::Corrupt {
                file: "pg_dump output".into(),
                reason,
            });
        }
        _ if !status.success() => return Err(tool_error("pg_dump", status, &stderr)),
        Err(CompressError::Read(e)) => {
            return Err(Error::io("pg_dump output: reading the input", e));
        }
        Ok(stats) => stats,
    };
    let archive = scanner.finish().map_err(|e| Error::Corrupt {
        file: "pg_dump output".into(),
        reason: format!("{e} although pg_dump reported success"),
    })?;
    let (_, sha256, size_bytes) = sealed
        .map_err(|e| Error::io(format!("writing {temp_name}"), e))?
        .finish();
    out.commit()?;

    let finished_at = Utc::now();
    let m = Manifest {
        format_version: manifest::FORMAT_VERSION,
        tool_version: format!("valerix-backup {}", env!("CARGO_PKG_VERSION")),
        database: db.name.clone(),
        dbname: db.dbname.clone(),
        host: db.host.clone(),
        port: db.port,
        timestamp: stamp,
        file,
        sha256,
        size_bytes,
        uncompressed_bytes: stats.bytes_in,
        compression: format!(
            "gzip, libdeflate level {} ({} members)",
            libdeflate_level(opts.level),
            stats.members
        ),
        pg_dump_version: archive.pg_dump_version,
        server_version: archive.server_version,
        archive_version: archive.archive_version,
        started_at,
        finished_at,
        duration_secs: t0.elapsed().as_secs_f64(),
        tables: archive.tables,
        encryption: (!recipients.is_empty()).then(|| manifest::Encryption {
            scheme: "age".into(),
            recipients: recipients.iter().map(ToString::to_string).collect(),
        }),
        config: None,
    };
    catalog.write_manifest(&m)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failed: bool, retention: bool) -> BackupReport {
        let db = |name: &str, error: Option<&str>| DbBackup {
            database: name.into(),
            dbname: format!("{name}_db"),
            ok: error.is_none(),
            error: error.map(String::from),
            manifest: None,
        };
        BackupReport {
            timestamp: Stamp::parse("20261201_020000").unwrap(),
            results: vec![
                db("order", None),
                db("payment", failed.then_some("pg_dump failed")),
            ],
            pruned: vec![],
            retention_warnings: if retention {
                vec!["retention failed: removing x".into()]
            } else {
                vec![]
            },
            size_anomalies: vec![],
        }
    }

    fn run(failed: bool, upload: Option<UploadStep>, retention: bool) -> Result<()> {
        BackupRun {
            backup: report(failed, retention),
            upload,
        }
        .outcome()
    }

    fn upload_failed() -> Option<UploadStep> {
        Some(UploadStep::Failed(Error::Offsite("403 denied".into())))
    }

    #[test]
    fn a_failed_database_comes_first_then_the_upload_then_retention() {
        let e = run(true, upload_failed(), true).unwrap_err();
        assert!(matches!(e, Error::Partial { failed: 1, .. }), "{e}");
        let e = run(false, upload_failed(), true).unwrap_err();
        assert!(matches!(e, Error::Offsite(_)), "{e}");
        let e = run(false, Some(UploadStep::Skipped), true).unwrap_err();
        assert!(matches!(e, Error::Warning(_)), "{e}");
        assert_eq!(e.exit_code(), 3);
        run(false, None, false).unwrap();
    }

    #[test]
    fn a_failed_blob_fails_the_run_after_the_backups() {
        let up = UploadReport {
            container: "c".into(),
            results: vec![upload::BlobUpload {
                file: "order_db_20261201_020000.dump.gz".into(),
                error: Some("503".into()),
                ..Default::default()
            }],
            reports: Vec::new(),
        };
        let e = run(false, Some(UploadStep::Done(up)), true).unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
    }
}
