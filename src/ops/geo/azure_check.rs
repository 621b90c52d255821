//! `azure-check`: is every configured server restorable into its paired
//! region (geo-redundant backup on, a paired region, a restore point)? And
//! with `azure.immutable`, can the container keep immutable copies (blob
//! versioning on the account, version-level immutability on the container)?
//! And does the server have a cross-region read replica (`failover`), and
//! what recovery point does each path of a region failure give?

use serde::Serialize;

use super::failover::{ReplicaInfo, list_replicas};
use super::server_id;
use crate::arm::Arm;
use crate::arm::resources::{
    FlexibleServer, paired_region, region, version_level_immutability, versioning_enabled,
};
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::ops::upload::azure;

/// One server's readiness for a geo-restore.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerCheck {
    pub name: String,
    pub id: String,
    pub found: bool,
    pub state: Option<String>,
    pub location: Option<String>,
    pub paired_region: Option<String>,
    pub backup_retention_days: Option<u64>,
    pub geo_redundant_backup: Option<bool>,
    pub earliest_restore_date: Option<String>,
    /// Why a geo-restore would not be possible.
    pub problems: Vec<String>,
    /// What is short of the seed's plan but would still work.
    pub warnings: Vec<String>,
    /// The server's read replicas (`GET .../replicas`), any region.
    pub replicas: Vec<ReplicaInfo>,
    /// Whether one of them is in another region (`failover` is possible);
    /// `None` when the replicas could not be listed.
    pub cross_region_replica: Option<bool>,
    /// Why the replicas could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_unread: Option<String>,
    /// Each path out of a region failure and the recovery point it gives.
    pub recovery_paths: Vec<RecoveryPath>,
}

/// One way out of a region failure: its command, whether this server has
/// what it needs, and its recovery point objective.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RecoveryPath {
    pub path: String,
    pub available: bool,
    pub rpo: String,
}

/// Microsoft: geo-redundant backups reach the paired region with a delay,
/// so a geo-restore loses up to about the last hour (the flexible server's
/// business continuity overview, "Geo-redundant backup and restore").
pub const GEO_RESTORE_RPO: &str = "up to 1 hour (the geo-backup's copy delay)";
/// A promoted replica has everything but what had not been replicated yet.
pub const PROMOTION_RPO: &str = "seconds (the replication lag; 0 with --option planned)";

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub servers: Vec<ServerCheck>,
    /// With `azure.immutable`: the container's readiness for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageCheck>,
}

/// What immutable copies need of the storage account and the container, as
/// Resource Manager reports it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StorageCheck {
    pub account: String,
    pub container: String,
    /// `blobServices/default` `isVersioningEnabled`; `None` when unread.
    pub versioning: Option<bool>,
    /// The container's `immutableStorageWithVersioning.enabled`; `false`
    /// too when the container does not exist.
    pub version_level_immutability: Option<bool>,
    /// What to enable, one line each.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn outcome(&self) -> Result<()> {
        if self.ok {
            return Ok(());
        }
        let bad: Vec<String> = self
            .servers
            .iter()
            .filter(|s| !s.problems.is_empty())
            .map(|s| format!("{} ({})", s.name, s.problems.join("; ")))
            .collect();
        let mut parts = Vec::new();
        if !bad.is_empty() {
            parts.push(format!(
                "geo-restore would not be possible for {}",
                bad.join(", ")
            ));
        }
        if let Some(st) = self.storage.as_ref().filter(|s| !s.problems.is_empty()) {
            parts.push(format!(
                "container {} cannot keep immutable copies ({})",
                st.container,
                st.problems.join("; ")
            ));
        }
        Err(Error::Unsound(parts.join("; ")))
    }
}

/// The seed asks for 30 days of server backups.
const WANTED_RETENTION_DAYS: u64 = 30;

pub fn check(ctx: &Context) -> Result<CheckReport> {
    let az = azure(ctx)?;
    if az.postgres_servers.is_empty() && az.immutable.is_empty() {
        return Err(Error::Setup(
            "no [[azure.postgres_server]] and no azure.immutable configured: nothing to check"
                .into(),
        ));
    }
    let arm = Arm::connect(az)?;
    let sub = arm.cfg.subscription_id.clone();
    let mut servers = Vec::new();
    for s in &az.postgres_servers {
        let rg = s
            .resource_group
            .clone()
            .unwrap_or_else(|| arm.cfg.resource_group.clone());
        servers.push(check_one(
            &arm,
            &sub,
            &server_id(&sub, &rg, &s.name),
            &s.name,
        )?);
    }
    let storage = match az.immutable.is_empty() {
        true => None,
        false => Some(storage_check(&arm, az)?),
    };
    let storage_ok = storage.as_ref().is_none_or(|s| s.problems.is_empty());
    Ok(CheckReport {
        ok: servers.iter().all(|s| s.problems.is_empty()) && storage_ok,
        servers,
        storage,
    })
}

