//! `hold set|clear`: a legal hold on the offsite copies of one backup, for
//! an incident or an investigation. Both blobs of a copy (dump and
//! manifest) in every tier holding it get Azure's Set Blob Legal Hold: a
//! held version cannot be deleted or changed, whatever its policy, until
//! the hold is cleared. Clearing a hold does not lift a time-based policy.

use std::collections::BTreeSet;

use serde::Serialize;
use tracing::info;

use crate::catalog::copies::copies_of;
use crate::catalog::{Stamp, manifest_of};
use crate::error::{Error, Result};
use crate::offsite::Tier;
use crate::ops::Context;
use crate::ops::upload::azure;
use crate::storage::Store;
use crate::storage::azure::AzureStore;

#[derive(Debug, Serialize)]
pub struct HoldReport {
    pub container: String,
    /// Whether the hold was set (`true`) or cleared.
    pub legal_hold: bool,
    pub blobs: Vec<HeldBlob>,
}

#[derive(Debug, Serialize)]
pub struct HeldBlob {
    pub database: String,
    pub timestamp: Stamp,
    pub tier: Tier,
    pub blob: String,
}

pub fn hold(
    ctx: &Context,
    set: bool,
    stamp: Option<Stamp>,
    targets: &[String],
) -> Result<HoldReport> {
    let store = AzureStore::open(azure(ctx)?)?;
    hold_store(ctx, &store, set, stamp, targets)
}

/// [`hold`] in `store`. `stamp` `None` is each database's newest copy.
pub fn hold_store(
    ctx: &Context,
    store: &dyn Store,
    set: bool,
    stamp: Option<Stamp>,
    targets: &[String],
) -> Result<HoldReport> {
    let az = azure(ctx)?;
    let dbs = ctx.cfg.select(targets)?;
    let blobs = store.list(&az.prefix)?;
    let names: BTreeSet<&str> = blobs.iter().map(|b| b.name.as_str()).collect();
    let mut report = HoldReport {
        container: store.describe(),
        legal_hold: set,
        blobs: Vec::new(),
    };
    for db in &dbs {
        let copies = copies_of(az, &blobs, db);
        let Some(at) = stamp.or_else(|| copies.iter().map(|c| c.stamp).max()) else {
            continue;
        };
        for c in copies.iter().filter(|c| c.stamp == at) {
            let manifest = manifest_of(&c.blob.name);
            let pair = [
                Some(c.blob.name.clone()),
                names.contains(manifest.as_str()).then_some(manifest),
            ];
            for name in pair.into_iter().flatten() {
                ctx.check_cancel()?;
                store.set_legal_hold(&name, set)?;
                info!("{name}: legal hold {}", if set { "set" } else { "cleared" });
                report.blobs.push(HeldBlob {
                    database: db.dbname.clone(),
                    timestamp: at,
                    tier: c.tier,
                    blob: name,
                });
            }
        }
    }
    if report.blobs.is_empty() {
        return Err(Error::NoBackup {
            what: match stamp {
                Some(s) => format!("offsite at {s} to hold (see `valerix-backup list`)"),
                None => "offsite to hold (run `valerix-backup upload` first)".into(),
            },
        });
    }
    Ok(report)
}
