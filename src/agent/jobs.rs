//! The agent's jobs: the same library calls the CLI makes, with what they
//! report turned into metrics and alerts.

use std::time::Instant;

use chrono::Utc;
use tracing::{info, warn};

use crate::agent::Shared;
use crate::agent::alert::{Alert, AlertKind};
use crate::agent::metrics::labels;
use crate::agent::schedule::Job;
use crate::error::{Error, Result};
use crate::ops::upload::{Selection, TierChoice, UploadReport};
use crate::ops::{Context, audit, backup, inspect, upload, verify};

/// Runs `job` once, recording its metrics and sending its alerts. The error,
/// if any, is the job's overall outcome.
pub fn run(ctx: &Context, shared: &Shared, job: Job) -> Result<()> {
    let t0 = Instant::now();
    let m = &shared.metrics;
    let l = labels(&[("job", job.as_str())]);
    m.running.get_or_create(&l).set(1.0);
    info!("job {job} started");
    let result = match job {
        Job::Backup => run_backup(ctx, shared),
        Job::Verify => run_verify(ctx, shared, false),
        Job::Drill => run_verify(ctx, shared, true),
        Job::WeeklyUpload => run_upload(ctx, shared, Selection::Latest, TierChoice::Weekly, job),
        Job::Audit => run_audit(ctx, shared),
    };
    let secs = t0.elapsed().as_secs_f64();
    m.running.get_or_create(&l).set(0.0);
    m.duration.get_or_create(&l).set(secs);
    let now = Utc::now().timestamp() as f64;
    match &result {
        // A warning (retention after a good backup) has been alerted on
        // its own; the job did what it is for.
        Ok(()) | Err(Error::Warning(_)) => {
            m.last_success
                .get_or_create(&job_labels(job, None))
                .set(now);
            info!("job {job} succeeded in {secs:.1} s");
        }
        Err(Error::Interrupted) => warn!("job {job} interrupted after {secs:.1} s"),
        Err(e) => {
            m.last_failure
                .get_or_create(&job_labels(job, None))
                .set(now);
            warn!("job {job} failed after {secs:.1} s: {e}");
        }
    }
    shared.outcome(job, None, &result);
    result
}

/// `job` and, for per-database series, `database`; the job's own series
/// carry `database="all"`.
fn job_labels(job: Job, db: Option<&str>) -> Vec<(String, String)> {
    labels(&[("job", job.as_str()), ("database", db.unwrap_or("all"))])
}

fn mark(shared: &Shared, job: Job, db: &str, error: Option<&str>) {
    let now = Utc::now().timestamp() as f64;
    let series = job_labels(job, Some(db));
    let gauge = match error {
        None => &shared.metrics.last_success,
        Some(_) => &shared.metrics.last_failure,
    };
    gauge.get_or_create(&series).set(now);
    let result = match error {
        None => Ok(()),
        Some(e) => Err(Error::Check(e.to_string())),
    };
    shared.outcome(job, Some(db), &result);
}

fn run_backup(ctx: &Context, shared: &Shared) -> Result<()> {
    let report = backup::backup(ctx, &[], &backup::BackupOptions { prune: true })?;
    for r in &report.results {
        mark(shared, Job::Backup, &r.dbname, r.error.as_deref());
        if let Some(m) = &r.manifest {
            let l = labels(&[("database", &r.dbname)]);
            shared
                .metrics
                .backup_size
                .get_or_create(&l)
                .set(m.size_bytes as f64);
            shared
                .metrics
                .backup_written
                .get_or_create(&l)
                .set(m.uncompressed_bytes as f64);
            size_check(ctx, shared, &r.dbname, m.size_bytes);
        }
    }
    for w in &report.retention_warnings {
        shared.alerts.send(Alert::new(
            AlertKind::JobFailed,
            Job::Backup.as_str(),
            None,
            w.clone(),
        ));
    }
    let backed_up = report.backed_up();
    if ctx.cfg.azure.is_some() && report.results.iter().any(|r| r.ok) {
        let up = upload::upload(ctx, Selection::At(report.timestamp), TierChoice::Auto, &[]);
        record_upload(shared, Job::Backup, up)?;
    }
    backed_up?;
    report.retention_outcome()
}

fn run_upload(
    ctx: &Context,
    shared: &Shared,
    sel: Selection,
    tier: TierChoice,
    job: Job,
) -> Result<()> {
    if ctx.cfg.azure.is_none() {
        info!("no [azure] section: nothing to upload");
        return Ok(());
    }
    record_upload(shared, job, upload::upload(ctx, sel, tier, &[]))
}

