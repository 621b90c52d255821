//! `geo-restore`: the preflight and the creating PUT (followed by
//! [`mod@super::watch`], then [`super::kubectl`]).
//!
//! Step by step (each logged with its duration):
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
//! An interrupt while waiting returns how to resume (`--watch`) in the
//! report.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::watch::{follow, resume_command};
use super::{GeoRestoreReport, accepted_at, name_of, send_throttled, server_id, split_id};
use crate::arm::resources::{FlexibleServer, paired_region, region};
use crate::arm::{Answer, Arm, Sent};
use crate::azure::{kind_of_status, of_kind};
use crate::config::{Azure, PostgresServer};
use crate::error::{Error, Result};
use crate::ops::upload::azure;
use crate::ops::{Context, Observer};

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
            let server = FlexibleServer::from_body(&source.body);
            let geo = server.geo_redundant_backup();
            if !geo.eq_ignore_ascii_case("Enabled") {
                return Err(Error::Refused(format!(
                    "{source_name} has geo-redundant backup {geo}: a geo-restore is not \
                     possible (it can only be enabled when a server is created); nothing \
                     was sent"
                )));
            }
            server.location.as_deref().map(region)
        }
        404 => {
            return Err(Error::NotFound(format!(
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
            return Err(of_kind(
                kind_of_status(source.status),
                format!(
                    "cannot read the source server ({}); name the target region with \
                     --location",
                    source.error_text()
                ),
            ));
        }
    };
    let location = match (&req.location, &source_location) {
        (Some(l), _) => region(l),
        (None, Some(src)) => paired_region(arm, &sub, src)?.ok_or_else(|| {
            Error::NotFound(format!(
                "{src} has no paired region in this subscription's locations; name one with \
                 --location"
            ))
        })?,
        (None, None) => {
            return Err(Error::NotFound(
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

pub(super) fn configured<'a>(az: &'a Azure, name: &str) -> Option<&'a PostgresServer> {
    az.postgres_servers.iter().find(|s| s.name == name)
}

/// Sends the PUT and follows it to a Ready server (or only sends it, with
/// `no_wait`).
pub fn execute(
    ctx: &Context,
    arm: &Arm,
    plan: &GeoRestorePlan,
    no_wait: bool,
    obs: &dyn Observer,
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
    let (operation, accepted_secs) = accepted_at(arm, accepted.as_ref(), t0);
    let mut report = GeoRestoreReport {
        target_id: plan.target_id.clone(),
        operation,
        accepted_secs,
        followed,
        ..Default::default()
    };
    if no_wait {
        report.total_secs = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let first_delay = accepted.and_then(|a| a.retry_after);
    follow(ctx, arm, &mut report, first_delay, t0, obs)?;
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
    let why = match send_throttled(ctx, arm, || arm.put_once(&plan.url, &plan.body))? {
        Sent::Answered(a) if a.ok() => return Ok(Created::Accepted(a)),
        Sent::Answered(a) if a.status == 409 || a.status >= 500 => a.error_text(),
        Sent::Answered(a) => return Err(refused(plan, &a)),
        Sent::Lost(cause) => format!("no answer ({cause})"),
    };
    settle(arm, plan, &why).map(Created::Followed)
}

fn refused(plan: &GeoRestorePlan, a: &Answer) -> Error {
    let hint = if a.status == 403 {
        " (the identity lacks Microsoft.DBforPostgreSQL/flexibleServers/write on the target resource group)"
    } else {
        ""
    };
    // A 403 is the identity's, a 429 past the retries a throttle.
    of_kind(
        kind_of_status(a.status),
        format!(
            "geo-restore of {} refused: {}{hint}",
            plan.target_id,
            a.error_text()
        ),
    )
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
        of_kind(
            e.kind(),
            format!(
                "geo-restore of {name}: {why}; reading {name} failed too ({e}): check with \
                 `{}` before sending it again",
                resume_command(&plan.target_id, None)
            ),
        )
    })?;
    if a.status == 404 && why.starts_with("HTTP 409") {
        return Err(Error::Conflict(format!(
            "geo-restore of {name} refused: {why} (there is no {name} in resource group {rg}; \
             server names are unique across Azure: choose another --target-name)"
        )));
    }
    if a.status == 404 {
        return Err(Error::OperationFailed(format!(
            "geo-restore of {name} failed: {why}; {name} does not exist, so nothing is being \
             created: run the same command again"
        )));
    }
    if !a.ok() {
        return Err(a.refused(&format!("geo-restore of {name}: {why}; reading {name}")));
    }
    let server = FlexibleServer::from_body(&a.body);
    let state = server.state().unwrap_or("Unknown");
    let ours = server.tag(REQUEST_TAG) == Some(plan.request.as_str());
    let same_source = server.tag(SOURCE_TAG) == Some(source_marker(&plan.source_id).as_str());
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
        let created = server.created_at().unwrap_or("?");
        format!("a geo-restore of {src} created {created}")
    } else {
        format!("not a geo-restore of {src} by valerix-backup")
    };
    Err(Error::Conflict(format!(
        "geo-restore of {name} refused: {why}: {name} already exists in resource group {rg} \
         (state {state}, {what}): choose another --target-name"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_regions() {
        assert_eq!(region("West US"), "westus");
        assert!(server_name_ok("valerix-postgres-restored"));
        assert!(!server_name_ok("Valerix"));
        assert!(!server_name_ok("-x-"));
    }
}
