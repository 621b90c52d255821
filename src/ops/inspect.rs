//! `list`, `status` and `prune`: what is in the backup directory, whether it
//! is recent enough (the seed's monitor-backups.sh), and retention on demand.

use std::time::Duration;

use serde::Serialize;
use tracing::info;

use crate::catalog::copies::copies_of;
use crate::catalog::{BackupState, Catalog, Stamp};
use crate::error::{Error, Result};
use crate::offsite::Tier;
use crate::ops::{Context, journal};
use crate::pg::db::Server;
use crate::storage::Store;
use crate::storage::azure::AzureStore;

#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub timestamp: Stamp,
    pub database: String,
    pub dbname: String,
    pub file: String,
    pub size_bytes: u64,
    pub state: BackupState,
    pub sha256: Option<String>,
    pub tables: Option<usize>,
    pub rows: Option<u64>,
    /// Tiers holding an offsite copy; `None` when not looked up.
    pub offsite: Option<Vec<Tier>>,
    /// The age public keys an encrypted backup was made for (from its
    /// manifest, or an offsite copy's metadata); absent when unencrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_to: Option<Vec<String>>,
    /// The offsite copies under an immutability policy or a legal hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<ProtectedCopy>,
}

/// What protects one offsite copy (its dump blob).
#[derive(Debug, Clone, Serialize)]
pub struct ProtectedCopy {
    pub tier: Tier,
    #[serde(flatten)]
    pub protection: crate::storage::Protection,
}

/// Local backups, and with `offsite` the copies in Azure beside them
/// (offsite-only copies appear with state `offsite-only`).
pub fn list(ctx: &Context, targets: &[String], offsite: bool) -> Result<Vec<ListEntry>> {
    let dbs = ctx.cfg.select_sets(targets)?;
    let mut entries = local_entries(ctx, &dbs)?;
    if let (true, Some(az)) = (offsite, ctx.cfg.azure.as_ref()) {
        // During an outage the local list matters most: show it even when
        // Azure cannot be reached.
        let blobs = match AzureStore::open(az).and_then(|s| s.list(&az.prefix)) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("offsite copies not shown: {e}");
                return Ok(entries);
            }
        };
        for e in &mut entries {
            e.offsite = Some(Vec::new());
        }
        for db in &dbs {
            for c in copies_of(az, &blobs, db) {
                let (stamp, tier, blob) = (c.stamp, c.tier, c.blob);
                let p = blob.protection;
                let protected: Vec<ProtectedCopy> = (p.legal_hold || p.policy.is_some())
                    .then_some(ProtectedCopy {
                        tier,
                        protection: p,
                    })
                    .into_iter()
                    .collect();
                match entries
                    .iter_mut()
                    .find(|e| e.dbname == db.dbname && e.timestamp == stamp)
                {
                    Some(e) => {
                        e.offsite.get_or_insert_with(Vec::new).push(tier);
                        e.protected.extend(protected);
                    }
                    None => entries.push(ListEntry {
                        timestamp: stamp,
                        database: db.name.clone(),
                        dbname: db.dbname.clone(),
                        file: crate::catalog::file_part(&blob.name).into(),
                        size_bytes: blob.size,
                        state: BackupState::OffsiteOnly,
                        sha256: blob.sha256().ok(),
                        tables: None,
                        rows: None,
                        offsite: Some(vec![tier]),
                        encrypted_to: crate::catalog::is_encrypted(&blob.name)
                            .then(|| recipients_of(blob)),
                        protected,
                    }),
                }
            }
        }
        entries.sort_by(|a, b| (a.timestamp, &a.database).cmp(&(b.timestamp, &b.database)));
    }
    Ok(entries)
}

/// The recipients an offsite copy's metadata names (`upload` records them).
fn recipients_of(blob: &crate::storage::Object) -> Vec<String> {
    let listed = blob.metadata.get("encrypted_to").map(String::as_str);
    listed
        .unwrap_or("")
        .split(',')
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect()
}

