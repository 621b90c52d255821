//! `audit`: what is offsite, proven against what should be.
//!
//! One listing of the container (metadata and tags, paged) is joined with the
//! config and the local catalog. Every problem is a [`Finding`]; the audit
//! passes only when there are none: a configured database without any copy,
//! or whose newest copy is older than `max_offsite_age_hours`, is one.
//! `--deep` downloads dump blobs and re-hashes them and reads their
//! manifests, remembering each blob it proved (by name, ETag and SHA-256) so
//! that a daily deep audit only reads what is new, and each blob that failed,
//! so that `prune --offsite` and the tags never treat it as sound.
//!
//! The audit also repairs the `superseded` index tags the lifecycle policy
//! filters on (see [`crate::offsite`]): the newest sound copy of each
//! database and tier must not carry it, every older copy must.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::copies::{
    DeepState, OffsiteCopy, copies_of, created, expired, past_retention, read_manifest,
    repair_tags, sets_of, sound_weekly,
};
use crate::catalog::{Catalog, LocalBackup, Stamp, manifest_of, parse_file_name};
use crate::config::{Azure, Database};
use crate::error::{Error, Kind, Result};
use crate::offsite::{BlobPath, Tier, short, week_of};
use crate::ops::upload::azure;
use crate::ops::{Context, Observer, anomaly};
use crate::pipeline::HashingWriter;
use crate::storage::azure::AzureStore;
use crate::storage::dry_run::DryRun;
use crate::storage::{Object, Store};

/// Days the daily inventory looks back (today and the 29 before it), and
/// weeks the weekly one does; both shortened to what retention keeps.
const DAILY_WINDOW_DAYS: i64 = 30;
const WEEKLY_WINDOW_WEEKS: i64 = 12;
/// The lifecycle policy may run up to a day late.
const RETENTION_SLACK_DAYS: i64 = 1;

#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    pub deep: bool,
    /// With `deep`: re-read blobs already proven by an earlier audit.
    pub recheck: bool,
    pub targets: Vec<String>,
    /// Judge gaps and retention as of this instant (default: now).
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A configured database has no offsite copy at all.
    NoOffsiteCopy,
    /// Its newest copy is older than `max_offsite_age_hours`.
    UploadsStopped,
    MissingDaily,
    MissingWeekly,
    NotOffsite,
    PastRetention,
    NoHash,
    HashMismatch,
    Corrupt,
    SizeAnomaly,
    WrongTier,
    MissingManifest,
    /// A deep audit found the manifest blob unreadable or not matching.
    BadManifest,
    /// The `superseded` index tags could not be repaired.
    TagRepair,
    UnknownBlob,
    /// A configured flexible server could not be geo-restored.
    GeoRestore,
    /// A flexible server's backups fall short of the plan (retention).
    ServerBackup,
    /// A copy of an immutable tier (`azure.immutable`) without an
    /// immutability policy, within its retention.
    NotImmutable,
    /// A copy of an immutable tier whose policy ends before its retention.
    PolicyTooShort,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub database: String,
    pub blob: Option<String>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub container: String,
    pub audited_at: DateTime<Utc>,
    pub blobs_listed: usize,
    pub deep_checked: usize,
    pub deep_skipped: usize,
    pub databases: Vec<DbInventory>,
    /// `azure-check` of the configured flexible servers, when there are any.
    pub servers: Option<Vec<crate::ops::geo::ServerCheck>>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize, Default)]
pub struct DbInventory {
    pub dbname: String,
    pub daily: usize,
    pub weekly: usize,
    pub bytes: u64,
    pub newest_daily: Option<Stamp>,
    pub newest_weekly: Option<Stamp>,
    pub oldest: Option<Stamp>,
    /// What protects the copies, and what deleted ones still cost.
    #[serde(skip_serializing_if = "Immutability::is_empty")]
    pub immutability: Immutability,
}

