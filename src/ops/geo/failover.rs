//! `failover`: promote a cross-region read replica of a flexible server,
//! the faster way out of a region failure (RPO the replication lag, seconds;
//! no restore), then point the services at it.
//!
//! The contract is Microsoft.DBforPostgreSQL 2025-08-01 (azure-rest-api-specs,
//! specification/postgresql/resource-manager/Microsoft.DBforPostgreSQL/
//! PostgreSQL/stable/2025-08-01/openapi.json):
//! - `GET .../flexibleServers/{name}/replicas` (`Replicas_ListByServer`, a
//!   `ServerList`): the read replicas of a server;
//! - `PATCH .../flexibleServers/{replica}` (`Servers_Update`, body
//!   `ServerForPatch`) with `properties.replica.promoteMode` (`Standalone` |
//!   `Switchover`, `ReadReplicaPromoteMode`) and `promoteOption` (`Planned` |
//!   `Forced`, `ReadReplicaPromoteOption`): 202 with Azure-AsyncOperation,
//!   Location and Retry-After. The examples are
//!   ServersPromoteReplicaAs{Planned,Forced}{StandaloneServer,Switchover}.json;
//! - `GET .../flexibleServers/{name}/virtualendpoints`
//!   (`VirtualEndpoints_ListByServer`): the pair of virtual endpoints whose
//!   writer host name follows the primary across a switchover.
//!
//! Step by step (each logged with its duration):
//! 1. preflight: GET the primary and its replicas; refuse a server that is
//!    not a replica of this primary, or not in a state to be promoted; a
//!    Switchover needs virtual endpoints (Microsoft: "For a successful
//!    promotion, it's necessary to have a virtual endpoint configured");
//! 2. PATCH the replica, once (only a 429 is sent again);
//! 3. follow the long-running operation, then GET the replica until it is
//!    Ready and a primary;
//! 4. point the services at it (`kubectl set env`), or, after a Switchover
//!    with a writer endpoint, say that nothing is to repoint.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::restore::configured;
use super::watch::{Wait, Waited, wait_for};
use super::{accepted_at, name_of, send_throttled, server_id, split_id};
use crate::arm::lro::Operation;
use crate::arm::resources::{FlexibleServer, List, VirtualEndpoint, region};
use crate::arm::{Answer, Arm, Sent};
use crate::azure::{kind_of_status, of_kind};
use crate::error::{Error, Result};
use crate::ops::report;
use crate::ops::upload::azure;
use crate::ops::{Context, Observer};

/// `ReadReplicaPromoteMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PromoteMode {
    /// The replica leaves the replication set: a read-write server of its
    /// own, under its own host name.
    Standalone,
    /// The replica and the primary swap roles; the writer virtual endpoint
    /// follows the new primary.
    Switchover,
}

/// `ReadReplicaPromoteOption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PromoteOption {
    /// Wait until the replica has every write of its source (RPO 0; needs
    /// the source to answer).
    Planned,
    /// Promote at once: writes not yet replicated (the replication lag) are
    /// lost.
    Forced,
}

#[derive(Debug, Clone)]
pub struct FailoverRequest {
    /// The primary: a name in the configured resource group or an id;
    /// default the only `[[azure.postgres_server]]`.
    pub server: Option<String>,
    /// The replica to promote: a name (in the primary's resource group) or
    /// an id; default the only replica of the primary.
    pub replica: Option<String>,
    pub mode: PromoteMode,
    pub option: PromoteOption,
}

/// One replica as Resource Manager reports it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReplicaInfo {
    pub name: String,
    pub id: String,
    pub role: Option<String>,
    pub location: Option<String>,
    pub state: Option<String>,
    pub replication_state: Option<String>,
    /// Resource Manager reports no replication lag (2025-08-01 has no such
    /// field): always "not reported" here; Azure Monitor's
    /// `physical_replication_delay_in_seconds` has it.
    pub replication_lag: String,
    pub fqdn: Option<String>,
    pub source_server_id: Option<String>,
}

