//! `restore --from-azure`: bring an offsite copy back into the backup
//! directory, proven, so the ordinary restore can use it (the runbook's
//! scenario 2: the machine and its local backups are gone).
//!
//! The manifest blob is read first (at most
//! [`MAX_MANIFEST_BYTES`](crate::offsite::MAX_MANIFEST_BYTES), checked as
//! untrusted input: any malformed hash or content is a one-line error naming
//! the blob); the dump is streamed to a hidden partial
//! file while it is hashed, and kept only when its SHA-256 equals both the
//! manifest's and the blob metadata's. When a backup has copies in both
//! tiers, the first that verifies is used and named; when none does, nothing
//! is written and the restore stops before touching any database.

use tracing::{info, warn};

use crate::catalog::copies::{OffsiteCopy, copies_of, read_manifest, stamps};
use crate::catalog::fsutil::{AtomicFile, create_private_dir};
use crate::catalog::sets::newest_common;
use crate::catalog::{Catalog, Stamp, dump_name, file_part, manifest_name};
use crate::config::Database;
use crate::error::{Error, Result};
use crate::offsite::{Tier, blob_name, short};
use crate::ops::upload::azure;
use crate::ops::{Context, Observer};
use crate::pipeline::HashingWriter;
use crate::storage::azure::AzureStore;
use crate::storage::{Object, Store};

/// What a fetch brought: the timestamp, and each blob downloaded (none for
/// a database whose local copy was already the offsite one).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub stamp: Stamp,
    pub copies: Vec<FetchedCopy>,
    /// When the fetch began, and how long it took (part of the RTO).
    pub started: chrono::DateTime<chrono::Utc>,
    pub secs: f64,
}

/// One blob downloaded, for the post-mortem record.
#[derive(Debug, Clone)]
pub struct FetchedCopy {
    pub dbname: String,
    pub blob: String,
    pub tier: Tier,
}

/// Fetches the backups of `targets` at `stamp` (newest common one when
/// `None`).
pub fn fetch(
    ctx: &Context,
    targets: &[String],
    stamp: Option<Stamp>,
    obs: &dyn Observer,
) -> Result<Fetched> {
    let store = AzureStore::open(azure(ctx)?)?;
    fetch_from(ctx, &store, targets, stamp, obs)
}

/// [`fetch`] from `store`.
pub fn fetch_from(
    ctx: &Context,
    store: &dyn Store,
    targets: &[String],
    stamp: Option<Stamp>,
    obs: &dyn Observer,
) -> Result<Fetched> {
    fetch_sets(ctx, store, ctx.cfg.select(targets)?, stamp, obs)
}