/// Per database: copies protected now, and the previous versions blob
/// versioning keeps of deleted or overwritten blobs (dumps and manifests),
/// billed until the lifecycle policy's version rule deletes them.
#[derive(Debug, Serialize, Default, Clone, PartialEq, Eq)]
pub struct Immutability {
    /// Copies (dump blobs) an immutability policy or a legal hold protects
    /// as of the audit.
    pub protected: usize,
    /// Of which under a legal hold.
    pub held: usize,
    pub previous_versions: usize,
    pub previous_version_bytes: u64,
}

impl Immutability {
    pub fn is_empty(&self) -> bool {
        *self == Immutability::default()
    }
}

impl AuditReport {
    pub fn outcome(&self) -> Result<()> {
        if self.findings.is_empty() {
            return Ok(());
        }
        let mut kinds: BTreeMap<FindingKind, usize> = BTreeMap::new();
        for f in &self.findings {
            *kinds.entry(f.kind).or_default() += 1;
        }
        let summary: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{n} {}", serde_json::to_value(k).unwrap().as_str().unwrap()))
            .collect();
        Err(Error::Unsound(format!(
            "audit found {} problem(s): {}",
            self.findings.len(),
            summary.join(", ")
        )))
    }
}

pub fn audit(ctx: &Context, opts: &AuditOptions, obs: &dyn Observer) -> Result<AuditReport> {
    let store = AzureStore::open(azure(ctx)?)?;
    audit_store(ctx, &store, opts, obs)
}

/// The audit of the copies in `store` (any driver: the unit tests use the
/// in-memory one).
pub fn audit_store(
    ctx: &Context,
    store: &dyn Store,
    opts: &AuditOptions,
    obs: &dyn Observer,
) -> Result<AuditReport> {
    let az = azure(ctx)?;
    let dbs = ctx.cfg.select_sets(&opts.targets)?;
    let now = opts.as_of.unwrap_or_else(Utc::now);
    let blobs = store.list(&az.prefix)?;
    info!("listed {} blob(s) in {}", blobs.len(), store.describe());
    let local = Catalog::open_existing(&ctx.cfg).list(&dbs)?;
    let mut report = AuditReport {
        container: store.describe(),
        audited_at: now,
        blobs_listed: blobs.len(),
        deep_checked: 0,
        deep_skipped: 0,
        databases: Vec::new(),
        servers: None,
        findings: unknown_blobs(az, &blobs),
    };
    // With --db, only the strays in those databases' folders.
    if !opts.targets.is_empty() {
        report.findings.retain(|f| {
            let name = f
                .blob
                .as_deref()
                .and_then(|b| b.strip_prefix(az.prefix.as_str()));
            let folder = name.and_then(|b| b.split('/').nth(1));
            dbs.iter().any(|d| Some(d.dbname.as_str()) == folder)
        });
    }
    let mut state = DeepState::load(&ctx.cfg.backup_dir);
    let previous = previous_versions(store, az);
    for db in &dbs {
        let copies = copies_of(az, &blobs, db);
        let mut inv = inventory(db, &copies);
        inv.immutability = immutability_of(az, db, &copies, &previous, now);
        report.databases.push(inv);
        let mut f = Vec::new();
        empty_or_stale(az, store, &copies, now, &mut f);
        let weekly = sound_weekly(az, &blobs, db, &state);
        gaps(az, &copies, &weekly, now, &mut f);
        not_offsite(az, db, &local, &copies, now, &mut f);
        per_blob(az, &blobs, &copies, &local, now, &mut f);
        policies(az, &copies, now, &mut f);
        size_anomalies(az, &copies, now, &mut f);
        for x in &mut f {
            x.database = db.dbname.clone();
        }
        report.findings.extend(f);
    }
    if opts.deep {
        deep(
            ctx,
            store,
            &dbs,
            az,
            &blobs,
            opts.recheck,
            &mut state,
            &mut report,
            obs,
        )?;
    }
    let tags = repair_tags(store, az, &blobs, &dbs, &state);
    report
        .findings
        .extend(tags.failures().into_iter().map(|(db, line)| Finding {
            kind: FindingKind::TagRepair,
            database: db,
            blob: None,
            detail: line,
        }));
    if !az.postgres_servers.is_empty() {
        servers(ctx, &mut report);
    }
    Ok(report)
}

