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
use crate::ops::anomaly::SizeAnomaly;
use crate::ops::backup::DbBackup;
use crate::ops::upload::{BlobUpload, Selection, TierChoice};
use crate::ops::{Context, Observer, audit, backup, inspect, upload, verify};

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
        Job::WeeklyUpload => run_weekly_catch_up(ctx, shared),
        Job::Audit => run_audit(ctx, shared),
        Job::DrillRegion => run_drill_region(ctx, shared),
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
    shared.record(job, Some(db), error);
}

/// The agent's observer: what a job reports while it runs becomes metrics
/// and alerts.
struct Recorder<'a> {
    shared: &'a Shared,
    job: Job,
}

impl Observer for Recorder<'_> {
    fn backed_up(&self, r: &DbBackup) {
        mark(self.shared, self.job, &r.dbname, r.error.as_deref());
        let Some(m) = &r.manifest else { return };
        let l = labels(&[("database", &r.dbname)]);
        let metrics = &self.shared.metrics;
        metrics
            .backup_size
            .get_or_create(&l)
            .set(m.size_bytes as f64);
        metrics
            .backup_written
            .get_or_create(&l)
            .set(m.uncompressed_bytes as f64);
    }

    fn retention_warning(&self, warning: &str) {
        self.shared.alerts.send(Alert::new(
            AlertKind::JobFailed,
            self.job.as_str(),
            None,
            warning.to_string(),
        ));
    }

    fn size_anomaly(&self, a: &SizeAnomaly) {
        self.shared.alerts.send(Alert::new(
            AlertKind::SizeAnomaly,
            "backup",
            Some(&a.dbname),
            a.to_string(),
        ));
    }

    fn uploaded(&self, r: &BlobUpload) {
        let metrics = &self.shared.metrics;
        let l = labels(&[("database", &r.database), ("tier", &r.tier)]);
        metrics.uploaded.get_or_create(&l).set(r.bytes as f64);
        let series = labels(&[("job", "upload"), ("database", &r.database)]);
        let now = Utc::now().timestamp() as f64;
        let Some(e) = &r.error else {
            metrics.last_success.get_or_create(&series).set(now);
            return;
        };
        metrics.last_failure.get_or_create(&series).set(now);
        self.shared.alerts.send(Alert::new(
            AlertKind::JobFailed,
            self.job.as_str(),
            Some(&r.database),
            format!("upload of {} failed: {e}", r.file),
        ));
    }
}

/// The backup job: `backup`, and `--upload` whenever `[azure]` is set.
fn run_backup(ctx: &Context, shared: &Shared) -> Result<()> {
    let opts = backup::BackupOptions {
        targets: Vec::new(),
        prune: true,
        upload: ctx.cfg.azure.is_some(),
    };
    let obs = Recorder {
        shared,
        job: Job::Backup,
    };
    backup::backup(ctx, &opts, &obs)?.outcome()
}

/// The weekly upload job, a catch-up of the weekly rule: the newest sound
/// backup of each database, uploaded with `--tier auto`. When its week has
/// no weekly copy yet (the backup job's upload failed, or it ran without
/// one) it becomes the week's weekly copy; otherwise it goes to, or is
/// already in, the daily tier, and the week keeps its one weekly copy.
fn run_weekly_catch_up(ctx: &Context, shared: &Shared) -> Result<()> {
    if ctx.cfg.azure.is_none() {
        info!("no [azure] section: nothing to upload");
        return Ok(());
    }
    let obs = Recorder {
        shared,
        job: Job::WeeklyUpload,
    };
    upload::upload(ctx, Selection::Latest, TierChoice::Auto, &[], &obs)?.outcome()
}

fn run_verify(ctx: &Context, shared: &Shared, deep: bool) -> Result<()> {
    let job = if deep { Job::Drill } else { Job::Verify };
    let obs = Recorder { shared, job };
    let report = verify::verify(ctx, None, &[], deep, &obs)?;
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
    let obs = Recorder {
        shared,
        job: Job::Audit,
    };
    let report = audit::audit(ctx, &audit::AuditOptions::default(), &obs)?;
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
        shared.transition(
            "freshness",
            Some(&d.dbname),
            d.problem.as_deref(),
            AlertKind::BackupMissing,
        );
    }
}

/// The region drill (`drill region`): geo-restore into a throwaway server,
/// smoke check, delete. Each step's seconds become
/// `drill_region_seconds{step}` (and `step="rto"`, preflight to a checked
/// server); a failure is alerted by the job's outcome.
fn run_drill_region(ctx: &Context, shared: &Shared) -> Result<()> {
    let az = crate::ops::upload::azure(ctx)?;
    let arm = crate::arm::Arm::connect(az)?;
    let report = crate::ops::geo::drill::drill(ctx, &arm, &Default::default(), &ctx.progress)?;
    let gauge = &shared.metrics.drill_region;
    gauge.clear();
    for (step, secs) in report.steps.list() {
        gauge.get_or_create(&labels(&[("step", step)])).set(secs);
    }
    gauge
        .get_or_create(&labels(&[("step", "rto")]))
        .set(report.rto_secs);
    report.into_outcome()
}
