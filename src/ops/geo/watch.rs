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
    let target_id = report.target_id.clone();
    let resume = |op: Option<&Operation>| resume_command(&target_id, op);
    let wait = Wait {
        target_id: &target_id,
        what: "the geo-restore",
        reading: "reading the new server",
        arrived: &|s: &FlexibleServer| s.state() == Some("Ready"),
        resume: &resume,
        op: report.operation.as_ref(),
        first_delay,
    };
    let got = wait_for(ctx, arm, &wait, t0, obs)?;
    report.operation_secs = got.operation_secs;
    report.ready_secs = got.ready_secs;
    report.total_secs = got.total_secs;
    report.state = got.state;
    report.fqdn = got.fqdn;
    report.resume = got.resume;
    Ok(())
}

/// What [`wait_for`] follows: an operation (if any), then a server until
/// `arrived` says it is where the request takes it.
pub(super) struct Wait<'a> {
    pub target_id: &'a str,
    /// "the geo-restore", for the spinner.
    pub what: &'a str,
    /// The context of a refused GET of the server.
    pub reading: &'a str,
    pub arrived: &'a dyn Fn(&FlexibleServer) -> bool,
    /// The command that resumes the wait after an interrupt.
    pub resume: &'a dyn Fn(Option<&Operation>) -> String,
    /// The operation to follow first, and the answer's Retry-After.
    pub op: Option<&'a Operation>,
    pub first_delay: Option<u64>,
}

/// What a wait saw: the step times, the server as last read, and, when the
/// wait was interrupted, the command that resumes it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Waited {
    pub operation_secs: f64,
    pub ready_secs: f64,
    pub total_secs: f64,
    pub state: Option<String>,
    pub fqdn: Option<String>,
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// Follows `op` to `Succeeded` (honouring Retry-After), then GETs the
/// server until it has arrived; `t0` is when the request was sent.
pub(super) fn wait_for(
    ctx: &Context,
    arm: &Arm,
    wait: &Wait,
    t0: Instant,
    obs: &dyn Observer,
) -> Result<Waited> {
    let deadline = Duration::from_secs(arm.cfg.timeout_minutes * 60);
    let mut got = Waited::default();
    // An interrupt ends the wait with the command that resumes it; a
    // timeout says how to keep watching.
    let stopped = |e: Error, op: Option<&Operation>| match e {
        Error::Interrupted => Ok((wait.resume)(op)),
        Error::Timeout(msg) => Err(Error::Timeout(format!(
            "{msg}; keep watching with `{}`",
            (wait.resume)(op)
        ))),
        e => Err(e),
    };
    let spinner = obs.spinner(&format!("waiting for {}", wait.what));
    if let Some(op) = wait.op {
        let t1 = Instant::now();
        let waited = lro::wait(arm, op, wait.first_delay, deadline, &ctx.cancel, |s| {
            spinner.set(format!(
                "operation {s} ({:.0} s)",
                t1.elapsed().as_secs_f64()
            ));
            info!("operation {s} ({:.0} s)", t1.elapsed().as_secs_f64());
        });
        let polls = match waited {
            Ok(polls) => polls,
            Err(e) => {
                got.resume = Some(stopped(e, Some(op))?);
                return Ok(got);
            }
        };
        got.operation_secs = t1.elapsed().as_secs_f64();
        info!(
            "operation Succeeded after {polls} poll(s), {:.1} s",
            got.operation_secs
        );
    }
    let t2 = Instant::now();
    let url = arm.url(wait.target_id, &arm.cfg.api_version);
    let name = name_of(wait.target_id);
    loop {
        let a = arm.get(&url)?;
        if !a.ok() {
            return Err(a.refused(wait.reading));
        }
        let server = FlexibleServer::from_body(&a.body);
        let state = server.state().unwrap_or("Unknown").to_string();
        got.fqdn = server.fqdn().map(str::to_string);
        got.role = server.replica_role().map(str::to_string);
        got.state = Some(state.clone());
        if (wait.arrived)(&server) {
            break;
        }
        if t0.elapsed() > deadline {
            return Err(Error::Timeout(format!(
                "{name} is still {state} after {} minutes",
                deadline.as_secs() / 60
            )));
        }
        spinner.set(format!(
            "server {state} ({:.0} s)",
            t2.elapsed().as_secs_f64()
        ));
        info!("server {state}");
        if let Err(e) = lro::pause(arm, a.retry_after, &ctx.cancel) {
            got.resume = Some(stopped(e, None)?);
            return Ok(got);
        }
    }
    got.ready_secs = t2.elapsed().as_secs_f64();
    got.total_secs = t0.elapsed().as_secs_f64();
    info!(
        "{name} is {} at {} ({:.1} s in all)",
        got.state.as_deref().unwrap_or("?"),
        got.fqdn.as_deref().unwrap_or("?"),
        got.total_secs
    );
    Ok(got)
}

/// The command that resumes watching the geo-restore of `target_id`.
pub fn resume_command(target_id: &str, op: Option<&Operation>) -> String {
    let (_, rg, name) = split_id(target_id).unwrap_or_default();
    let url = op.map(|o| format!(" '{}'", o.url())).unwrap_or_default();
    format!(
        "valerix-backup geo-restore --watch{url} --target-name {name} --target-resource-group {rg}"
    )
}