/// The preflight of `azure-check`, as findings: a server that cannot be
/// geo-restored is as much a gap in the recovery plan as a missing copy.
fn servers(ctx: &Context, report: &mut AuditReport) {
    let checks = match crate::ops::geo::check(ctx) {
        Ok(c) => c.servers,
        Err(e) => {
            report.findings.push(Finding {
                kind: FindingKind::GeoRestore,
                database: String::new(),
                blob: None,
                detail: format!("cannot check the flexible servers: {e}"),
            });
            return;
        }
    };
    for c in &checks {
        let found = |kind, detail: &String| Finding {
            kind,
            database: c.name.clone(),
            blob: None,
            detail: detail.clone(),
        };
        let problems = c.problems.iter().map(|p| found(FindingKind::GeoRestore, p));
        let warnings = c
            .warnings
            .iter()
            .map(|w| found(FindingKind::ServerBackup, w));
        report.findings.extend(problems.chain(warnings));
    }
    report.servers = Some(checks);
}

fn inventory(db: &Database, copies: &[OffsiteCopy]) -> DbInventory {
    let newest = |t: Tier| copies.iter().filter(|c| c.tier == t).map(|c| c.stamp).max();
    DbInventory {
        dbname: db.dbname.clone(),
        daily: copies.iter().filter(|c| c.tier == Tier::Daily).count(),
        weekly: copies.iter().filter(|c| c.tier == Tier::Weekly).count(),
        bytes: copies.iter().map(|c| c.blob.size).sum(),
        newest_daily: newest(Tier::Daily),
        newest_weekly: newest(Tier::Weekly),
        oldest: copies.first().map(|c| c.stamp),
        immutability: Immutability::default(),
    }
}

/// The previous versions in the store (none without blob versioning). A
/// store that cannot list them leaves the count out, with a warning: the
/// copies themselves are what the audit is about.
fn previous_versions(store: &dyn Store, az: &Azure) -> Vec<Object> {
    store.previous_versions(&az.prefix).unwrap_or_else(|e| {
        warn!("previous versions not counted: {e}");
        Vec::new()
    })
}

fn immutability_of(
    az: &Azure,
    db: &Database,
    copies: &[OffsiteCopy],
    previous: &[Object],
    now: DateTime<Utc>,
) -> Immutability {
    let mine: Vec<&Object> = previous
        .iter()
        .filter(|o| BlobPath::parse(az, &o.name).is_some_and(|p| p.dbname == db.dbname))
        .collect();
    Immutability {
        protected: copies
            .iter()
            .filter(|c| c.blob.protection.protects(now))
            .count(),
        held: copies
            .iter()
            .filter(|c| c.blob.protection.legal_hold)
            .count(),
        previous_versions: mine.len(),
        previous_version_bytes: mine.iter().map(|o| o.size).sum(),
    }
}

