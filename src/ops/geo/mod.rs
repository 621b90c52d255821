//! Region failure, one file per command: `geo-restore` ([`restore`]: the
//! preflight, the creating PUT; [`mod@watch`]: following it to a Ready server,
//! also `--watch`; [`kubectl`]: pointing the services at it) and
//! `azure-check` ([`azure_check`]: the preflight a team runs months
//! before) and `failover` ([`failover`]: promote a cross-region read
//! replica instead of restoring). `lifecycle-policy --apply` is in [`crate::offsite::policy`]; the
//! Resource Manager resources are typed in [`crate::arm::resources`].

pub mod azure_check;
pub mod failover;
pub mod kubectl;
pub mod restore;
pub mod watch;

pub use azure_check::{CheckReport, ServerCheck, check};
pub use failover::{FailoverPlan, FailoverReport, FailoverRequest, PromoteMode, PromoteOption};
pub use kubectl::{apply_k8s, k8s_commands, point_services};
pub use restore::{GeoRestorePlan, GeoRestoreRequest, execute, plan};
pub use watch::{Waited, resume_command, watch};

use serde::Serialize;

use crate::arm::lro::{self, Operation};
use crate::arm::{Arm, Sent};
use crate::ops::Context;
use crate::ops::report;

const PROVIDER: &str = "Microsoft.DBforPostgreSQL/flexibleServers";

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
    /// Set when the wait was interrupted (the geo-restore goes on in
    /// Azure): the command that resumes watching. The binary prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

impl GeoRestoreReport {
    /// `Interrupted` when the wait was; the report says how to resume.
    pub fn outcome(&self) -> crate::error::Result<()> {
        match self.resume {
            Some(_) => Err(crate::error::Error::Interrupted),
            None => Ok(()),
        }
    }

    /// The new server is up: what the services can be pointed at.
    pub fn ready_fqdn(&self) -> Option<&str> {
        self.fqdn
            .as_deref()
            .filter(|_| self.state.as_deref() == Some("Ready"))
    }
}

/// Fills the post-mortem record of a geo-restore (`plan` is `None` when
/// only watching one): the source and point in time, each step's time,
/// and how to undo it.
pub fn record(rec: &mut report::Record, plan: Option<&GeoRestorePlan>, report: &GeoRestoreReport) {
    if let Some(p) = plan {
        let at = p.body["properties"]["pointInTimeUTC"].as_str();
        rec.source(report::Source {
            of: p.source_id.clone(),
            backup_time: at.and_then(|t| t.parse().ok()),
            ..Default::default()
        });
        rec.kept(format!("{} (the source server, untouched)", p.source_id));
    }
    rec.target(report.target_id.clone());
    rec.step(
        "request accepted",
        report.accepted_secs,
        report.followed.as_deref(),
    );
    if report.operation_secs > 0.0 {
        rec.step("operation succeeded", report.operation_secs, None);
    }
    if let Some(fqdn) = report.ready_fqdn() {
        rec.step("server ready", report.ready_secs, Some(fqdn));
    }
    if report.k8s_applied {
        rec.step("services pointed at it", 0.0, None);
    }
    let (sub, rg, name) = split_id(&report.target_id).unwrap_or_default();
    rec.undo(
        "point the services back at the source server once its region is back \
         (kubectl set env deployment/<db>-service DB_HOST=<source FQDN>)",
    );
    rec.undo(format!(
        "then delete the new server: az postgres flexible-server delete --subscription {sub} \
         --resource-group {rg} --name {name}"
    ));
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

pub(crate) fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// An accepted write's operation (on the configured endpoint only) and
/// the seconds since `t0`, logged.
pub(super) fn accepted_at(
    arm: &Arm,
    accepted: Option<&crate::arm::Answer>,
    t0: std::time::Instant,
) -> (Option<Operation>, f64) {
    let secs = t0.elapsed().as_secs_f64();
    let op = accepted.and_then(|a| Operation::from_answer(arm, a));
    if let Some(a) = accepted {
        tracing::info!("accepted (HTTP {}) in {secs:.1} s", a.status);
    }
    (op, secs)
}

/// Sends a write that must not be repeated blindly (`send`: a `*_once`
/// of [`Arm`]), once; only a 429 (refused before anything was done) is
/// sent again, after its Retry-After, up to `max_retries` times. What came
/// back last is returned, whatever it is.
pub(super) fn send_throttled(
    ctx: &Context,
    arm: &Arm,
    send: impl Fn() -> crate::error::Result<Sent>,
) -> crate::error::Result<Sent> {
    let mut throttled = 0;
    loop {
        ctx.check_cancel()?;
        match send()? {
            Sent::Answered(a) if a.status == 429 && throttled < arm.max_retries => {
                throttled += 1;
                tracing::info!(
                    "throttled ({}); sending again in {} s",
                    a.error_text(),
                    a.retry_after.unwrap_or(arm.cfg.poll_interval_secs)
                );
                lro::pause(arm, a.retry_after, &ctx.cancel)?;
            }
            sent => return Ok(sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids() {
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
        assert_eq!(name_of(&id), "valerix-postgres");
    }
}
