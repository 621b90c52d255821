//! `azure-check`: is every configured server restorable into its paired
//! region (geo-redundant backup on, a paired region, a restore point)?

use serde::Serialize;

use super::server_id;
use crate::arm::Arm;
use crate::arm::resources::{FlexibleServer, paired_region, region};
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
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub servers: Vec<ServerCheck>,
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
        Err(Error::Unsound(format!(
            "geo-restore would not be possible for {}",
            bad.join(", ")
        )))
    }
}

/// The seed asks for 30 days of server backups.
const WANTED_RETENTION_DAYS: u64 = 30;

pub fn check(ctx: &Context) -> Result<CheckReport> {
    let az = azure(ctx)?;
    if az.postgres_servers.is_empty() {
        return Err(Error::Setup(
            "no [[azure.postgres_server]] configured: nothing to check".into(),
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
    Ok(CheckReport {
        ok: servers.iter().all(|s| s.problems.is_empty()),
        servers,
    })
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
    Ok(c)
}