/// Blob versioning on the account and version-level immutability on the
/// container, read through Resource Manager; each one missing is a problem
/// saying exactly what to enable. A resource that cannot be read is a
/// problem too (naming the refusal): unknown is not ready.
pub fn storage_check(arm: &Arm, az: &crate::config::Azure) -> Result<StorageCheck> {
    let account = crate::offsite::policy::storage_account(az)?;
    let rg = &arm.cfg.resource_group;
    let service = format!(
        "{}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{account}/\
         blobServices/default",
        arm.subscription_path()
    );
    let container = format!("{service}/containers/{}", az.container);
    let mut c = StorageCheck {
        account: account.clone(),
        container: az.container.clone(),
        ..Default::default()
    };
    let a = arm.get(&arm.url(&service, crate::arm::BLOB_API))?;
    match a.ok() {
        true => c.versioning = Some(versioning_enabled(&a.body)),
        false => c.problems.push(format!(
            "cannot read the blob service of storage account {account}: {}",
            a.error_text()
        )),
    }
    if c.versioning == Some(false) {
        c.problems.push(format!(
            "blob versioning is off on storage account {account}: enable it (`az storage account \
             blob-service-properties update -g {rg} -n {account} --enable-versioning true`, or \
             infra/: isVersioningEnabled / versioning_enabled)"
        ));
    }
    let a = arm.get(&arm.url(&container, crate::arm::BLOB_API))?;
    match (a.ok(), a.status) {
        (true, _) => c.version_level_immutability = Some(version_level_immutability(&a.body)),
        (false, 404) => {
            c.version_level_immutability = Some(false);
            c.problems.push(format!(
            "container {} does not exist: create it with version-level immutability (`az storage \
             container-rm create -g {rg} --storage-account {account} -n {} --enable-vlw`, or infra/)",
            az.container, az.container
        ))
        }
        (false, _) => c.problems.push(format!(
            "cannot read container {}: {}",
            az.container,
            a.error_text()
        )),
    }
    if c.version_level_immutability == Some(false) && a.ok() {
        c.problems.push(format!(
            "container {} has no version-level immutability support: azure.immutable needs it \
             (a new container: `az storage container-rm create ... --enable-vlw`, or infra/: \
             immutableStorageWithVersioning; an existing one: `az storage container-rm \
             migrate-vlw -g {rg} --storage-account {account} -n {}`, which needs a container-level \
             policy first)",
            az.container, az.container
        ));
    }
    Ok(c)
}

fn check_one(arm: &Arm, sub: &str, id: &str, name: &str) -> Result<ServerCheck> {
    let mut c = ServerCheck {
        name: name.to_string(),
        id: id.to_string(),
        ..Default::default()
    };
    let a = arm.get(&arm.url(id, &arm.cfg.api_version))?;
    if a.status == 404 {
        c.problems.push("server not found".into());
        return Ok(c);
    }
    if !a.ok() {
        c.problems
            .push(format!("cannot read it: {}", a.error_text()));
        return Ok(c);
    }
    let server = FlexibleServer::from_body(&a.body);
    c.found = true;
    c.state = server.state().map(str::to_string);
    c.location = server.location.as_deref().map(region);
    c.backup_retention_days = server.backup_retention_days();
    c.earliest_restore_date = server.earliest_restore_date().map(str::to_string);
    let geo = server.geo_redundant_backup();
    c.geo_redundant_backup = Some(geo.eq_ignore_ascii_case("Enabled"));
    if c.geo_redundant_backup != Some(true) {
        c.problems.push(
            "geo-redundant backup is disabled: it can only be enabled when a server is \
             created (recreate it from infra/, then migrate)"
                .into(),
        );
    }
    match c.backup_retention_days {
        Some(d) if d < WANTED_RETENTION_DAYS => c.warnings.push(format!(
            "backup retention is {d} days; the recovery plan wants {WANTED_RETENTION_DAYS}"
        )),
        None => c.warnings.push("backup retention is not reported".into()),
        _ => {}
    }
    if c.earliest_restore_date.is_none() && c.geo_redundant_backup == Some(true) {
        c.warnings.push(
            "no restore point yet (the first geo-restore is possible about an hour after \
             creation)"
                .into(),
        );
    }
    if let Some(loc) = &c.location {
        c.paired_region = paired_region(arm, sub, loc)?;
        if c.paired_region.is_none() {
            c.problems
                .push(format!("{loc} has no paired region to restore into"));
        }
    }
    replicas_check(arm, &mut c);
    Ok(c)
}

/// The replicas and the two recovery paths. A list that cannot be read is
/// said, not a problem: the geo-restore check stands on its own.
fn replicas_check(arm: &Arm, c: &mut ServerCheck) {
    match list_replicas(arm, &c.id, false) {
        Ok(list) => {
            let remote = list
                .iter()
                .any(|r| r.location.is_some() && r.location != c.location);
            c.cross_region_replica = Some(remote);
            c.replicas = list;
        }
        // Not a warning: the audit fails on those, and an identity
        // without the right to list replicas loses nothing it had.
        Err(e) => c.replicas_unread = Some(e.to_string()),
    }
    let geo = c.geo_redundant_backup == Some(true) && c.paired_region.is_some();
    c.recovery_paths = vec![
        RecoveryPath {
            path: "geo-restore".into(),
            available: geo,
            rpo: GEO_RESTORE_RPO.into(),
        },
        RecoveryPath {
            path: "failover (replica promotion)".into(),
            available: c.cross_region_replica == Some(true),
            rpo: PROMOTION_RPO.into(),
        },
    ];
}

impl StorageCheck {
    /// Whether Resource Manager said the container cannot keep immutable
    /// copies (not merely that it could not be read).
    pub fn unfit(&self) -> bool {
        self.versioning == Some(false) || self.version_level_immutability == Some(false)
    }
}