fn record_upload(shared: &Shared, job: Job, up: Result<UploadReport>) -> Result<()> {
    let report = up?;
    for r in &report.results {
        let l = labels(&[("database", &r.database), ("tier", &r.tier)]);
        shared
            .metrics
            .uploaded
            .get_or_create(&l)
            .set(r.bytes as f64);
        let series = labels(&[("job", "upload"), ("database", &r.database)]);
        let now = Utc::now().timestamp() as f64;
        match &r.error {
            None => {
                shared.metrics.last_success.get_or_create(&series).set(now);
            }
            Some(e) => {
                shared.metrics.last_failure.get_or_create(&series).set(now);
                shared.alerts.send(Alert::new(
                    AlertKind::JobFailed,
                    job.as_str(),
                    Some(&r.database),
                    format!("upload of {} failed: {e}", r.file),
                ));
            }
        }
    }
    report.outcome()
}

/// A new backup more than `size_anomaly_factor` (3 without [azure]) off the
/// median of the database's other local backups.
fn size_check(ctx: &Context, shared: &Shared, dbname: &str, size: u64) {
    let factor = ctx
        .cfg
        .azure
        .as_ref()
        .map_or(3.0, |a| a.size_anomaly_factor);
    let Ok(dbs) = ctx.cfg.select(&[dbname.to_string()]) else {
        return;
    };
    let Ok(all) = crate::catalog::Catalog::open_existing(&ctx.cfg).list(&dbs) else {
        return;
    };
    let mut sizes: Vec<u64> = all
        .iter()
        .filter(|b| b.is_sound())
        .map(|b| b.size)
        .collect();
    sizes.pop(); // the new one
    if sizes.len() < 3 {
        return;
    }
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2] as f64;
    let s = size as f64;
    if s > median * factor || s * factor < median {
        shared.alerts.send(Alert::new(
            AlertKind::SizeAnomaly,
            "backup",
            Some(dbname),
            format!(
                "backup of {dbname} is {size} bytes, {:.2} x the median {} of its earlier backups",
                s / median.max(1.0),
                median as u64
            ),
        ));
    }
}

fn run_verify(ctx: &Context, shared: &Shared, deep: bool) -> Result<()> {
    let job = if deep { Job::Drill } else { Job::Verify };
    let report = verify::verify(ctx, None, &[], deep)?;
    let now = Utc::now().timestamp() as f64;
    for r in &report.results {
        mark(shared, job, &r.database, r.error.as_deref());
        let l = labels(&[("database", &r.database)]);
        if r.ok {
            shared.metrics.last_verified.get_or_create(&l).set(now);
            if deep {
                shared.metrics.last_deep_verified.get_or_create(&l).set(now);
                if let Some(secs) = r.restore_secs {
                    shared.metrics.drill_restore.get_or_create(&l).set(secs);
                }
            }
        }
    }
    report.outcome()
}

fn run_audit(ctx: &Context, shared: &Shared) -> Result<()> {
    if ctx.cfg.azure.is_none() {
        info!("no [azure] section: nothing to audit");
        return Ok(());
    }
    let report = audit::audit(ctx, &audit::AuditOptions::default())?;
    let mut counts: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for f in &report.findings {
        let kind = serde_json::to_value(f.kind).expect("kinds serialize");
        *counts
            .entry(kind.as_str().unwrap_or("?").to_string())
            .or_default() += 1.0;
    }
    shared.metrics.audit_findings.clear();
    for (kind, n) in &counts {
        shared
            .metrics
            .audit_findings
            .get_or_create(&labels(&[("kind", kind)]))
            .set(*n);
    }
    report.outcome()
}

/// After every job: a database without a sound backup younger than
/// `max_backup_age` is an alert (once; its return is a recovery).
pub fn check_freshness(ctx: &Context, shared: &Shared) {
    let Ok(status) = inspect::status(ctx, ctx.cfg.agent.max_backup_age) else {
        return;
    };
    for d in &status.databases {
        if let Some(age) = d.age_secs {
            shared
                .metrics
                .newest_backup_age
                .get_or_create(&labels(&[("database", &d.dbname)]))
                .set(age as f64);
        }
        let result = match &d.problem {
            None => Ok(()),
            Some(p) => Err(Error::Check(p.clone())),
        };
        shared.transition(
            "freshness",
            Some(&d.dbname),
            &result,
            AlertKind::BackupMissing,
        );
    }
}