pub const LAG_NOT_REPORTED: &str = "not reported";

impl ReplicaInfo {
    /// `GeoAsyncReplica, region westus, state Ready, replication Active,
    /// lag not reported`.
    pub fn describe(&self) -> String {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        format!(
            "{}, region {}, state {}, replication {}, lag {}",
            or(&self.role),
            or(&self.location),
            or(&self.state),
            or(&self.replication_state),
            self.replication_lag
        )
    }

    pub fn of(server: &FlexibleServer, fallback_id: &str) -> ReplicaInfo {
        let id = server.id.clone().unwrap_or_else(|| fallback_id.to_string());
        ReplicaInfo {
            name: name_of(&id).to_string(),
            role: server.replica_role().map(str::to_string),
            location: server.location.as_deref().map(region),
            state: server.state().map(str::to_string),
            replication_state: server.replication_state().map(str::to_string),
            replication_lag: LAG_NOT_REPORTED.into(),
            fqdn: server.fqdn().map(str::to_string),
            source_server_id: server.source_server_id().map(str::to_string),
            id,
        }
    }
}

/// What the preflight found and what would be sent.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverPlan {
    pub primary_id: String,
    pub primary_location: Option<String>,
    /// Every replica of the primary (empty when the list could not be read).
    pub replicas: Vec<ReplicaInfo>,
    /// The one to promote.
    pub replica: ReplicaInfo,
    pub mode: PromoteMode,
    pub option: PromoteOption,
    pub method: &'static str,
    pub url: String,
    pub body: Value,
    /// Host names of the primary's virtual endpoints.
    pub virtual_endpoints: Vec<String>,
    pub writer_endpoint: Option<String>,
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct FailoverReport {
    pub replica_id: String,
    pub primary_id: String,
    pub mode: Option<PromoteMode>,
    pub option: Option<PromoteOption>,
    pub operation: Option<Operation>,
    pub accepted_secs: f64,
    /// The wait: step times, the promoted server as last read (state,
    /// role, FQDN) and, when interrupted, how to resume.
    #[serde(flatten)]
    pub waited: Waited,
    /// Set when the PATCH's answer was lost or a 5xx and the replica was
    /// found being promoted: why, in one line.
    pub followed: Option<String>,
    /// What pointing the services meant, in one line.
    pub repoint: Option<String>,
    pub k8s_commands: Vec<Vec<String>>,
    pub k8s_applied: bool,
}

impl FailoverReport {
    pub fn outcome(&self) -> Result<()> {
        match self.waited.resume {
            Some(_) => Err(Error::Interrupted),
            None => Ok(()),
        }
    }

    /// The promoted server, once it is a Ready primary.
    pub fn promoted_fqdn(&self) -> Option<&str> {
        let w = &self.waited;
        w.fqdn
            .as_deref()
            .filter(|_| w.state.as_deref() == Some("Ready") && w.resume.is_none())
    }
}

pub fn plan(ctx: &Context, arm: &Arm, req: &FailoverRequest) -> Result<FailoverPlan> {
    let az = azure(ctx)?;
    let primary_id = primary_id(arm, az, req.server.as_deref())?;
    let primary_name = name_of(&primary_id).to_string();
    info!("preflight: reading {primary_id}");
    let primary = read_primary(arm, &primary_id, req.replica.is_some())?;
    let primary_location = primary
        .as_ref()
        .and_then(|p| p.location.as_deref().map(region));
    let replicas = list_replicas(arm, &primary_id, req.replica.is_some())?;
    for r in &replicas {
        info!("replica {}: {}", r.name, r.describe());
    }
    let replica = match &req.replica {
        Some(named) => find_named(arm, &replicas, named, &primary_id)?,
        None => only_replica(&replicas, &primary_name, primary_location.as_deref())?,
    };
    promotable(&replica, &primary_id, req.option)?;
    let virtual_endpoints = virtual_endpoints(arm, &primary_id, &replica.id)?;
    let writer_endpoint = virtual_endpoints
        .iter()
        .find(|h| h.contains(".writer."))
        .cloned();
    if req.mode == PromoteMode::Switchover && virtual_endpoints.is_empty() {
        return Err(Error::Refused(format!(
            "a Switchover of {} needs a pair of virtual endpoints on {primary_name} (Azure refuses \
             it without one): create them (`az postgres flexible-server virtual-endpoint create`) \
             or use --mode standalone; nothing was sent",
            replica.name
        )));
    }
    let databases = configured(az, &primary_name)
        .map(|s| s.databases.clone())
        .unwrap_or_else(|| ctx.cfg.databases.iter().map(|d| d.name.clone()).collect());
    Ok(FailoverPlan {
        primary_id,
        primary_location,
        url: arm.url(&replica.id, &arm.cfg.api_version),
        body: promote_body(req.mode, req.option),
        replicas,
        replica,
        mode: req.mode,
        option: req.option,
        method: "PATCH",
        virtual_endpoints,
        writer_endpoint,
        databases,
    })
}

