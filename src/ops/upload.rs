//! `upload`: local backups to Azure Blob Storage, daily or weekly tier.
//!
//! Idempotent: a blob that already holds the same SHA-256 is skipped, one
//! with another SHA-256 under the same name is an error (never a silent
//! overwrite). The file is hashed while it is sent and the block list is
//! committed only when the hash equals the manifest's, so a file changed
//! after its backup never becomes an offsite copy. An interrupted upload
//! leaves only uncommitted blocks; the next run reuses them.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::copies::{DeepState, repair_tags, sound_weekly};
use crate::catalog::{Catalog, LocalBackup, Manifest, Stamp, manifest_name};
use crate::config::{Azure, ImmutabilityMode};
use crate::error::{Error, IoContext, Result};
use crate::offsite::{Tier, blob_name};
use crate::ops::{Context, Observer, outcome};
use crate::storage::azure::AzureStore;
use crate::storage::{Object, Policy, Store, WriteSpec};

/// Which local backups to upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The newest sound backup of each database.
    Latest,
    At(Stamp),
    /// Every sound local backup.
    All,
}

impl Selection {
    pub fn parse(s: Option<&str>) -> Result<Selection> {
        match s {
            None | Some("latest") => Ok(Selection::Latest),
            Some("all") => Ok(Selection::All),
            Some(s) => Stamp::parse(s).map(Selection::At),
        }
    }
}

/// `auto` follows the weekly rule ([`Tier::for_backup`]): a backup is the
/// weekly copy of its week (from `[azure] weekly_day` 00:00 UTC) when the
/// weekly tier holds none of its database from that week yet, else it goes
/// to the daily tier. `daily` and `weekly` put every backup in that tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TierChoice {
    #[default]
    Auto,
    Daily,
    Weekly,
}

#[derive(Debug, Serialize)]
pub struct UploadReport {
    pub container: String,
    pub results: Vec<BlobUpload>,
    /// Post-mortem record files copied to `<prefix>reports/` by this run.
    pub reports: Vec<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct BlobUpload {
    pub database: String,
    pub file: String,
    pub blob: String,
    pub tier: String,
    pub status: UploadStatus,
    pub bytes: u64,
    pub resumed_blocks: usize,
    pub secs: f64,
    pub error: Option<String>,
}

/// What became of one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    Uploaded,
    /// Already offsite with the same SHA-256.
    Present,
    /// Until it is uploaded or found present.
    #[default]
    Failed,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Uploaded => "uploaded",
            UploadStatus::Present => "present",
            UploadStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for UploadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl UploadReport {
    pub fn outcome(&self) -> Result<()> {
        let results = self.results.iter();
        outcome(
            "upload",
            results.map(|r| (r.file.as_str(), r.error.as_deref())),
        )
    }
}

pub fn azure(ctx: &Context) -> Result<&Azure> {
    azure_of(&ctx.cfg)
}

/// The `[azure]` section, or an error saying the command needs it.
pub fn azure_of(cfg: &crate::Config) -> Result<&Azure> {
    cfg.azure.as_ref().ok_or_else(|| Error::Config {
        path: cfg.path.clone(),
        msg: "no [azure] section: offsite commands need a container (see \
              valerix-backup.example.toml)"
            .into(),
    })
}

pub fn upload(
    ctx: &Context,
    selection: Selection,
    tier: TierChoice,
    targets: &[String],
    obs: &dyn Observer,
) -> Result<UploadReport> {
    let az = azure(ctx)?;
    let dbs = ctx.cfg.select_sets(targets)?;
    let catalog = Catalog::open_existing(&ctx.cfg);
    // Retention must not delete a file while it is being sent.
    let _lock = crate::ops::lock_catalog(ctx, &catalog)?;
    let chosen = choose(&catalog.list(&dbs)?, selection)?;
    preflight_immutability(az)?;
    let store = AzureStore::open(az)?;
    store.prepare()?;
    info!(
        "uploading {} backup(s) to {}",
        chosen.len(),
        store.describe()
    );
    let mut results = Vec::new();
    let mut rule = TierRule::new(ctx, &store, az, tier);
    for b in chosen {
        ctx.check_cancel()?;
        let t = match rule.tier(&dbs, &b) {
            Ok(t) => t,
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                let e = format!("cannot choose its tier from the weekly copies: {e}");
                warn!("{}: {e}", b.file_name());
                let r = BlobUpload {
                    database: b.dbname.clone(),
                    file: b.file_name(),
                    tier: "auto".into(),
                    error: Some(e),
                    ..Default::default()
                };
                obs.uploaded(&r);
                results.push(r);
                continue;
            }
        };
        let mut r = BlobUpload {
            database: b.dbname.clone(),
            file: b.file_name(),
            blob: blob_name(az, t, &b.dbname, &b.file_name()),
            tier: t.to_string(),
            ..Default::default()
        };
        let start = Instant::now();
        match upload_one(ctx, &store, az, &b, t, &mut r, obs) {
            Ok(()) => {}
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            // A container that refuses the immutability policy refuses it
            // for every copy: say so once, upload nothing more.
            Err(e @ Error::Setup(_)) => return Err(e),
            Err(e) => {
                warn!("{}: {e}", r.file);
                r.status = UploadStatus::Failed;
                r.error = Some(e.to_string());
            }
        }
        r.secs = start.elapsed().as_secs_f64();
        if r.error.is_none() {
            rule.uploaded(&b, t);
        }
        obs.uploaded(&r);
        results.push(r);
    }
    tag_superseded(ctx, &store, az, &dbs, &results);
    let reports = match crate::ops::report::upload_pending(&ctx.cfg, &store, az) {
        Ok(sent) => sent,
        Err(e) => {
            warn!("post-mortem records: {e}");
            results.push(BlobUpload {
                file: crate::ops::report::DIR.into(),
                blob: crate::ops::report::blob_name(az, ""),
                error: Some(format!("copying the post-mortem records: {e}")),
                ..Default::default()
            });
            Vec::new()
        }
    };
    Ok(UploadReport {
        container: store.describe(),
        results,
        reports,
    })
}

