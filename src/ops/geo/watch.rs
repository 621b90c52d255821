//! Following a geo-restore to a Ready server: its long-running operation,
//! then the server's state. `geo-restore --watch` resumes here.

use std::time::{Duration, Instant};

use tracing::info;

use super::{GeoRestoreReport, name_of, split_id};
use crate::arm::Arm;
use crate::arm::lro::{self, Operation};
use crate::arm::resources::FlexibleServer;
use crate::error::{Error, Result};
use crate::ops::{Context, Observer};

/// Resumes watching: an operation URL, or only the target server.
pub fn watch(
    ctx: &Context,
    arm: &Arm,
    target_id: &str,
    operation_url: Option<&str>,
    obs: &dyn Observer,
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
    follow(ctx, arm, &mut report, Some(0), Instant::now(), obs)?;
    Ok(report)
}

pub(super) fn follow(
    ctx: &Context,
    arm: &Arm,
    report: &mut GeoRestoreReport,
    first_delay: Option<u64>,
    t0: Instant,
    obs: &dyn Observer,
) -> Result<()> {
    let deadline = Duration::from_secs(arm.cfg.timeout_minutes * 60);
    let resume = |op: Option<&Operation>| resume_command(&report.target_id, op);
    // An interrupt ends the wait with the command that resumes it in the
    // report; a timeout says how to keep watching.
    let stopped = |e: Error, op: Option<&Operation>| match e {
        Error::Interrupted => Ok(resume(op)),
        Error::Timeout(msg) => Err(Error::Timeout(format!(
            "{msg}; keep watching with `{}`",
            resume(op)
        ))),
        e => Err(e),
    };
    let spinner = obs.spinner("waiting for the geo-restore");
    if let Some(op) = report.operation.clone() {
        let t1 = Instant::now();
        let waited = lro::wait(arm, &op, first_delay, deadline, &ctx.cancel, |s| {
            spinner.set(format!(
                "operation {s} ({:.0} s)",
                t1.elapsed().as_secs_f64()
            ));
            info!("operation {s} ({:.0} s)", t1.elapsed().as_secs_f64());
        });
        let polls = match waited {
            Ok(polls) => polls,
            Err(e) => {
                report.resume = Some(stopped(e, Some(&op))?);
                return Ok(());
            }
        };
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
            return Err(a.refused("reading the new server"));
        }
        let server = FlexibleServer::from_body(&a.body);
        let state = server.state().unwrap_or("Unknown").to_string();
        report.fqdn = server.fqdn().map(str::to_string);
        report.state = Some(state.clone());
        if state == "Ready" {
            break;
        }
        if t0.elapsed() > deadline {
            return Err(Error::Timeout(format!(
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
        if let Err(e) = lro::pause(arm, a.retry_after, &ctx.cancel) {
            report.resume = Some(stopped(e, None)?);
            return Ok(());
        }
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