/// `{"properties": {"replica": {"promoteMode": .., "promoteOption": ..}}}`,
/// as the spec's ServersPromoteReplicaAs*.json examples send it.
pub fn promote_body(mode: PromoteMode, option: PromoteOption) -> Value {
    json!({ "properties": { "replica": {
        "promoteMode": format!("{mode:?}"),
        "promoteOption": format!("{option:?}"),
    }}})
}

/// The primary's id: `server` as an id, or a name (in its configured
/// resource group); default the only configured server.
fn primary_id(arm: &Arm, az: &crate::config::Azure, server: Option<&str>) -> Result<String> {
    let sub = arm.cfg.subscription_id.clone();
    let name = match server {
        Some(id) if id.starts_with('/') => {
            return split_id(id)
                .map(|_| id.to_string())
                .ok_or_else(|| Error::Invalid {
                    what: "server",
                    value: id.to_string(),
                    why: "expected /subscriptions/SUB/resourceGroups/RG/providers/\
                      Microsoft.DBforPostgreSQL/flexibleServers/NAME or a server name",
                });
        }
        Some(name) => name.to_string(),
        None => match az.postgres_servers.as_slice() {
            [one] => one.name.clone(),
            [] => {
                return Err(Error::Setup(
                    "no [[azure.postgres_server]] configured: name the primary with --server"
                        .into(),
                ));
            }
            _ => {
                return Err(Error::Setup(
                    "several [[azure.postgres_server]] configured: name the primary with --server"
                        .into(),
                ));
            }
        },
    };
    let rg = configured(az, &name)
        .and_then(|s| s.resource_group.clone())
        .unwrap_or_else(|| arm.cfg.resource_group.clone());
    Ok(server_id(&sub, &rg, &name))
}

/// The primary, or `None` when it cannot be read and the replica is named
/// (its region is down: the replica's own record says whose it is).
fn read_primary(arm: &Arm, id: &str, replica_named: bool) -> Result<Option<FlexibleServer>> {
    let a = arm.get(&arm.url(id, &arm.cfg.api_version))?;
    match a.status {
        200 => {
            let s = FlexibleServer::from_body(&a.body);
            if s.is_replica() {
                return Err(Error::Refused(format!(
                    "{} is itself a read replica (role {}, of {}): name its primary with --server; \
                     nothing was sent",
                    name_of(id),
                    s.replica_role().unwrap_or("?"),
                    s.source_server_id().map_or("?", name_of)
                )));
            }
            Ok(Some(s))
        }
        404 => Err(Error::NotFound(format!(
            "server {} not found: {}",
            name_of(id),
            a.error_text()
        ))),
        _ if replica_named => {
            warn!(
                "cannot read the primary ({}); going on with the named replica",
                a.error_text()
            );
            Ok(None)
        }
        _ => Err(of_kind(
            kind_of_status(a.status),
            format!(
                "cannot read the primary {} ({}); name the replica with --replica",
                name_of(id),
                a.error_text()
            ),
        )),
    }
}