/// The tier each backup goes to. For `auto`, the weekly rule over the sound
/// weekly copies of the backup's database: listed once per database (one
/// list of `<prefix>weekly/<dbname>/`), then kept up to date with what this
/// run puts there, so `upload all` gives each week one weekly copy.
struct TierRule<'a> {
    store: &'a dyn Store,
    az: &'a Azure,
    choice: TierChoice,
    state: DeepState,
    /// By dbname: when its sound weekly copies were taken.
    weekly: BTreeMap<String, Vec<DateTime<Utc>>>,
}

impl<'a> TierRule<'a> {
    fn new(ctx: &Context, store: &'a dyn Store, az: &'a Azure, choice: TierChoice) -> Self {
        TierRule {
            store,
            az,
            choice,
            state: DeepState::load(&ctx.cfg.backup_dir),
            weekly: BTreeMap::new(),
        }
    }

    fn tier(&mut self, dbs: &[&crate::config::Database], b: &LocalBackup) -> Result<Tier> {
        match self.choice {
            TierChoice::Daily => return Ok(Tier::Daily),
            TierChoice::Weekly => return Ok(Tier::Weekly),
            TierChoice::Auto => {}
        }
        if !self.weekly.contains_key(&b.dbname) {
            let db = dbs.iter().find(|d| d.dbname == b.dbname);
            let db = db.expect("backups are of the selected databases");
            let folder = blob_name(self.az, Tier::Weekly, &db.dbname, "");
            let blobs = self.store.list(&folder)?;
            let held = sound_weekly(self.az, &blobs, db, &self.state);
            self.weekly.insert(b.dbname.clone(), held);
        }
        let held = &self.weekly[&b.dbname];
        Ok(Tier::for_backup(b.stamp.to_utc(), held, self.az))
    }

    /// A copy this run put in (or found in) the weekly tier is the week's.
    fn uploaded(&mut self, b: &LocalBackup, tier: Tier) {
        if tier == Tier::Weekly
            && let Some(held) = self.weekly.get_mut(&b.dbname)
        {
            held.push(b.stamp.to_utc());
        }
    }
}