/// Copies of an immutable tier still within their retention: each must be
/// under a policy that lasts until its retention ends, or anyone with the
/// right to delete can take it away before then. Counted from the upload,
/// as the policy's date was; a minute's slack for the clock between the two.
fn policies(az: &Azure, copies: &[OffsiteCopy], now: DateTime<Utc>, out: &mut Vec<Finding>) {
    for c in copies.iter().filter(|c| az.is_immutable(c.tier.as_str())) {
        let days = c.tier.retention_days(az);
        let ends = created(c) + Duration::days(days as i64);
        if ends <= now {
            continue;
        }
        let name = Some(c.blob.name.as_str());
        match c.blob.protection.policy {
            None => out.push(finding(
                FindingKind::NotImmutable,
                name,
                format!(
                    "no immutability policy, though the {} tier is immutable (azure.immutable): \
                     it can be deleted before its retention ends on {} (uploaded before \
                     azure.immutable was set, or by another tool?)",
                    c.tier,
                    ends.format("%Y-%m-%d")
                ),
            )),
            Some(p) if p.until + Duration::minutes(1) < ends => {
                let state = if p.until <= now { "ended" } else { "ends" };
                out.push(finding(
                    FindingKind::PolicyTooShort,
                    name,
                    format!(
                        "its immutability policy {state} {}, before its retention ends on {} \
                         ({days} days after upload): it is {}",
                        p.until.format("%Y-%m-%d %H:%M UTC"),
                        ends.format("%Y-%m-%d"),
                        if p.until <= now {
                            "no longer protected"
                        } else {
                            "protected for less than its retention"
                        }
                    ),
                ));
            }
            Some(_) => {}
        }
    }
}

fn finding(kind: FindingKind, blob: Option<&str>, detail: String) -> Finding {
    Finding {
        kind,
        database: String::new(),
        blob: blob.map(str::to_string),
        detail,
    }
}

/// No copy at all (a wrong container or prefix, a lost inventory), or a
/// newest copy older than the daily cadence allows (uploads stopped).
fn empty_or_stale(
    az: &Azure,
    store: &dyn Store,
    copies: &[OffsiteCopy],
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let Some(newest) = copies.iter().max_by_key(|c| c.stamp) else {
        let prefix = if az.prefix.is_empty() {
            String::new()
        } else {
            format!(" under prefix {:?}", az.prefix)
        };
        out.push(finding(
            FindingKind::NoOffsiteCopy,
            None,
            format!(
                "no offsite copy at all in {}{prefix} (wrong container or prefix, or nothing \
                 was ever uploaded: run `valerix-backup upload`)",
                store.describe()
            ),
        ));
        return;
    };
    let age = now - newest.stamp.to_utc();
    let limit = az.max_offsite_age_hours;
    if age > Duration::hours(limit as i64) {
        out.push(finding(
            FindingKind::UploadsStopped,
            Some(&newest.blob.name),
            format!(
                "the newest offsite copy is from {} ({} hours ago, limit {limit} h, \
                 azure.max_offsite_age_hours): have uploads stopped?",
                newest.stamp,
                age.num_hours()
            ),
        ));
    }
}

/// Days without a copy, and weeks without a weekly copy. Today is never a
/// gap (its backup may not have run yet: `status` watches that), nor is any
/// day before the oldest copy. A copy in either tier counts for its day. A
/// week counts by the weekly rule ([`Tier::for_backup`]): the week that
/// starts on a weekly day D (00:00 UTC, at least a day ago and not before
/// the oldest copy) is a gap when none of `weekly` (when the sound weekly
/// copies were taken) falls in D..D+7 days; two in one week are no error.
fn gaps(
    az: &Azure,
    copies: &[OffsiteCopy],
    weekly: &[DateTime<Utc>],
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let Some(first) = copies.first().map(|c| c.stamp.to_utc().date_naive()) else {
        return;
    };
    let today = now.date_naive();
    let days: BTreeSet<NaiveDate> = copies
        .iter()
        .map(|c| c.stamp.to_utc().date_naive())
        .collect();
    // A copy as old as the retention may already be gone, legitimately.
    let daily_days = DAILY_WINDOW_DAYS.min(az.daily_retention_days as i64) - 1;
    let missing: Vec<NaiveDate> = (1..=daily_days)
        .map(|i| today - Duration::days(i))
        .filter(|d| *d >= first && !days.contains(d))
        .collect();
    if !missing.is_empty() {
        out.push(finding(
            FindingKind::MissingDaily,
            None,
            format!(
                "{} day(s) of the last {} have no offsite copy: {}",
                missing.len(),
                daily_days + 1,
                list_days(&missing)
            ),
        ));
    }
    let weekly_days_back = (WEEKLY_WINDOW_WEEKS * 7).min(az.weekly_retention_days as i64 - 1);
    let weekday = az.weekly_day.to_chrono();
    let weeks_held: BTreeSet<NaiveDate> = weekly.iter().map(|t| week_of(*t, weekday)).collect();
    let missing: Vec<NaiveDate> = (1..=weekly_days_back)
        .map(|i| today - Duration::days(i))
        .filter(|d| d.weekday() == weekday && *d >= first && !weeks_held.contains(d))
        .collect();
    if !missing.is_empty() {
        out.push(finding(
            FindingKind::MissingWeekly,
            None,
            format!(
                "{} week(s) of the last {} have no sound weekly copy (weeks starting {:?} \
                 00:00 UTC): {}",
                missing.len(),
                weekly_days_back / 7,
                weekday,
                list_days(&missing)
            ),
        ));
    }
}

