//! `valerix-backup agent`: the seed's whole schedule in one process.
//!
//! One scheduler loop fires jobs at their cron slots into a queue; one
//! worker thread runs them one at a time, through the same library calls as
//! the CLI (and under the same directory lock, so a cron job or an operator
//! running `backup` by hand is never run over). A job whose slot comes while
//! it is still running or queued is skipped, not stacked. A slot missed while
//! the agent was down runs once at start-up when it is younger than
//! `catch_up_grace`. SIGTERM or Ctrl-C cancels the job in flight (its
//! temporary files and databases are removed, no blob is committed) and the
//! agent exits.

pub mod alert;
pub mod http;
pub mod jobs;
pub mod metrics;
pub use crate::schedule;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::ui::Progress;
use alert::{Alert, AlertKind, Alerter};
use metrics::Metrics;
use schedule::{Job, Schedule};

/// What the scheduler, the worker and the HTTP endpoint share.
pub struct Shared {
    pub metrics: Metrics,
    pub alerts: Alerter,
    /// Series (`job/database`) whose last outcome was a failure, for
    /// recovery alerts.
    failing: Mutex<HashMap<String, bool>>,
    /// Jobs running or waiting to run.
    busy: Mutex<HashSet<Job>>,
    /// Unix time of the scheduler's last turn: /healthz.
    heartbeat: AtomicI64,
    ready: AtomicBool,
    /// Set when a per-database outcome was recorded in the current job.
    per_db: AtomicBool,
}

impl Shared {
    pub fn new(alerts: Alerter) -> Shared {
        Shared {
            metrics: Metrics::default(),
            alerts,
            failing: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            heartbeat: AtomicI64::new(Utc::now().timestamp()),
            ready: AtomicBool::new(false),
            per_db: AtomicBool::new(false),
        }
    }

    /// Records the outcome of a job for one database (or overall, `None`),
    /// as [`Shared::record`] does; an interrupted job has none.
    pub fn outcome(&self, job: Job, db: Option<&str>, result: &Result<()>) {
        match result {
            Err(Error::Interrupted) if db.is_some() => self.per_db.store(true, Ordering::Relaxed),
            Err(Error::Interrupted) => {}
            Ok(()) => self.record(job, db, None),
            Err(e) => self.record(job, db, Some(&e.to_string())),
        }
    }

    /// Records how a job went for one database (or overall, `None`; unless
    /// each database already said): a failure alerts every time; a success
    /// after a failure alerts once as a recovery.
    pub fn record(&self, job: Job, db: Option<&str>, failure: Option<&str>) {
        if db.is_some() {
            self.per_db.store(true, Ordering::Relaxed);
        } else if self.per_db.load(Ordering::Relaxed) {
            return; // each database already said how it went
        }
        let kind = match job {
            Job::Verify | Job::Drill => AlertKind::VerifyFailed,
            Job::Audit => AlertKind::AuditFailed,
            Job::Backup | Job::WeeklyUpload => AlertKind::JobFailed,
            Job::DrillRegion => AlertKind::DrillFailed,
        };
        self.transition(job.as_str(), db, failure, kind);
    }

    /// `what` of `db` failed (`failure`, the message) or went well: alerts on
    /// a failure and on the first success after one.
    pub fn transition(&self, what: &str, db: Option<&str>, failure: Option<&str>, kind: AlertKind) {
        let key = format!("{what}/{}", db.unwrap_or("all"));
        let was_failing = self
            .failing
            .lock()
            .expect("not poisoned")
            .insert(key, failure.is_some())
            .unwrap_or(false);
        let target = db.map(|d| format!(" of {d}")).unwrap_or_default();
        match failure {
            Some(e) if kind != AlertKind::BackupMissing || !was_failing => self.alerts.send(
                Alert::new(kind, what, db, format!("{what}{target} failed: {e}")),
            ),
            None if was_failing => self.alerts.send(Alert::new(
                AlertKind::Recovered,
                what,
                db,
                format!("{what}{target} is healthy again"),
            )),
            _ => {}
        }
    }

    pub fn healthy(&self) -> bool {
        Utc::now().timestamp() - self.heartbeat.load(Ordering::Relaxed) < 30
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// When each job last ran, kept in the backup directory across restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    last_run: BTreeMap<Job, DateTime<Utc>>,
}

const STATE_FILE: &str = ".agent-state.json";
const FRESHNESS_EVERY: Duration = Duration::from_secs(300);

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Job, D::Error> {
        let s = String::deserialize(d)?;
        Job::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown job {s}")))
    }
}

fn state_path(cfg: &Config) -> PathBuf {
    cfg.backup_dir.join(STATE_FILE)
}