/// With `azure.immutable` and `[azure.resource_manager]`: refuses before
/// any upload when Resource Manager says the container cannot keep
/// immutable copies (no version-level immutability, no blob versioning).
/// An uploader without Resource Manager rights learns it from the service
/// instead: its first commit under a policy is refused, with one line, and
/// nothing more is uploaded (see the Azure driver's commit).
fn preflight_immutability(az: &Azure) -> Result<()> {
    if az.immutable.is_empty() || az.resource_manager.is_none() {
        return Ok(());
    }
    let check = crate::arm::Arm::connect(az)
        .and_then(|arm| crate::ops::geo::azure_check::storage_check(&arm, az));
    match check {
        Ok(c) if c.unfit() => Err(Error::Setup(format!(
            "azure.immutable: container {} cannot keep immutable copies, nothing uploaded: {}",
            c.container,
            c.problems.join("; ")
        ))),
        // Unreadable (no Resource Manager rights): the service will say at
        // the first commit.
        Ok(c) if !c.problems.is_empty() => {
            warn!("immutability preflight: {}", c.problems.join("; "));
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            warn!("immutability preflight skipped: {e}");
            Ok(())
        }
    }
}

/// The copies a new upload supersedes get the `superseded` tag, so the
/// lifecycle policy may delete them in time (and never the new one). A
/// failure here is a warning: every copy is safe, only the policy cannot
/// delete the old ones yet; the next upload, audit or prune tries again.
fn tag_superseded(
    ctx: &Context,
    store: &dyn Store,
    az: &Azure,
    dbs: &[&crate::config::Database],
    results: &[BlobUpload],
) {
    let touched: Vec<&crate::config::Database> = dbs
        .iter()
        .copied()
        .filter(|d| {
            results
                .iter()
                .any(|r| r.database == d.dbname && r.error.is_none())
        })
        .collect();
    if touched.is_empty() {
        return;
    }
    let blobs = match store.list(&az.prefix) {
        Ok(b) => b,
        Err(e) => {
            warn!("superseded copies not tagged: {e}");
            return;
        }
    };
    let state = DeepState::load(&ctx.cfg.backup_dir);
    let tags = repair_tags(store, az, &blobs, &touched, &state);
    for (db, line) in tags.failures() {
        warn!("{db}: {line}");
    }
}

/// The backups a selection names; only sound ones (with a manifest that
/// matches the file's size) may go offsite.
fn choose(all: &[LocalBackup], selection: Selection) -> Result<Vec<LocalBackup>> {
    let sound = all.iter().filter(|b| b.is_sound());
    let chosen: Vec<LocalBackup> = match selection {
        Selection::All => sound.cloned().collect(),
        Selection::At(s) => sound.filter(|b| b.stamp == s).cloned().collect(),
        Selection::Latest => {
            let mut newest: BTreeMap<&str, &LocalBackup> = BTreeMap::new();
            for b in sound {
                newest.insert(&b.database, b);
            }
            newest.into_values().cloned().collect()
        }
    };
    if chosen.is_empty() {
        return Err(Error::NoBackup {
            what: match selection {
                Selection::At(s) => format!("at {s} to upload (see `valerix-backup list`)"),
                _ => "to upload (run `valerix-backup backup` first)".into(),
            },
        });
    }
    Ok(chosen)
}

fn upload_one(
    ctx: &Context,
    store: &dyn Store,
    az: &Azure,
    b: &LocalBackup,
    tier: Tier,
    r: &mut BlobUpload,
    obs: &dyn Observer,
) -> Result<()> {
    let m = b.manifest.as_ref().expect("chosen backups have a manifest");
    let spec = blob_spec(az, m, tier);
    match store.head(&r.blob)? {
        Some(existing) if existing.sha256().ok() == Some(m.sha256.to_ascii_lowercase()) => {
            info!("{}: already offsite with the same SHA-256", r.blob);
            protect_existing(store, az, tier, &existing)?;
            r.status = UploadStatus::Present;
        }
        Some(existing) => {
            let theirs = existing
                .metadata_sha256()
                .map_or_else(|why| format!("({why})"), |h| format!("SHA-256 {h}"));
            return Err(Error::Refused(format!(
                "{} already exists with {theirs} (ours is {}); refusing to overwrite it",
                r.blob, &m.sha256
            )));
        }
        None => {
            let bar = obs.bytes(format!("{}: uploading", b.dbname));
            let stats = store.write_file(&b.path, &r.blob, &spec, &ctx.cancel, &bar)?;
            if stats.resumed_blocks > 0 {
                info!(
                    "{}: resumed, {} of {} blocks were already staged",
                    r.blob, stats.resumed_blocks, stats.blocks
                );
            }
            info!("{}: uploaded {} bytes ({tier})", r.blob, stats.bytes);
            r.status = UploadStatus::Uploaded;
            r.bytes = stats.bytes;
            r.resumed_blocks = stats.resumed_blocks;
        }
    }
    upload_manifest(store, az, b, tier, &spec)
}