fn list_days(days: &[NaiveDate]) -> String {
    days.iter()
        .rev()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sound local backups younger than `require_offsite_days` with no copy.
fn not_offsite(
    az: &Azure,
    db: &Database,
    local: &[LocalBackup],
    copies: &[OffsiteCopy],
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let since = Stamp::from_datetime(now).minus_days(az.require_offsite_days);
    for b in local
        .iter()
        .filter(|b| b.database == db.name && b.is_sound())
    {
        if b.stamp >= since && !copies.iter().any(|c| c.stamp == b.stamp) {
            out.push(finding(
                FindingKind::NotOffsite,
                None,
                format!(
                    "local backup {} has no offsite copy (run `valerix-backup upload {}`)",
                    b.file_name(),
                    b.stamp
                ),
            ));
        }
    }
}

/// Checks of each copy on its own: hash, manifest, retention, access tier.
fn per_blob(
    az: &Azure,
    blobs: &[Object],
    copies: &[OffsiteCopy],
    local: &[LocalBackup],
    now: DateTime<Utc>,
    out: &mut Vec<Finding>,
) {
    let names: BTreeSet<&str> = blobs.iter().map(|b| b.name.as_str()).collect();
    for c in copies {
        let name = c.blob.name.as_str();
        let f = |kind, detail: String| finding(kind, Some(name), detail);
        match (c.blob.metadata_sha256(), local_sha(local, c)) {
            (Err(why), _) => out.push(f(FindingKind::NoHash, why)),
            (Ok(remote), Some(local)) if !remote.eq_ignore_ascii_case(local) => out.push(f(
                FindingKind::HashMismatch,
                format!(
                    "metadata sha256 {} differs from the local manifest's {}",
                    short(&remote),
                    short(local)
                ),
            )),
            _ => {}
        }
        let manifest = manifest_of(name);
        if !names.contains(manifest.as_str()) {
            out.push(f(
                FindingKind::MissingManifest,
                "its manifest blob is missing".into(),
            ));
        }
        let born = created(c);
        if past_retention(az, c, now, RETENTION_SLACK_DAYS) && !c.blob.protection.protects(now) {
            out.push(f(
                FindingKind::PastRetention,
                format!(
                    "uploaded {} days ago, past the {} tier's {} days: is the lifecycle policy \
                     applied? (`valerix-backup prune --offsite` deletes it)",
                    (now - born).num_days(),
                    c.tier,
                    c.tier.retention_days(az)
                ),
            ));
        }
        let want = c.tier.access_tier(az).as_str();
        match &c.blob.access_tier {
            Some(t) if t.eq_ignore_ascii_case(want) => {}
            t => out.push(f(
                FindingKind::WrongTier,
                format!(
                    "access tier {} where the {} tier wants {want}",
                    t.as_deref().unwrap_or("(none)"),
                    c.tier
                ),
            )),
        }
    }
}

fn local_sha<'a>(local: &'a [LocalBackup], c: &OffsiteCopy) -> Option<&'a str> {
    local
        .iter()
        .find(|b| b.stamp == c.stamp && c.blob.name.ends_with(&b.file_name()))
        .and_then(|b| b.manifest.as_ref())
        .map(|m| m.sha256.as_str())
}

