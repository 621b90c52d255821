//! Region failure: `geo-restore` of a PostgreSQL flexible server into its
//! paired region, and `azure-check` (the preflight a team runs months
//! before). `lifecycle-policy --apply` is in [`crate::offsite::policy`].
//!
//! geo-restore, step by step (each logged with its duration):
//! 1. preflight: GET the source server; refuse unless geo-redundant backup
//!    is enabled (it can only be enabled when a server is created); take the
//!    target region from the subscription's paired-region map;
//! 2. PUT the new server with `createMode: GeoRestore`, once: it is never
//!    resent blindly. After a lost answer, a 5xx or a 409, the target is
//!    read; when it is this geo-restore being created (its tags say so), it
//!    is followed as if the PUT had been answered;
//! 3. follow the long-running operation to `Succeeded`;
//! 4. GET the new server until `state` is `Ready`;
//! 5. point the services at it (`kubectl set env`), or print how to.
//!
//! An interrupt while waiting says how to resume (`--watch`).

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use sha2::{Digest, Sha256};

use crate::arm::lro::{self, Operation};
use crate::arm::{Answer, Arm, LOCATIONS_API, Sent};
use crate::config::{Azure, PostgresServer};
use crate::error::{Error, Result};
use crate::ops::Context;
use crate::ops::upload::azure;

const PROVIDER: &str = "Microsoft.DBforPostgreSQL/flexibleServers";

/// Tags on the new server: the source it is a geo-restore of, and the
/// request that made it. GET never shows a geo-restore's source (the spec
/// returns `sourceServerResourceId` for read replicas only), so these are
/// how a run that lost the PUT's answer tells its restore from any other
/// server of that name.
const SOURCE_TAG: &str = "valerix-backup-geo-restore-of";
const REQUEST_TAG: &str = "valerix-backup-request";

#[derive(Debug, Clone, Default)]
pub struct GeoRestoreRequest {
    /// ARM resource id, or a name in the configured resource group.
    pub source: String,
    pub target: String,
    pub target_resource_group: Option<String>,
    /// Default: the source region's pair.
    pub location: Option<String>,
    /// Default: now (the latest geo-replicated backup is used).
    pub restore_time: Option<DateTime<Utc>>,
    pub subscription: Option<String>,
    pub subnet: Option<String>,
    pub private_dns_zone: Option<String>,
}

/// What would be sent, after the preflight.
#[derive(Debug, Clone, Serialize)]
pub struct GeoRestorePlan {
    pub method: &'static str,
    pub url: String,
    pub body: Value,
    pub source_id: String,
    pub source_location: Option<String>,
    pub target_id: String,
    pub location: String,
    pub databases: Vec<String>,
    /// This request's tag value (UTC time and process id).
    pub request: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GeoRestoreReport {
    pub target_id: String,
    pub operation: Option<Operation>,
    pub state: Option<String>,
    pub fqdn: Option<String>,
    pub accepted_secs: f64,
    pub operation_secs: f64,
    pub ready_secs: f64,
    pub total_secs: f64,
    /// The commands that point the services at the new server.
    pub k8s_commands: Vec<Vec<String>>,
    pub k8s_applied: bool,
    /// Set when the PUT's answer was lost or refused and the server being
    /// created was followed instead: why, in one line.
    pub followed: Option<String>,
}

/// A flexible server's id: `/subscriptions/../resourceGroups/../providers/...`.
pub fn server_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/{name}")
}

/// `(subscription, resource group, name)` of a server id.
pub fn split_id(id: &str) -> Option<(String, String, String)> {
    let p: Vec<&str> = id.trim_matches('/').split('/').collect();
    let ok = p.len() == 8
        && p[0].eq_ignore_ascii_case("subscriptions")
        && p[2].eq_ignore_ascii_case("resourceGroups")
        && p[4].eq_ignore_ascii_case("providers")
        && format!("{}/{}", p[5], p[6]).eq_ignore_ascii_case(PROVIDER);
    ok.then(|| (p[1].to_string(), p[3].to_string(), p[7].to_string()))
}