fn local_entries(ctx: &Context, dbs: &[&crate::config::Database]) -> Result<Vec<ListEntry>> {
    let backups = Catalog::open_existing(&ctx.cfg).list(dbs)?;
    Ok(backups
        .into_iter()
        .map(|b| ListEntry {
            timestamp: b.stamp,
            state: b.state(),
            file: b.file_name(),
            size_bytes: b.size,
            sha256: b.manifest.as_ref().map(|m| m.sha256.clone()),
            // A configuration archive has files, not tables: `-`.
            tables: b
                .manifest
                .as_ref()
                .filter(|m| m.config.is_none())
                .map(|m| m.tables.len()),
            rows: b
                .manifest
                .as_ref()
                .filter(|m| m.config.is_none())
                .map(|m| m.total_rows()),
            encrypted_to: b.encrypted().then(|| b.recipients().to_vec()),
            database: b.database,
            dbname: b.dbname,
            offsite: None,
            protected: Vec::new(),
        })
        .collect())
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub ok: bool,
    pub max_age_secs: u64,
    pub databases: Vec<DbStatus>,
    /// Journals of runs that died before finishing (see `ops::journal`);
    /// the next command that writes settles them.
    pub interrupted: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DbStatus {
    pub database: String,
    pub dbname: String,
    pub ok: bool,
    pub newest: Option<Stamp>,
    pub age_secs: Option<u64>,
    pub backups: usize,
    pub problem: Option<String>,
    /// The live database exists but refuses new connections, as a restore
    /// killed inside its swap leaves it.
    pub refuses_connections: bool,
}

impl StatusReport {
    /// `Ok` when every database has a fresh sound backup and accepts
    /// connections and no run is left to settle; otherwise one error line
    /// saying what is wrong (exit status 1).
    pub fn outcome(&self) -> Result<()> {
        if self.ok {
            Ok(())
        } else {
            Err(Error::Unsound(self.summary()))
        }
    }

    /// The one error line of a status that is not ok.
    pub fn summary(&self) -> String {
        let stale = self
            .databases
            .iter()
            .filter(|d| !d.ok && !d.refuses_connections)
            .count();
        let mut parts = Vec::new();
        if stale > 0 {
            parts.push(format!(
                "{stale} of {} databases lack a backup younger than {}",
                self.databases.len(),
                humantime::format_duration(Duration::from_secs(self.max_age_secs))
            ));
        }
        for d in self.databases.iter().filter(|d| d.refuses_connections) {
            parts.push(format!("{} refuses connections", d.dbname));
        }
        if !self.interrupted.is_empty() {
            parts.push(format!(
                "{} interrupted run(s) to settle",
                self.interrupted.len()
            ));
        }
        parts.join("; ")
    }
}

/// Each database needs a backup with a sound manifest younger than `max_age`
/// and must accept connections; no run may have died half-way.
pub fn status(ctx: &Context, max_age: Duration) -> Result<StatusReport> {
    let dbs = ctx.cfg.select(&[])?;
    let catalog = Catalog::open_existing(&ctx.cfg);
    let all = catalog.list(&dbs)?;
    let now = Stamp::now();
    let databases: Vec<DbStatus> = dbs
        .iter()
        .map(|db| {
            let good: Vec<_> = all
                .iter()
                .filter(|b| b.database == db.name && b.is_sound())
                .collect();
            let newest = good.last().map(|b| b.stamp);
            let age = newest.map(|s| s.age(now));
            let problem = match age {
                None => Some("no backup".to_string()),
                Some(a) if a > max_age => Some(format!(
                    "newest backup is {} old, limit {}",
                    humantime::format_duration(Duration::from_secs(a.as_secs())),
                    humantime::format_duration(max_age)
                )),
                _ => None,
            };
            // An unreachable server is not a backup problem (status works
            // offline); a database that refuses everyone is.
            let refuses = matches!(
                Server::new(&ctx.tools, db).accepts_connections(&db.dbname),
                Ok(Some(false))
            );
            let problem = match refuses {
                true => Some(
                    "refuses connections (ALLOW_CONNECTIONS false, as an interrupted restore \
                     leaves it): run `valerix-backup backup` to settle it"
                        .to_string(),
                ),
                false => problem,
            };
            DbStatus {
                database: db.name.clone(),
                dbname: db.dbname.clone(),
                ok: problem.is_none(),
                newest,
                age_secs: age.map(|a| a.as_secs()),
                backups: good.len(),
                problem,
                refuses_connections: refuses,
            }
        })
        .collect();
    let interrupted: Vec<String> = journal::pending(&catalog)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok(StatusReport {
        ok: databases.iter().all(|d| d.ok) && interrupted.is_empty(),
        max_age_secs: max_age.as_secs(),
        databases,
        interrupted,
    })
}

/// Applies local retention now; with `dry_run`, only says what would go.
pub fn prune(ctx: &Context, dry_run: bool) -> Result<Vec<String>> {
    let dbs = ctx.cfg.select_sets(&[])?;
    let catalog = Catalog::open(&ctx.cfg)?;
    let _lock = crate::ops::lock_catalog(ctx, &catalog)?;
    let mut out = Vec::new();
    for b in catalog.expired(&dbs, ctx.cfg.retention_days, Stamp::now())? {
        if !dry_run {
            catalog.remove(&b)?;
            info!("removed {}", b.file_name());
        }
        out.push(b.file_name());
    }
    Ok(out)
}