/// Copies more than `size_anomaly_factor` off the median size of the
/// database's copies of the last 30 days (with at least 3 to compare).
fn size_anomalies(az: &Azure, copies: &[OffsiteCopy], now: DateTime<Utc>, out: &mut Vec<Finding>) {
    let recent: Vec<&OffsiteCopy> = copies
        .iter()
        .filter(|c| now - c.stamp.to_utc() <= Duration::days(DAILY_WINDOW_DAYS))
        .collect();
    let sizes: Vec<u64> = recent.iter().map(|c| c.blob.size).collect();
    let Some(median) = anomaly::median(&sizes) else {
        return;
    };
    let factor = az.size_anomaly_factor;
    for c in recent {
        if anomaly::off_median(c.blob.size, median, factor) {
            out.push(finding(
                FindingKind::SizeAnomaly,
                Some(&c.blob.name),
                format!(
                    "{} bytes, {:.2} x the median {} of recent copies (limit {factor} x)",
                    c.blob.size,
                    c.blob.size as f64 / median.max(1) as f64,
                    median
                ),
            ));
        }
    }
}

/// Names under `<prefix>daily/` or `<prefix>weekly/` that are not ours.
fn unknown_blobs(az: &Azure, blobs: &[Object]) -> Vec<Finding> {
    blobs
        .iter()
        .filter(|b| {
            let in_tier = Tier::ALL
                .iter()
                .any(|t| b.name.starts_with(&format!("{}{}/", az.prefix, t)));
            let ours = BlobPath::parse(az, &b.name)
                .and_then(|p| parse_file_name(&p.file, &p.dbname))
                .is_some();
            in_tier && !ours
        })
        .map(|b| Finding {
            kind: FindingKind::UnknownBlob,
            database: String::new(),
            blob: Some(b.name.clone()),
            detail: "not a valerix-backup file name".into(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn deep(
    ctx: &Context,
    store: &dyn Store,
    dbs: &[&Database],
    az: &Azure,
    blobs: &[Object],
    recheck: bool,
    state: &mut DeepState,
    report: &mut AuditReport,
    obs: &dyn Observer,
) -> Result<()> {
    for db in dbs {
        for c in copies_of(az, blobs, db) {
            ctx.check_cancel()?;
            // A missing or malformed hash is a finding already.
            let Ok(want) = c.blob.sha256() else {
                continue;
            };
            if state.proven(c.blob, &want) && !recheck {
                report.deep_skipped += 1;
                continue;
            }
            let got = rehash(ctx, store, &c.blob.name, obs)?;
            report.deep_checked += 1;
            let found = |kind, detail: String| Finding {
                kind,
                database: db.dbname.clone(),
                blob: Some(c.blob.name.clone()),
                detail,
            };
            if got != want {
                warn!(
                    "{}: content SHA-256 {} != metadata {}",
                    c.blob.name,
                    short(&got),
                    short(&want)
                );
                let detail = format!(
                    "content SHA-256 {} differs from its metadata's {}: the blob changed \
                     after upload",
                    short(&got),
                    short(&want)
                );
                state.fail(c.blob, detail.clone());
                report.findings.push(found(FindingKind::Corrupt, detail));
                continue;
            }
            let mname = manifest_of(&c.blob.name);
            if blobs.iter().any(|b| b.name == mname)
                && let Err(e) = read_manifest(store, &mname, &want, db, c.stamp, &ctx.cancel)
            {
                warn!("{e}");
                state.fail(c.blob, e.to_string());
                report
                    .findings
                    .push(found(FindingKind::BadManifest, e.to_string()));
                continue;
            }
            state.pass(c.blob, got);
        }
    }
    // Saved where `backup` keeps its files, forgetting blobs now gone.
    let names: BTreeSet<&str> = blobs.iter().map(|b| b.name.as_str()).collect();
    state.save(&ctx.cfg.backup_dir, &names)
}

/// Downloads a blob into a hasher, never to disk.
fn rehash(ctx: &Context, store: &dyn Store, name: &str, obs: &dyn Observer) -> Result<String> {
    let mut sink = HashingWriter::new(std::io::sink());
    let bar = obs.bytes(format!("{name}: re-hashing"));
    store.read(name, &mut sink, &ctx.cancel, &bar)?;
    Ok(sink.finish().1)
}

/// `prune --offsite`: deletes dump blobs (and their manifests) past their
/// tier's retention, for accounts without the lifecycle policy, by the
/// policy's own rule: only superseded copies (a newer sound copy of the same
/// database and tier exists). The newest sound copy of each database and
/// tier is never deleted, whatever its age, nor is a broken copy newer than
/// it (the audit names those). Without `dry_run` the tags are repaired too.
pub fn prune_offsite(
    ctx: &Context,
    dry_run: bool,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<String>> {
    let store = AzureStore::open(azure(ctx)?)?;
    match dry_run {
        true => prune_store(ctx, &DryRun(&store), as_of),
        false => prune_store(ctx, &store, as_of).and_then(|removed| {
            repair_after_prune(ctx, &store)?;
            Ok(removed)
        }),
    }
}

/// The deletions of `prune --offsite` in `store`; the names deleted.
pub fn prune_store(
    ctx: &Context,
    store: &dyn Store,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<String>> {
    let az = azure(ctx)?;
    let blobs = store.list(&az.prefix)?;
    let now = as_of.unwrap_or_else(Utc::now);
    let state = DeepState::load(&ctx.cfg.backup_dir);
    let mut removed = Vec::new();
    for db in ctx.cfg.select_sets(&[])? {
        let sets = sets_of(az, &blobs, db, &state);
        let mut gone: Vec<_> = sets.iter().flat_map(|set| expired(set, az, now)).collect();
        gone.sort_by_key(|j| (j.copy.stamp, j.copy.tier));
        for j in gone {
            let (name, tier) = (&j.copy.blob.name, j.copy.tier);
            ctx.check_cancel()?;
            // Protection is the service's, by its clock: not as of `as_of`.
            if let Some(why) = j.copy.blob.protection.refusal(name, Utc::now()) {
                info!("{name}: kept, {}", protected_reason(&why));
                continue;
            }
            info!(
                "{name}: superseded and past the {tier} tier's {} days{}; deleting",
                tier.retention_days(az),
                if j.sound { "" } else { " (not sound)" }
            );
            match delete_copy(store, name) {
                Ok(()) => removed.push(name.clone()),
                // Held or locked since the listing: the copy is safe, which
                // is what a hold is for; one line, and the run goes on.
                Err(e) if e.kind() == Kind::Immutable => warn!("{name}: kept: {e}"),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Deletes a dump blob, then its manifest (a manifest offsite always has
/// its dump).
fn delete_copy(store: &dyn Store, name: &str) -> Result<()> {
    store.delete(name)?;
    store.delete(&manifest_of(name))
}

/// The refusal's reason, without the "deleting NAME: HTTP 409 CODE" head.
fn protected_reason(e: &Error) -> String {
    let s = e.to_string();
    match s.find(" (") {
        Some(i) => s[i + 2..].trim_end_matches(')').to_string(),
        None => s,
    }
}

/// After deletions, the tags of what is left are made true again.
fn repair_after_prune(ctx: &Context, store: &dyn Store) -> Result<()> {
    let az = azure(ctx)?;
    let dbs = ctx.cfg.select_sets(&[])?;
    let state = DeepState::load(&ctx.cfg.backup_dir);
    let left = store.list(&az.prefix)?;
    for (db, line) in repair_tags(store, az, &left, &dbs, &state).failures() {
        warn!("{db}: {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
