//! Offsite copies as backup sets: the repository over any [`Store`] holding
//! the offsite layout (`<prefix><tier>/<dbname>/<file>`, see
//! [`crate::offsite`]). Each tier of a database is one set, judged by the
//! rules of [`sets`] as the local backups are: `audit`, `list`, `upload`,
//! `prune --offsite` and `restore --from-azure` all read copies through
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::catalog::fsutil::{AtomicFile, create_private_dir};
use crate::catalog::sets::{self, Member};
use crate::catalog::{FileKind, Manifest, Stamp, manifest_of, naming, parse_file_name};
use crate::config::{Azure, Database};
use crate::error::{Error, Result};
use crate::offsite::{
    BlobPath, SUPERSEDED_TAG, SUPERSEDED_VALUE, Tier, parse_sha256, preview, short,
};
use crate::storage::{Object, Store};

/// Where deep audits keep what they proved, in the backup directory.
pub const DEEP_STATE: &str = ".offsite-deep-checks.json";

/// A dump blob of ours, parsed: what `audit`, `list` and
/// `restore --from-azure` know of an offsite copy.
#[derive(Debug, Clone, Copy)]
pub struct OffsiteCopy<'a> {
    pub blob: &'a Object,
    pub tier: Tier,
    pub stamp: Stamp,
}

/// The dump copies of `db` among `blobs`, oldest first (daily before weekly
/// for one timestamp).
pub fn copies_of<'a>(az: &Azure, blobs: &'a [Object], db: &Database) -> Vec<OffsiteCopy<'a>> {
    let mut out: Vec<OffsiteCopy> = blobs
        .iter()
        .filter_map(|blob| {
            let p = BlobPath::parse(az, &blob.name)?;
            if p.dbname != db.dbname {
                return None;
            }
            match parse_file_name(&p.file, &db.dbname)? {
                (stamp, FileKind::Dump) if naming::is_kind_of(&p.file, db) => Some(OffsiteCopy {
                    blob,
                    tier: p.tier,
                    stamp,
                }),
                _ => None,
            }
        })
        .collect();
    out.sort_by_key(|c| (c.stamp, c.tier));
    out
}

/// When a copy was uploaded: its age as the lifecycle policy counts it
/// (`daysAfterCreationGreaterThan`), so the audit and `prune --offsite`
/// never judge a copy older than Azure does, and never delete a Cool or
/// Cold blob before its early-deletion minimum when retention respects it.
pub fn created(c: &OffsiteCopy) -> DateTime<Utc> {
    c.blob.created.unwrap_or_else(|| c.stamp.to_utc())
}

/// Whether `c` is older than its tier keeps copies, as of `now`, allowing
/// `slack_days` more.
pub fn past_retention(az: &Azure, c: &OffsiteCopy, now: DateTime<Utc>, slack_days: i64) -> bool {
    now - created(c) > Duration::days(c.tier.retention_days(az) as i64 + slack_days)
}

/// What is known of a copy without reading it: whether it is sound (a
/// well-formed SHA-256 in its metadata, its manifest blob beside it, no
/// failed deep audit) and whether a newer sound copy of its tier exists (it
/// is superseded).
pub struct Judged<'a> {
    pub copy: OffsiteCopy<'a>,
    pub sound: bool,
    pub superseded: bool,
}

impl Member for Judged<'_> {
    fn stamp(&self) -> Stamp {
        self.copy.stamp
    }

    fn is_sound(&self) -> bool {
        self.sound
    }
}

/// One database's copies in one tier: a backup set.
pub struct OffsiteSet<'a> {
    pub tier: Tier,
    pub copies: Vec<Judged<'a>>,
}

/// The sets of `db` (one per tier), each copy judged.
pub fn sets_of<'a>(
    az: &Azure,
    blobs: &'a [Object],
    db: &Database,
    state: &DeepState,
) -> Vec<OffsiteSet<'a>> {
    let names: BTreeSet<&str> = blobs.iter().map(|b| b.name.as_str()).collect();
    let all = copies_of(az, blobs, db);
    Tier::ALL
        .iter()
        .map(|&tier| {
            let mut copies: Vec<Judged> = all
                .iter()
                .filter(|c| c.tier == tier)
                .map(|&copy| Judged {
                    sound: copy.blob.sha256().is_ok()
                        && names.contains(manifest_of(&copy.blob.name).as_str())
                        && !state.failed(copy.blob),
                    superseded: false,
                    copy,
                })
                .collect();
            let superseded: Vec<bool> = copies
                .iter()
                .map(|j| sets::is_superseded(&copies, j))
                .collect();
            for (j, s) in copies.iter_mut().zip(superseded) {
                j.superseded = s;
            }
            OffsiteSet { tier, copies }
        })
        .collect()
}