/// `GET {primary}/replicas`; empty (with a warning) when it cannot be read
/// and the replica is named.
pub(super) fn list_replicas(
    arm: &Arm,
    primary_id: &str,
    replica_named: bool,
) -> Result<Vec<ReplicaInfo>> {
    let a = arm.get(&arm.url(&format!("{primary_id}/replicas"), &arm.cfg.api_version))?;
    if !a.ok() {
        if replica_named {
            warn!("cannot list the replicas ({}); going on", a.error_text());
            return Ok(Vec::new());
        }
        return Err(a.refused(&format!("listing the replicas of {}", name_of(primary_id))));
    }
    let list: List<FlexibleServer> = List::from_body(&a.body, "the replicas")?;
    Ok(list
        .value
        .iter()
        .map(|s| ReplicaInfo::of(s, primary_id))
        .collect())
}

/// The named replica: from the list, else read (a name is looked up in
/// the primary's resource group).
fn find_named(
    arm: &Arm,
    replicas: &[ReplicaInfo],
    named: &str,
    primary_id: &str,
) -> Result<ReplicaInfo> {
    let hit = replicas
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(named) || r.id.eq_ignore_ascii_case(named));
    if let Some(r) = hit {
        return Ok(r.clone());
    }
    let id = if named.starts_with('/') {
        split_id(named).ok_or_else(|| Error::Invalid {
            what: "replica",
            value: named.to_string(),
            why: "expected a flexible server's resource id or a server name",
        })?;
        named.to_string()
    } else {
        let (sub, rg, _) = split_id(primary_id).expect("built or checked");
        server_id(&sub, &rg, named)
    };
    let a = arm.get(&arm.url(&id, &arm.cfg.api_version))?;
    if a.status == 404 {
        return Err(Error::NotFound(format!(
            "replica {named} not found: {}",
            a.error_text()
        )));
    }
    if !a.ok() {
        return Err(a.refused(&format!("reading {named}")));
    }
    Ok(ReplicaInfo::of(&FlexibleServer::from_body(&a.body), &id))
}