/// [`fetch_from`] of the backup sets `dbs` (databases, or the
/// configuration archive's set for `restore-config --from-azure`).
pub fn fetch_sets(
    ctx: &Context,
    store: &dyn Store,
    dbs: Vec<&Database>,
    stamp: Option<Stamp>,
    obs: &dyn Observer,
) -> Result<Fetched> {
    let (started, t) = (chrono::Utc::now(), std::time::Instant::now());
    let az = azure(ctx)?;
    let blobs = store.list(&az.prefix)?;
    let per_db: Vec<Vec<OffsiteCopy>> = dbs.iter().map(|db| copies_of(az, &blobs, db)).collect();
    let stamp = match stamp {
        Some(s) => s,
        None => newest_common(&per_db.iter().map(|c| stamps(c)).collect::<Vec<_>>()).ok_or_else(|| Error::NoBackup {
            what: format!(
                "offsite in {} common to {} (name a TIMESTAMP, or restore one database at a time)",
                store.describe(),
                dbs.iter()
                    .map(|d| d.dbname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?,
    };
    create_private_dir(&ctx.cfg.backup_dir)?;
    let catalog = Catalog::open(&ctx.cfg)?;
    let _lock = crate::ops::lock_catalog(ctx, &catalog)?;
    let mut fetched = Vec::new();
    for (db, copies) in dbs.iter().zip(&per_db) {
        let here: Vec<OffsiteCopy> = copies
            .iter()
            .filter(|c| c.stamp == stamp)
            .copied()
            .collect();
        if here.is_empty() {
            return Err(Error::NoBackup {
                what: format!(
                    "of {} at {stamp} offsite in {}",
                    db.dbname,
                    store.describe()
                ),
            });
        }
        if let Some(copy) = fetch_one(ctx, store, &catalog, db, stamp, &here, obs)? {
            fetched.push(copy);
        }
    }
    Ok(Fetched {
        stamp,
        copies: fetched,
        started,
        secs: t.elapsed().as_secs_f64(),
    })
}

fn fetch_one(
    ctx: &Context,
    store: &dyn Store,
    catalog: &Catalog,
    db: &Database,
    stamp: Stamp,
    copies: &[OffsiteCopy],
    obs: &dyn Observer,
) -> Result<Option<FetchedCopy>> {
    let az = azure(ctx)?;
    // The copies' own file name: `.dump.gz`, or `.dump.gz.age` when the
    // backup was encrypted.
    let file = copies.first().map_or_else(
        || dump_name(&db.dbname, &stamp),
        |c| file_part(&c.blob.name).into(),
    );
    if catalog.holds_dump(&db.dbname, &stamp) {
        return use_local(catalog, db, stamp, copies).map(|()| None);
    }
    let mut failures = Vec::new();
    for &OffsiteCopy { tier, blob, .. } in copies {
        match fetch_copy(ctx, store, catalog, az, db, stamp, tier, blob, obs) {
            Ok(()) => {
                info!(
                    "{file}: restored from the {tier} offsite copy {}",
                    blob.name
                );
                return Ok(Some(FetchedCopy {
                    dbname: db.dbname.clone(),
                    blob: blob.name.clone(),
                    tier,
                }));
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                warn!("{}: {e}", blob.name);
                failures.push(format!("{tier}: {e}"));
            }
        }
    }
    Err(Error::Corrupt {
        file,
        reason: format!(
            "no offsite copy verifies ({}); nothing was restored",
            failures.join("; ")
        ),
    })
}

/// A local file of that name exists: use it when it is the same backup,
/// never overwrite it.
fn use_local(catalog: &Catalog, db: &Database, stamp: Stamp, copies: &[OffsiteCopy]) -> Result<()> {
    let b = catalog.find(db, Some(&stamp))?;
    let same = b.is_sound()
        && copies.iter().any(|c| {
            let local = b.manifest.as_ref().map(|m| m.sha256.to_ascii_lowercase());
            c.blob.sha256().ok() == local
        });
    if same {
        info!(
            "{}: the local copy is the offsite one (same SHA-256); using it",
            b.file_name()
        );
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "{} exists locally but is not the offsite copy ({}); move it aside to restore \
             from Azure",
            b.path.display(),
            b.state()
        )))
    }
}

#[allow(clippy::too_many_arguments)]
fn fetch_copy(
    ctx: &Context,
    store: &dyn Store,
    catalog: &Catalog,
    az: &crate::config::Azure,
    db: &Database,
    stamp: Stamp,
    tier: Tier,
    blob: &Object,
    obs: &dyn Observer,
) -> Result<()> {
    let want = blob.sha256()?;
    let mname = manifest_name(&db.dbname, &stamp);
    let mblob = blob_name(az, tier, &db.dbname, &mname);
    let (_, text) = read_manifest(store, &mblob, &want, db, stamp, &ctx.cancel)?;
    let target = catalog.dir().join(file_part(&blob.name));
    let mut out = AtomicFile::create(&target)?;
    let mut hashing = HashingWriter::new(out.file());
    let bar = obs.bytes(format!("{}: downloading", db.dbname));
    info!(
        "{}: downloading {} ({} bytes)",
        db.dbname, blob.name, blob.size
    );
    store.read(&blob.name, &mut hashing, &ctx.cancel, &bar)?;
    let (_, got, _) = hashing.finish();
    if got != want {
        return Err(Error::Corrupt {
            file: blob.name.clone(),
            reason: format!(
                "downloaded content has SHA-256 {} where the manifest says {}: the blob \
                 changed after upload",
                short(&got),
                short(&want)
            ),
        });
    }
    // The manifest first: a dump without its manifest would look foreign.
    // One left by a run cut off here has no dump beside it and is replaced.
    crate::catalog::fsutil::replace_atomic(&catalog.dir().join(&mname), &text)?;
    out.commit().map(drop)
}