/// When the sound weekly copies of `db` among `blobs` were taken: what the
/// weekly rule ([`Tier::for_backup`]) and the audit's weekly gaps count. A
/// broken copy (no hash, no manifest, a failed deep audit) is no week's
/// weekly copy.
pub fn sound_weekly(
    az: &Azure,
    blobs: &[Object],
    db: &Database,
    state: &DeepState,
) -> Vec<DateTime<Utc>> {
    let sets = sets_of(az, blobs, db, state);
    let weekly = sets.iter().filter(|s| s.tier == Tier::Weekly);
    let sound = weekly.flat_map(|s| s.copies.iter()).filter(|j| j.sound);
    sound.map(|j| j.copy.stamp.to_utc()).collect()
}

/// The copies retention removes as of `now`: superseded and past their
/// tier's days, by the lifecycle policy's own rule; never the newest sound
/// copy of a set, nor a broken copy newer than it.
pub fn expired<'a>(set: &'a OffsiteSet, az: &Azure, now: DateTime<Utc>) -> Vec<&'a Judged<'a>> {
    sets::expired(&set.copies, |j| past_retention(az, &j.copy, now, 0))
}

/// The timestamps each database's copies have, for
/// [`sets::newest_common`].
pub fn stamps(copies: &[OffsiteCopy]) -> Vec<Stamp> {
    copies.iter().map(|c| c.stamp).collect()
}