/// The replica to promote when none is named: the only one, preferring
/// those in another region.
fn only_replica(
    replicas: &[ReplicaInfo],
    primary: &str,
    primary_location: Option<&str>,
) -> Result<ReplicaInfo> {
    let remote: Vec<&ReplicaInfo> = replicas
        .iter()
        .filter(|r| r.location.as_deref() != primary_location)
        .collect();
    let pick: Vec<&ReplicaInfo> = if remote.is_empty() {
        replicas.iter().collect()
    } else {
        remote
    };
    match pick.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::Refused(format!(
            "{primary} has no read replica: a failover by promotion is not possible (create \
             one from infra/, or use geo-restore); nothing was sent"
        ))),
        many => Err(Error::Refused(format!(
            "{primary} has {} replicas ({}): name one with --replica; nothing was sent",
            many.len(),
            many.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Refuses a server that is not a replica of `primary_id`, or not in a
/// state to be promoted.
fn promotable(r: &ReplicaInfo, primary_id: &str, option: PromoteOption) -> Result<()> {
    let name = &r.name;
    let role = r.role.as_deref().unwrap_or("None");
    if !matches!(role, "AsyncReplica" | "GeoAsyncReplica") {
        return Err(Error::Refused(format!(
            "{name} is not a read replica (role {role}): there is nothing to promote; nothing was \
             sent"
        )));
    }
    let source = r.source_server_id.as_deref().unwrap_or("");
    if !source.eq_ignore_ascii_case(primary_id) {
        return Err(Error::Refused(format!(
            "{name} is a replica of {}, not of {}: name the right --server; nothing was sent",
            if source.is_empty() { "?" } else { source },
            name_of(primary_id)
        )));
    }
    let state = r.state.as_deref().unwrap_or("Unknown");
    if state != "Ready" {
        return Err(Error::Refused(format!(
            "{name} is {state}, not Ready: it cannot be promoted now; nothing was sent"
        )));
    }
    // ReplicationState (2025-08-01): Active and Catchup replicate; Broken
    // has stopped, so a Planned promotion would wait for a sync that never
    // comes; the others are the replica being created or changed.
    match (r.replication_state.as_deref(), option) {
        (None | Some("Active" | "Catchup"), _) | (Some("Broken"), PromoteOption::Forced) => Ok(()),
        (Some("Broken"), PromoteOption::Planned) => Err(Error::Refused(format!(
            "{name}'s replication is Broken: a Planned promotion would wait for a sync that \
             cannot happen; use --option forced --yes (writes not replicated are lost); nothing \
             was sent"
        ))),
        (Some(s), _) => Err(Error::Refused(format!(
            "{name}'s replication is {s}: it cannot be promoted until it is Active; nothing was \
             sent"
        ))),
    }
}

/// The host names of the virtual endpoints on the primary (else on the
/// replica: the pair is listed under either member). None when neither can
/// be read (said in a warning).
fn virtual_endpoints(arm: &Arm, primary_id: &str, replica_id: &str) -> Result<Vec<String>> {
    for id in [primary_id, replica_id] {
        let a = arm.get(&arm.url(&format!("{id}/virtualendpoints"), &arm.cfg.api_version))?;
        if !a.ok() {
            warn!(
                "cannot list the virtual endpoints of {} ({})",
                name_of(id),
                a.error_text()
            );
            continue;
        }
        let list: List<VirtualEndpoint> = List::from_body(&a.body, "the virtual endpoints")?;
        return Ok(list
            .value
            .iter()
            .flat_map(|v| v.hosts().iter().cloned())
            .collect());
    }
    Ok(Vec::new())
}

/// Sends the PATCH and follows it to a Ready primary (or only sends it,
/// with `no_wait`).
pub fn execute(
    ctx: &Context,
    arm: &Arm,
    plan: &FailoverPlan,
    no_wait: bool,
    obs: &dyn Observer,
) -> Result<FailoverReport> {
    let t0 = Instant::now();
    info!(
        "PATCH {} (promote {:?}, {:?})",
        plan.replica.id, plan.mode, plan.option
    );
    let mut report = FailoverReport {
        replica_id: plan.replica.id.clone(),
        primary_id: plan.primary_id.clone(),
        mode: Some(plan.mode),
        option: Some(plan.option),
        ..Default::default()
    };
    let accepted = match send_throttled(ctx, arm, || arm.patch_once(&plan.url, &plan.body))? {
        Sent::Answered(a) if a.ok() => Some(a),
        Sent::Answered(a) if a.status < 500 => return Err(refused(plan, &a)),
        Sent::Answered(a) => {
            report.followed = Some(settle(arm, plan, &a.error_text())?);
            None
        }
        Sent::Lost(cause) => {
            report.followed = Some(settle(arm, plan, &format!("no answer ({cause})"))?);
            None
        }
    };
    (report.operation, report.accepted_secs) = accepted_at(arm, accepted.as_ref(), t0);
    if no_wait {
        report.waited.total_secs = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let target = plan.replica.id.clone();
    let resume = |_: Option<&Operation>| follow_command(&target);
    let standalone = plan.mode == PromoteMode::Standalone;
    // Promoted: Ready, a primary (Standalone: no longer replicating from
    // anything, so no source; the spec's None role counts too).
    let arrived = |s: &FlexibleServer| {
        s.state() == Some("Ready")
            && matches!(s.replica_role(), Some("Primary") | Some("None"))
            && (!standalone || s.source_server_id().is_none())
    };
    let wait = Wait {
        target_id: &target,
        what: "the promotion",
        reading: "reading the promoted server",
        arrived: &arrived,
        resume: &resume,
        op: report.operation.as_ref(),
        first_delay: accepted.and_then(|a| a.retry_after),
    };
    report.waited = wait_for(ctx, arm, &wait, t0, obs)?;
    Ok(report)
}

fn refused(plan: &FailoverPlan, a: &Answer) -> Error {
    let hint = if a.status == 403 {
        " (the identity lacks Microsoft.DBforPostgreSQL/flexibleServers/write on the replica's \
         resource group)"
    } else {
        ""
    };
    of_kind(
        kind_of_status(a.status),
        format!(
            "promotion of {} refused: {}{hint}",
            plan.replica.name,
            a.error_text()
        ),
    )
}

/// After a 5xx or a lost answer, reads the replica: when it is being
/// promoted (replication `Updating`) or already a primary, it is followed;
/// otherwise nothing is under way and the error says to run again.
fn settle(arm: &Arm, plan: &FailoverPlan, why: &str) -> Result<String> {
    let why = why.trim_end_matches(['.', ' ']);
    let name = &plan.replica.name;
    let a = arm.get(&plan.url)?;
    if !a.ok() {
        return Err(a.refused(&format!("promotion of {name}: {why}; reading {name}")));
    }
    let s = FlexibleServer::from_body(&a.body);
    if s.replication_state() == Some("Updating") || !s.is_replica() {
        let note = format!(
            "{why}, but {name} is being promoted (role {}, replication {}): following it",
            s.replica_role().unwrap_or("?"),
            s.replication_state().unwrap_or("-")
        );
        warn!("{note}");
        return Ok(note);
    }
    Err(Error::OperationFailed(format!(
        "promotion of {name} failed: {why}; {name} is still a {} and not being promoted: run \
         the same command again",
        s.replica_role().unwrap_or("replica")
    )))
}

/// How to follow a promotion this run stopped waiting for (Ctrl-C,
/// `--no-wait`). Not `geo-restore --watch`: that waits only for Ready, not
/// for the promoted role, and would point every database at the server and
/// record a geo-restore whose undo deletes it.
pub fn follow_command(replica_id: &str) -> String {
    format!(
        "az postgres flexible-server show --ids {replica_id} --query \
         \"{{state:state, role:replica.role, fqdn:fullyQualifiedDomainName}}\"  (once it is a \
         Ready primary: kubectl set env deployment/<db>-service DB_HOST=<fqdn>, unless a \
         Switchover keeps the writer endpoint)"
    )
}

/// Points the services at the promoted server, unless a Switchover keeps
/// the writer endpoint the services use.
pub fn point_services(
    report: &mut FailoverReport,
    plan: &FailoverPlan,
    namespace: Option<&str>,
    default_namespace: &str,
) -> Result<()> {
    if let (PromoteMode::Switchover, Some(writer)) = (plan.mode, &plan.writer_endpoint) {
        report.repoint = Some(format!(
            "nothing to repoint: the writer endpoint {writer} now points at {} (services that \
             connect to it follow the switchover)",
            plan.replica.name
        ));
        return Ok(());
    }
    let Some(fqdn) = report.promoted_fqdn().map(str::to_string) else {
        return Ok(());
    };
    (report.k8s_commands, report.k8s_applied) =
        super::kubectl::repoint(&plan.databases, &fqdn, namespace, default_namespace)?;
    let why = match plan.virtual_endpoints.is_empty() {
        true => "",
        false => " (a Standalone promotion leaves the virtual endpoints)",
    };
    report.repoint = Some(format!(
        "the promoted server answers at {fqdn}: the services must move to it{why}"
    ));
    Ok(())
}

/// Fills the post-mortem record of a failover: the primary it replaces,
/// each step's time, what was kept and how to go back.
pub fn record(rec: &mut report::Record, plan: &FailoverPlan, r: &FailoverReport) {
    rec.source(report::Source {
        of: plan.primary_id.clone(),
        ..Default::default()
    });
    rec.target(plan.replica.id.clone());
    rec.step("request accepted", r.accepted_secs, r.followed.as_deref());
    let w = &r.waited;
    if w.operation_secs > 0.0 {
        rec.step("operation succeeded", w.operation_secs, None);
    }
    if let Some(fqdn) = r.promoted_fqdn() {
        let detail = format!("role {} at {fqdn}", w.role.as_deref().unwrap_or("?"));
        rec.step("promoted server ready", w.ready_secs, Some(&detail));
    }
    if r.k8s_applied {
        rec.step("services pointed at it", 0.0, None);
    } else if let Some(note) = r.repoint.as_deref().filter(|n| n.starts_with("nothing")) {
        rec.step("services", 0.0, Some(note));
    }
    let (primary, replica) = (name_of(&plan.primary_id), &plan.replica.name);
    match plan.mode {
        PromoteMode::Switchover => {
            rec.kept(format!(
                "{} (the old primary, now a replica of {replica})",
                plan.primary_id
            ));
            rec.undo(format!(
                "switch back once its region is healthy: valerix-backup failover --server \
                 {replica} --replica {primary} --mode switchover --yes"
            ));
        }
        PromoteMode::Standalone => {
            rec.kept(format!(
                "{} (the old primary, untouched: stale from the promotion on)",
                plan.primary_id
            ));
            rec.undo(format!(
                "a promotion cannot be reversed: to go back, create a new read replica of \
                 {replica} in the old region (infra/: replicaLocation) and fail over to it"
            ));
            rec.undo(format!(
                "until then never point the services back at {primary}: its data stops at the \
                 promotion"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(role: &str, source: &str, state: &str, repl: Option<&str>) -> ReplicaInfo {
        ReplicaInfo {
            name: "pg-west".into(),
            id: "/x/pg-west".into(),
            role: Some(role.into()),
            state: Some(state.into()),
            replication_state: repl.map(str::to_string),
            source_server_id: Some(source.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_body_is_the_specs() {
        assert_eq!(
            promote_body(PromoteMode::Switchover, PromoteOption::Planned),
            json!({"properties": {"replica": {"promoteMode": "Switchover", "promoteOption": "Planned"}}})
        );
        assert_eq!(
            promote_body(PromoteMode::Standalone, PromoteOption::Forced)["properties"]["replica"],
            json!({"promoteMode": "Standalone", "promoteOption": "Forced"})
        );
    }

    #[test]
    fn only_a_ready_replica_of_this_primary_is_promotable() {
        let p = "/s/rg/Primary";
        let ok = |r: &ReplicaInfo, o| promotable(r, p, o).is_ok();
        assert!(ok(
            &replica("GeoAsyncReplica", "/s/rg/primary", "Ready", Some("Active")),
            PromoteOption::Planned
        ));
        let e = promotable(
            &replica("Primary", p, "Ready", None),
            p,
            PromoteOption::Planned,
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("not a read replica (role Primary)")
        );
        let e = promotable(
            &replica("AsyncReplica", "/s/rg/other", "Ready", None),
            p,
            PromoteOption::Planned,
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("is a replica of /s/rg/other")
        );
        assert!(!ok(
            &replica("AsyncReplica", p, "Updating", None),
            PromoteOption::Forced
        ));
        let broken = replica("GeoAsyncReplica", p, "Ready", Some("Broken"));
        assert!(!ok(&broken, PromoteOption::Planned));
        assert!(ok(&broken, PromoteOption::Forced));
        assert!(!ok(
            &replica("GeoAsyncReplica", p, "Ready", Some("Provisioning")),
            PromoteOption::Forced
        ));
    }

    #[test]
    fn without_a_name_the_remote_replica_is_chosen() {
        let mut near = replica("AsyncReplica", "p", "Ready", None);
        near.location = Some("eastus".into());
        let mut far = near.clone();
        far.name = "pg-far".into();
        far.location = Some("westus".into());
        let got = only_replica(&[near.clone(), far], "p", Some("eastus")).unwrap();
        assert_eq!(got.name, "pg-far");
        assert!(only_replica(&[], "p", Some("eastus")).is_err());
        let two = [near.clone(), near];
        let e = only_replica(&two, "p", Some("westus")).unwrap_err();
        assert!(e.to_string().contains("has 2 replicas"), "{e}");
    }
}