/// Region names as ARM compares them (`West US` = `westus`).
fn region(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

fn server_name_ok(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub fn plan(ctx: &Context, arm: &Arm, req: &GeoRestoreRequest) -> Result<GeoRestorePlan> {
    let az = azure(ctx)?;
    if !server_name_ok(&req.target) {
        return Err(Error::Invalid {
            what: "target server name",
            value: req.target.clone(),
            why: "3-63 lowercase letters, digits and '-', not at either end",
        });
    }
    let sub = req
        .subscription
        .clone()
        .unwrap_or_else(|| arm.cfg.subscription_id.clone());
    let source_id = if req.source.starts_with('/') {
        if split_id(&req.source).is_none() {
            return Err(Error::Invalid {
                what: "source server",
                value: req.source.clone(),
                why: "expected /subscriptions/SUB/resourceGroups/RG/providers/\
                      Microsoft.DBforPostgreSQL/flexibleServers/NAME or a server name",
            });
        }
        req.source.clone()
    } else {
        let rg = configured(az, &req.source)
            .and_then(|s| s.resource_group.clone())
            .unwrap_or_else(|| arm.cfg.resource_group.clone());
        server_id(&sub, &rg, &req.source)
    };
    let (_, _, source_name) = split_id(&source_id).expect("checked above");
    info!("preflight: reading {source_id}");
    let source = arm.get(&arm.url(&source_id, &arm.cfg.api_version))?;
    let source_location = match source.status {
        200 => {
            let geo = source.body["properties"]["backup"]["geoRedundantBackup"]
                .as_str()
                .unwrap_or("Disabled");
            if !geo.eq_ignore_ascii_case("Enabled") {
                return Err(Error::Refused(format!(
                    "{source_name} has geo-redundant backup {geo}: a geo-restore is not \
                     possible (it can only be enabled when a server is created); nothing \
                     was sent"
                )));
            }
            source.body["location"].as_str().map(region)
        }
        404 => {
            return Err(Error::Check(format!(
                "source server not found: {}",
                source.error_text()
            )));
        }
        _ if req.location.is_some() => {
            // The region is down and with it, perhaps, this read: go on with
            // the region the operator named.
            warn!(
                "cannot read the source server ({}); going on",
                source.error_text()
            );
            None
        }
        _ => {
            return Err(Error::Check(format!(
                "cannot read the source server ({}); name the target region with --location",
                source.error_text()
            )));
        }
    };
    let location = match (&req.location, &source_location) {
        (Some(l), _) => region(l),
        (None, Some(src)) => paired_region(arm, &sub, src)?.ok_or_else(|| {
            Error::Check(format!(
                "{src} has no paired region in this subscription's locations; name one with \
                 --location"
            ))
        })?,
        (None, None) => {
            return Err(Error::Check(
                "the source server has no location: name the target region with --location".into(),
            ));
        }
    };
    let rg = req
        .target_resource_group
        .clone()
        .unwrap_or_else(|| arm.cfg.resource_group.clone());
    let target_id = server_id(&sub, &rg, &req.target);
    let at = req.restore_time.unwrap_or_else(Utc::now);
    let mut properties = json!({
        "createMode": "GeoRestore",
        "sourceServerResourceId": source_id,
        "pointInTimeUTC": at.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    if let Some(subnet) = &req.subnet {
        properties["network"]["delegatedSubnetResourceId"] = json!(subnet);
    }
    if let Some(zone) = &req.private_dns_zone {
        properties["network"]["privateDnsZoneArmResourceId"] = json!(zone);
    }
    let databases = configured(az, &source_name)
        .map(|s| s.databases.clone())
        .unwrap_or_else(|| ctx.cfg.databases.iter().map(|d| d.name.clone()).collect());
    let request = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    );
    let tags = json!({ SOURCE_TAG: source_marker(&source_id), REQUEST_TAG: request });
    Ok(GeoRestorePlan {
        method: "PUT",
        url: arm.url(&target_id, &arm.cfg.api_version),
        body: json!({ "location": location, "tags": tags, "properties": properties }),
        source_id,
        source_location,
        target_id,
        location,
        databases,
        request,
    })
}

/// The source tag's value: the id lowercased (ids are case-insensitive), or
/// its SHA-256 when longer than a tag value may be (256 characters).
fn source_marker(source_id: &str) -> String {
    let id = source_id.to_ascii_lowercase();
    if id.len() <= 256 {
        id
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

/// A tag's value; tag names are case-insensitive in Azure.
fn tag<'a>(resource: &'a Value, name: &str) -> Option<&'a str> {
    resource["tags"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn configured<'a>(az: &'a Azure, name: &str) -> Option<&'a PostgresServer> {
    az.postgres_servers.iter().find(|s| s.name == name)
}

/// The paired region of `location`, from the subscription's locations.
pub fn paired_region(arm: &Arm, sub: &str, location: &str) -> Result<Option<String>> {
    let a = arm.get(&arm.url(&format!("/subscriptions/{sub}/locations"), LOCATIONS_API))?;
    if !a.ok() {
        return Err(Error::Check(format!(
            "listing locations: {}",
            a.error_text()
        )));
    }
    let want = region(location);
    Ok(a.body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"].as_str().map(region).as_deref() == Some(want.as_str()))
        .and_then(|l| l["metadata"]["pairedRegion"][0]["name"].as_str())
        .map(region))
}

/// Sends the PUT and follows it to a Ready server (or only sends it, with
/// `no_wait`).
pub fn execute(
    ctx: &Context,
    arm: &Arm,
    plan: &GeoRestorePlan,
    no_wait: bool,
) -> Result<GeoRestoreReport> {
    let t0 = Instant::now();
    info!(
        "PUT {} (geo-restore into {})",
        plan.target_id, plan.location
    );
    let (accepted, followed) = match create(ctx, arm, plan)? {
        Created::Accepted(a) => (Some(a), None),
        Created::Followed(note) => (None, Some(note)),
    };
    let mut report = GeoRestoreReport {
        target_id: plan.target_id.clone(),
        operation: accepted
            .as_ref()
            .and_then(|a| Operation::from_answer(arm, a)),
        accepted_secs: t0.elapsed().as_secs_f64(),
        followed,
        ..Default::default()
    };
    if let Some(a) = &accepted {
        info!(
            "accepted (HTTP {}) in {:.1} s",
            a.status, report.accepted_secs
        );
    }
    if no_wait {
        report.total_secs = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let first_delay = accepted.and_then(|a| a.retry_after);
    follow(ctx, arm, &mut report, first_delay, t0)?;
    Ok(report)
}

enum Created {
    Accepted(Answer),
    /// The answer was lost or refused, but the target is this geo-restore
    /// being created: why, in one line.
    Followed(String),
}

/// Sends the creating PUT, never twice blindly: a resent PUT of a restore
/// that was accepted gets 409 while the first one runs. Only a 429
/// (throttled: refused before anything was done) is sent again, after its
/// Retry-After. A lost answer, a 5xx (perhaps after the server was created)
/// and a 409 are settled by reading the target.
fn create(ctx: &Context, arm: &Arm, plan: &GeoRestorePlan) -> Result<Created> {
    let mut throttled = 0;
    loop {
        ctx.check_cancel()?;
        let why = match arm.put_once(&plan.url, &plan.body)? {
            Sent::Answered(a) if a.ok() => return Ok(Created::Accepted(a)),
            Sent::Answered(a) if a.status == 429 && throttled < arm.max_retries => {
                throttled += 1;
                info!(
                    "throttled ({}); sending again in {} s",
                    a.error_text(),
                    a.retry_after.unwrap_or(arm.cfg.poll_interval_secs)
                );
                lro::pause(arm, a.retry_after, &ctx.cancel)?;
                continue;
            }
            Sent::Answered(a) if a.status == 409 || a.status >= 500 => a.error_text(),
            Sent::Answered(a) => return Err(refused(plan, &a)),
            Sent::Lost(cause) => format!("no answer ({cause})"),
        };
        return settle(arm, plan, &why).map(Created::Followed);
    }
}

fn refused(plan: &GeoRestorePlan, a: &Answer) -> Error {
    let hint = if a.status == 403 {
        " (the identity lacks Microsoft.DBforPostgreSQL/flexibleServers/write on the target resource group)"
    } else {
        ""
    };
    Error::Check(format!(
        "geo-restore of {} refused: {}{hint}",
        plan.target_id,
        a.error_text()
    ))
}

/// After `why` (a 409, a 5xx or a lost answer), reads the target: when this
/// request made it, or it is a geo-restore of the same source still being
/// created, it is followed (the one line saying so is returned); anything
/// else is an error naming what is there. Nothing is sent again.
fn settle(arm: &Arm, plan: &GeoRestorePlan, why: &str) -> Result<String> {
    let why = why.trim_end_matches(['.', ' ']);
    let (_, rg, name) = split_id(&plan.target_id).unwrap_or_default();
    let src = name_of(&plan.source_id);
    let a = arm.get(&plan.url).map_err(|e| {
        Error::Check(format!(
            "geo-restore of {name}: {why}; reading {name} failed too ({e}): check with `{}` \
             before sending it again",
            resume_command(&plan.target_id, None)
        ))
    })?;
    if a.status == 404 && why.starts_with("HTTP 409") {
        return Err(Error::Check(format!(
            "geo-restore of {name} refused: {why} (there is no {name} in resource group {rg}; \
             server names are unique across Azure: choose another --target-name)"
        )));
    }
    if a.status == 404 {
        return Err(Error::Check(format!(
            "geo-restore of {name} failed: {why}; {name} does not exist, so nothing is being \
             created: run the same command again"
        )));
    }
    if !a.ok() {
        return Err(Error::Check(format!(
            "geo-restore of {name}: {why}; reading {name}: {}",
            a.error_text()
        )));
    }
    let state = a.body["properties"]["state"].as_str().unwrap_or("Unknown");
    let ours = tag(&a.body, REQUEST_TAG) == Some(plan.request.as_str());
    let same_source = tag(&a.body, SOURCE_TAG) == Some(source_marker(&plan.source_id).as_str());
    if ours || (same_source && state == "Provisioning") {
        let by = if ours { "this" } else { "an earlier" };
        let note = format!(
            "{why}, but {name} is being created by {by} geo-restore of {src} (state {state}): \
             following it as if the PUT had been answered"
        );
        warn!("{note}");
        return Ok(note);
    }
    let what = if same_source {
        let created = a.body["systemData"]["createdAt"].as_str().unwrap_or("?");
        format!("a geo-restore of {src} created {created}")
    } else {
        format!("not a geo-restore of {src} by valerix-backup")
    };
    Err(Error::Check(format!(
        "geo-restore of {name} refused: {why}: {name} already exists in resource group {rg} \
         (state {state}, {what}): choose another --target-name"
    )))
}

/// Resumes watching: an operation URL, or only the target server.
pub fn watch(
    ctx: &Context,
    arm: &Arm,
    target_id: &str,
    operation_url: Option<&str>,
) -> Result<GeoRestoreReport> {
    if let Some(url) = operation_url {
        // Before anything is sent: the token goes to the configured
        // endpoint only.
        arm.check_url(url)?;
    }
    let mut report = GeoRestoreReport {
        target_id: target_id.to_string(),
        operation: operation_url.map(|u| Operation {
            async_operation: u.contains("azureAsyncOperation").then(|| u.to_string()),
            location: (!u.contains("azureAsyncOperation")).then(|| u.to_string()),
        }),
        ..Default::default()
    };
    follow(ctx, arm, &mut report, Some(0), Instant::now())?;
    Ok(report)
}

fn follow(
    ctx: &Context,
    arm: &Arm,
    report: &mut GeoRestoreReport,
    first_delay: Option<u64>,
    t0: Instant,
) -> Result<()> {
    let deadline = Duration::from_secs(arm.cfg.timeout_minutes * 60);
    let resume = |op: Option<&Operation>| resume_command(&report.target_id, op);
    let interrupted = |e: Error, op: Option<&Operation>| match e {
        Error::Interrupted => {
            eprintln!(
                "valerix-backup: interrupted; the geo-restore goes on in Azure. Resume \
                 watching with:\n  {}",
                resume(op)
            );
            Error::Interrupted
        }
        Error::Check(msg) if msg.contains("has not finished") => {
            Error::Check(format!("{msg}; keep watching with `{}`", resume(op)))
        }
        e => e,
    };
    let spinner = ctx.progress.spinner("waiting for the geo-restore");
    if let Some(op) = report.operation.clone() {
        let t1 = Instant::now();
        let polls = lro::wait(arm, &op, first_delay, deadline, &ctx.cancel, |s| {
            spinner.set(format!(
                "operation {s} ({:.0} s)",
                t1.elapsed().as_secs_f64()
            ));
            info!("operation {s} ({:.0} s)", t1.elapsed().as_secs_f64());
        })
        .map_err(|e| interrupted(e, Some(&op)))?;
        report.operation_secs = t1.elapsed().as_secs_f64();
        info!(
            "operation Succeeded after {polls} poll(s), {:.1} s",
            report.operation_secs
        );
    }
    let t2 = Instant::now();
    let url = arm.url(&report.target_id, &arm.cfg.api_version);
    loop {
        let a = arm.get(&url)?;
        if !a.ok() {
            return Err(Error::Check(format!(
                "reading the new server: {}",
                a.error_text()
            )));
        }
        let state = a.body["properties"]["state"]
            .as_str()
            .unwrap_or("Unknown")
            .to_string();
        report.fqdn = a.body["properties"]["fullyQualifiedDomainName"]
            .as_str()
            .map(str::to_string);
        report.state = Some(state.clone());
        if state == "Ready" {
            break;
        }
        if t0.elapsed() > deadline {
            return Err(Error::Check(format!(
                "{} is still {state} after {} minutes",
                name_of(&report.target_id),
                deadline.as_secs() / 60
            )));
        }
        spinner.set(format!(
            "server {state} ({:.0} s)",
            t2.elapsed().as_secs_f64()
        ));
        info!("server {state}");
        lro::pause(arm, a.retry_after, &ctx.cancel).map_err(|e| interrupted(e, None))?;
    }
    report.ready_secs = t2.elapsed().as_secs_f64();
    report.total_secs = t0.elapsed().as_secs_f64();
    info!(
        "{} is Ready at {} ({:.1} s in all)",
        name_of(&report.target_id),
        report.fqdn.as_deref().unwrap_or("?"),
        report.total_secs
    );
    Ok(())
}

/// The command that resumes watching the geo-restore of `target_id`.
pub fn resume_command(target_id: &str, op: Option<&Operation>) -> String {
    let (_, rg, name) = split_id(target_id).unwrap_or_default();
    let url = op.map(|o| format!(" '{}'", o.url())).unwrap_or_default();
    format!(
        "valerix-backup geo-restore --watch{url} --target-name {name} --target-resource-group {rg}"
    )
}

fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// `kubectl set env deployment/<db>-service DB_HOST=<fqdn> -n <namespace>`,
/// one per database the server held (the seed's runbook).
pub fn k8s_commands(databases: &[String], fqdn: &str, namespace: &str) -> Vec<Vec<String>> {
    databases
        .iter()
        .map(|db| {
            vec![
                "kubectl".into(),
                "set".into(),
                "env".into(),
                format!("deployment/{db}-service"),
                format!("DB_HOST={fqdn}"),
                "-n".into(),
                namespace.into(),
            ]
        })
        .collect()
}

/// Runs the commands; the first failure stops and is named.
pub fn apply_k8s(commands: &[Vec<String>]) -> Result<()> {
    for c in commands {
        info!("running {}", c.join(" "));
        let out = std::process::Command::new(&c[0])
            .args(&c[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", c[0]), e))?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: c.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " "),
            });
        }
    }
    Ok(())
}

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
        Err(Error::Check(format!(
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
    let p = &a.body["properties"];
    c.found = true;
    c.state = p["state"].as_str().map(str::to_string);
    c.location = a.body["location"].as_str().map(region);
    c.backup_retention_days = p["backup"]["backupRetentionDays"].as_u64();
    c.earliest_restore_date = p["backup"]["earliestRestoreDate"]
        .as_str()
        .map(str::to_string);
    let geo = p["backup"]["geoRedundantBackup"]
        .as_str()
        .unwrap_or("Disabled");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_and_regions() {
        let id = server_id("s", "rg", "valerix-postgres");
        assert_eq!(
            id,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/valerix-postgres"
        );
        assert_eq!(
            split_id(&id),
            Some(("s".into(), "rg".into(), "valerix-postgres".into()))
        );
        assert!(split_id("/subscriptions/s/resourceGroups/rg").is_none());
        assert_eq!(region("West US"), "westus");
        assert!(server_name_ok("valerix-postgres-restored"));
        assert!(!server_name_ok("Valerix"));
        assert!(!server_name_ok("-x-"));
        let cmds = k8s_commands(&["order".into()], "h.example", "valerix");
        assert_eq!(
            cmds[0].join(" "),
            "kubectl set env deployment/order-service DB_HOST=h.example -n valerix"
        );
    }
}