/// Reads manifest blob `name` (at most
/// [`MAX_MANIFEST_BYTES`](crate::offsite::MAX_MANIFEST_BYTES)) and checks it
/// against what the dump blob says: its SHA-256 (`want`, from the dump's
/// metadata), database and timestamp. The manifest and its bytes; any
/// problem is one line naming the manifest blob.
pub fn read_manifest(
    store: &dyn Store,
    name: &str,
    want: &str,
    db: &Database,
    stamp: Stamp,
    cancel: &AtomicBool,
) -> Result<(Manifest, Vec<u8>)> {
    let text = store.read_small(name, cancel)?;
    let bad = |reason: String| Error::Corrupt {
        file: name.to_string(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not a valerix-backup manifest: {e}")))?;
    let sha = parse_sha256(name, "its sha256", &manifest.sha256)?;
    if sha != want {
        return Err(bad(format!(
            "says SHA-256 {} but the dump blob's metadata {}",
            short(&sha),
            short(want)
        )));
    }
    if manifest.dbname != db.dbname || manifest.timestamp != stamp {
        return Err(bad(format!(
            "is the manifest of {} at {}, not of {} at {stamp}",
            preview(&manifest.dbname),
            manifest.timestamp,
            db.dbname
        )));
    }
    Ok((manifest, text))
}

/// What earlier deep audits proved, and what they found broken, by blob
/// name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeepState {
    blobs: BTreeMap<String, DeepCheck>,
    /// Blobs whose content or manifest failed; a failure holds for the blob
    /// with that ETag (a new upload under the name is judged afresh).
    #[serde(default)]
    failed: BTreeMap<String, DeepFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeepCheck {
    etag: Option<String>,
    sha256: String,
    checked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeepFailure {
    etag: Option<String>,
    reason: String,
    checked_at: DateTime<Utc>,
}

impl DeepState {
    /// The state in the backup directory; empty when there is none (a
    /// machine that never ran a deep audit) or it is unreadable.
    pub fn load(backup_dir: &Path) -> DeepState {
        std::fs::read(backup_dir.join(DEEP_STATE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the state, forgetting blobs not in `names` (gone). The
    /// directory may not exist on a machine that only audits.
    pub fn save(&mut self, backup_dir: &Path, names: &BTreeSet<&str>) -> Result<()> {
        self.blobs.retain(|k, _| names.contains(k.as_str()));
        self.failed.retain(|k, _| names.contains(k.as_str()));
        create_private_dir(backup_dir)?;
        let path = backup_dir.join(DEEP_STATE);
        let mut f = AtomicFile::create(&path)?;
        serde_json::to_writer_pretty(f.file(), &self)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into()))?;
        f.commit_replacing().map(drop)
    }

    /// Whether an earlier deep audit proved this very blob (name, ETag and
    /// SHA-256).
    pub fn proven(&self, blob: &Object, sha256: &str) -> bool {
        self.blobs
            .get(&blob.name)
            .is_some_and(|p| p.etag == blob.etag && p.sha256 == sha256)
    }

    /// Whether a deep audit found this very blob (name and ETag) broken.
    pub fn failed(&self, blob: &Object) -> bool {
        self.failed
            .get(&blob.name)
            .is_some_and(|f| f.etag == blob.etag)
    }

    pub fn pass(&mut self, blob: &Object, sha256: String) {
        self.failed.remove(&blob.name);
        self.blobs.insert(
            blob.name.clone(),
            DeepCheck {
                etag: blob.etag.clone(),
                sha256,
                checked_at: Utc::now(),
            },
        );
    }

    pub fn fail(&mut self, blob: &Object, reason: String) {
        self.blobs.remove(&blob.name);
        self.failed.insert(
            blob.name.clone(),
            DeepFailure {
                etag: blob.etag.clone(),
                reason,
                checked_at: Utc::now(),
            },
        );
    }
}

/// What [`repair_tags`] did.
#[derive(Debug, Default)]
pub struct TagRepair {
    pub tagged: usize,
    pub untagged: usize,
    /// Per database: how many blobs could not be tagged, and the first error.
    errors: BTreeMap<String, (usize, String)>,
}

impl TagRepair {
    /// One line per database whose tags could not all be repaired.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.errors
            .iter()
            .map(|(db, (n, first))| {
                (
                    db.clone(),
                    format!(
                        "{n} blob(s) not tagged, so the lifecycle policy cannot delete them when \
                         superseded (tag writes need the blob agent role of infra/, or Storage Blob Data Owner: \
                         .../blobs/tags/write); first error: {first}"
                    ),
                )
            })
            .collect()
    }
}

/// Makes the `superseded` tags true to the inventory: set on every dump and
/// manifest blob of a superseded copy, absent from all others (the newest
/// sound copy, and broken copies newer than it). Each blob keeps its other
/// tags. A failure is collected, not raised: the copies themselves are fine.
pub fn repair_tags(
    store: &dyn Store,
    az: &Azure,
    blobs: &[Object],
    dbs: &[&Database],
    state: &DeepState,
) -> TagRepair {
    let by_name: BTreeMap<&str, &Object> = blobs.iter().map(|b| (b.name.as_str(), b)).collect();
    let mut out = TagRepair::default();
    for db in dbs {
        for set in sets_of(az, blobs, db, state) {
            for j in &set.copies {
                let manifest = manifest_of(&j.copy.blob.name);
                let pair = [Some(j.copy.blob), by_name.get(manifest.as_str()).copied()];
                for blob in pair.into_iter().flatten() {
                    retag(store, blob, j.superseded, &db.dbname, &mut out);
                }
            }
        }
    }
    if out.tagged + out.untagged > 0 {
        info!(
            "index tag {SUPERSEDED_TAG}: set on {} blob(s), removed from {}",
            out.tagged, out.untagged
        );
    }
    out
}

/// Sets or removes the `superseded` tag of one blob when it is wrong.
fn retag(store: &dyn Store, blob: &Object, superseded: bool, dbname: &str, out: &mut TagRepair) {
    if blob.is_superseded() == superseded {
        return;
    }
    let mut tags = blob.tags.clone();
    if superseded {
        tags.insert(SUPERSEDED_TAG.into(), SUPERSEDED_VALUE.into());
    } else {
        tags.remove(SUPERSEDED_TAG);
    }
    match store.set_tags(&blob.name, &tags) {
        Ok(()) if superseded => out.tagged += 1,
        Ok(()) => out.untagged += 1,
        Err(e) => {
            let entry = out
                .errors
                .entry(dbname.to_string())
                .or_insert((0, e.to_string()));
            entry.0 += 1;
        }
    }
}