fn load_state(cfg: &Config) -> State {
    std::fs::read(state_path(cfg))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(cfg: &Config, job: Job, at: DateTime<Utc>) {
    let mut s = load_state(cfg);
    s.last_run.insert(job, at);
    let write = || -> Result<()> {
        crate::catalog::fsutil::create_private_dir(&cfg.backup_dir)?;
        let text = serde_json::to_vec_pretty(&s).expect("state serializes");
        crate::catalog::fsutil::replace_atomic(&state_path(cfg), &text)
    };
    if let Err(e) = write() {
        warn!("cannot save the agent's state: {e}");
    }
}

/// `agent --once JOB`: runs it now, waits for its alerts, returns its
/// outcome (what a Kubernetes CronJob or a systemd timer calls).
pub fn once(cfg: Config, job: Job, cancel: Arc<AtomicBool>) -> Result<()> {
    let shared = Shared::new(Alerter::start(cfg.alert.webhook.clone()));
    let ctx = Context::new(cfg, Progress::hidden(), cancel);
    let result = jobs::run(&ctx, &shared, job);
    save_state(&ctx.cfg, job, Utc::now());
    jobs::check_freshness(&ctx, &shared);
    shared.alerts.finish(Duration::from_secs(30));
    result
}

/// The long-running agent. Returns when `cancel` is set (SIGTERM, Ctrl-C)
/// and the job in flight has stopped.
pub fn run(cfg: Config, cancel: Arc<AtomicBool>) -> Result<()> {
    let schedule = &cfg.agent.schedule;
    let shared = Arc::new(Shared::new(Alerter::start(cfg.alert.webhook.clone())));
    if let Some(addr) = &cfg.agent.listen {
        http::serve(addr, shared.clone())?;
    }
    for e in &schedule.entries {
        info!("schedule: {} at '{}' ({})", e.job, e.expr, schedule.tz);
    }
    let (tx, rx) = channel::<Job>();
    let worker = {
        let (cfg, shared, cancel) = (cfg.clone(), shared.clone(), cancel.clone());
        std::thread::Builder::new()
            .name("jobs".into())
            .spawn(move || {
                let ctx = Context::new(cfg, Progress::hidden(), cancel);
                for job in rx {
                    if ctx.check_cancel().is_err() {
                        break;
                    }
                    shared.per_db.store(false, Ordering::Relaxed);
                    let started = Utc::now();
                    let _ = jobs::run(&ctx, &shared, job);
                    save_state(&ctx.cfg, job, started);
                    jobs::check_freshness(&ctx, &shared);
                    shared.busy.lock().expect("not poisoned").remove(&job);
                }
            })
            .expect("spawning the job thread")
    };
    catch_up(&cfg, schedule, &shared, &tx);
    let mut next: BTreeMap<Job, DateTime<Utc>> = Job::ALL
        .iter()
        .filter_map(|j| schedule.next(*j, Utc::now()).map(|t| (*j, t)))
        .collect();
    shared.ready.store(true, Ordering::Relaxed);
    info!("agent ready");
    // A backup that never comes (a job stuck, a schedule wrong) is seen
    // without waiting for the next job.
    let watcher = Context::new(cfg.clone(), Progress::hidden(), cancel.clone());
    let mut freshness_checked = std::time::Instant::now();
    while !cancel.load(Ordering::Relaxed) {
        let now = Utc::now();
        shared.heartbeat.store(now.timestamp(), Ordering::Relaxed);
        if freshness_checked.elapsed() > FRESHNESS_EVERY {
            jobs::check_freshness(&watcher, &shared);
            freshness_checked = std::time::Instant::now();
        }
        for (job, at) in next.iter_mut() {
            if *at <= now {
                enqueue(&shared, &tx, *job, "its slot");
                if let Some(t) = schedule.next(*job, now) {
                    *at = t;
                }
            }
        }
        let soonest = next
            .values()
            .min()
            .copied()
            .unwrap_or(now + chrono::Duration::seconds(60));
        let wait = (soonest - Utc::now()).to_std().unwrap_or_default();
        std::thread::sleep(wait.min(Duration::from_millis(200)));
    }
    info!("stopping: the job in flight is being cancelled");
    drop(tx);
    let _ = worker.join();
    shared.alerts.finish(Duration::from_secs(10));
    Err(Error::Interrupted)
}

fn enqueue(shared: &Shared, tx: &Sender<Job>, job: Job, why: &str) {
    let mut busy = shared.busy.lock().expect("not poisoned");
    if !busy.insert(job) {
        warn!("{job}: {why} came while it is still running or queued; skipped");
        return;
    }
    info!("{job}: queued ({why})");
    let _ = tx.send(job);
}

/// Slots missed while the agent was down, younger than the grace period,
/// run once now.
fn catch_up(cfg: &Config, schedule: &Schedule, shared: &Shared, tx: &Sender<Job>) {
    let state = load_state(cfg);
    let now = Utc::now();
    let grace = chrono::Duration::from_std(cfg.agent.catch_up_grace).unwrap_or_default();
    for job in Job::ALL {
        let Some(slot) = schedule.previous(job, now) else {
            continue;
        };
        let missed = state.last_run.get(&job).is_none_or(|last| *last < slot);
        if missed && now - slot <= grace {
            enqueue(shared, tx, job, &format!("missed slot {slot}"));
        }
    }
}