/// The manifest goes beside the dump (after it, so a manifest offsite
/// always has its dump); a rerun adds it when an earlier run stopped between
/// the two.
fn upload_manifest(
    store: &dyn Store,
    az: &Azure,
    b: &LocalBackup,
    tier: Tier,
    spec: &WriteSpec,
) -> Result<()> {
    let name = blob_name(az, tier, &b.dbname, &manifest_name(&b.dbname, &b.stamp));
    if let Some(existing) = store.head(&name)? {
        return protect_existing(store, az, tier, &existing);
    }
    let path = b.path.with_file_name(manifest_name(&b.dbname, &b.stamp));
    let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    let mut spec = spec.clone();
    let own = crate::pipeline::hash::sha256_hex(&bytes);
    spec.metadata.insert("kind".into(), "manifest".into());
    spec.metadata.insert("sha256".into(), own.clone());
    spec.expect_sha256 = Some(own);
    store.write_bytes(&name, &bytes, &spec)
}

/// A blob already offsite in an immutable tier whose policy is missing or
/// ends before its retention (uploaded before `immutable` was set, or its
/// unlocked policy shortened) gets the policy it should have: until its
/// upload plus the tier's immutability days, never shorter than it has. A
/// locked policy stays locked (it can only be extended). Nothing once that
/// date has passed: its retention is over.
fn protect_existing(store: &dyn Store, az: &Azure, tier: Tier, o: &Object) -> Result<()> {
    let t = tier.as_str();
    if !az.is_immutable(t) {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let until = o.created.unwrap_or(now) + chrono::Duration::days(az.immutability_days(t));
    let has = o.protection.policy;
    if until <= now || has.is_some_and(|p| p.until + chrono::Duration::minutes(1) >= until) {
        return Ok(());
    }
    let mode = match has.map(|p| p.mode) {
        Some(ImmutabilityMode::Locked) => ImmutabilityMode::Locked,
        _ => az.immutability_mode,
    };
    info!(
        "{}: immutability policy set until {} ({})",
        o.name,
        until.format("%Y-%m-%d %H:%M UTC"),
        has.map_or("it had none".to_string(), |p| format!(
            "it had one until {}",
            p.until.format("%Y-%m-%d %H:%M UTC")
        ))
    );
    store.set_policy(&o.name, &Policy { until, mode })
}

/// Metadata and index tags of a dump blob. Metadata names must be C#
/// identifiers; tag values are limited to `a-zA-Z0-9 +-.:=_/`.
pub fn blob_spec(az: &Azure, m: &Manifest, tier: Tier) -> WriteSpec {
    let metadata = BTreeMap::from([
        ("sha256".to_string(), m.sha256.clone()),
        ("database".to_string(), m.dbname.clone()),
        ("timestamp".to_string(), m.timestamp.to_string()),
        ("tier".to_string(), tier.to_string()),
        ("source_host".to_string(), host_name()),
        (
            "tool_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    let mut metadata = metadata;
    if let Some(enc) = &m.encryption {
        // Which keys open it, for `list` of a copy with no local manifest.
        metadata.insert("encrypted_to".into(), enc.recipients.join(","));
    }
    let tags = BTreeMap::from([
        ("tier".to_string(), tier.to_string()),
        ("database".to_string(), m.dbname.clone()),
        (
            "date".to_string(),
            m.timestamp.to_utc().format("%Y-%m-%d").to_string(),
        ),
    ]);
    WriteSpec {
        metadata,
        tags,
        tier: Some(tier.access_tier(az)),
        expect_sha256: Some(m.sha256.clone()),
        policy: policy_for(az, tier, chrono::Utc::now()),
    }
}

/// The immutability policy of a copy of `tier` uploaded at `now`: until its
/// retention ends plus the margin, in the configured mode; none for a tier
/// that is not immutable. The retention is counted from the upload, as the
/// lifecycle policy counts a blob's age from its creation.
pub fn policy_for(az: &Azure, tier: Tier, now: chrono::DateTime<chrono::Utc>) -> Option<Policy> {
    let t = tier.as_str();
    az.is_immutable(t).then(|| Policy {
        until: now + chrono::Duration::days(az.immutability_days(t)),
        mode: az.immutability_mode,
    })
}

pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
