//! Human-readable reports on stdout (JSON with --json). Logs and progress go
//! to stderr, so stdout stays clean for pipes and scripts.

use std::io::Write;

use serde::Serialize;
use valerix_backup::ops::audit::AuditReport;
use valerix_backup::ops::backup::{BackupReport, BackupRun};
use valerix_backup::ops::check::ConfigCheck;
use valerix_backup::ops::geo::drill::DrillReport;
use valerix_backup::ops::geo::{self, CheckReport, GeoRestorePlan, GeoRestoreReport};
use valerix_backup::ops::hold::HoldReport;
use valerix_backup::ops::inspect::{ListEntry, StatusReport};
use valerix_backup::ops::report;
use valerix_backup::ops::restore::RestoreReport;
use valerix_backup::ops::upload::UploadReport;
use valerix_backup::ops::verify::VerifyReport;
use valerix_backup::{Error, Result};

pub fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl Fn(&T) -> String,
) -> Result<()> {
    let text = render(json, value, human);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::io("writing to stdout", e)),
    }
}

/// What [`emit`] prints: pretty JSON, or the human lines.
pub fn render<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl Fn(&T) -> String,
) -> String {
    if json {
        serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
    } else {
        human(value)
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The backup's lines, then the upload's when there was one.
pub fn backup(run: &BackupRun) -> String {
    let upload = run.upload.as_ref().and_then(|u| u.report());
    local_backup(&run.backup) + &upload.map(self::upload).unwrap_or_default()
}

fn local_backup(r: &BackupReport) -> String {
    let mut s = format!("backup {}\n", r.timestamp);
    for d in &r.results {
        match (&d.manifest, &d.error) {
            (Some(m), None) => {
                let holds = match &m.config {
                    Some(c) => format!("{} files", c.files.len()),
                    None => format!("{} tables, {} rows", m.tables.len(), m.total_rows()),
                };
                s += &format!(
                    "  {:<16} ok      {:>10}  sha256 {}  {holds}  {:.1} s\n",
                    d.dbname,
                    human_bytes(m.size_bytes),
                    &m.sha256[..12],
                    m.duration_secs
                )
            }
            (_, Some(e)) => s += &format!("  {:<16} FAILED  {e}\n", d.dbname),
            _ => {}
        }
    }
    for p in &r.pruned {
        s += &format!("  retention removed {p}\n");
    }
    for w in &r.retention_warnings {
        s += &format!("  WARNING {w}\n");
    }
    for a in &r.size_anomalies {
        s += &format!("  WARNING {a}\n");
    }
    s
}

pub fn verify(r: &VerifyReport) -> String {
    let mut s = String::new();
    for d in &r.results {
        let file = d.file.as_deref().unwrap_or("-");
        match &d.error {
            None => {
                let holds = match d.files {
                    Some(n) => format!("{n} files"),
                    None => format!("{} tables, {} rows", d.tables, d.rows),
                };
                s += &format!(
                    "{:<16} ok      {file}  {holds}, read {:.1} s",
                    d.database, d.read_secs
                );
                if let Some(t) = d.restore_secs {
                    s += &format!(", restore+count {t:.1} s (RTO evidence)");
                }
                s += "\n";
                if let Some(why) = &d.unchecked {
                    s += &format!("{:<16} note    {why}\n", "");
                }
            }
            Some(e) => s += &format!("{:<16} FAILED  {e}\n", d.database),
        }
    }
    s
}

pub fn restore(r: &RestoreReport) -> String {
    let mut s = String::new();
    for d in &r.results {
        match &d.error {
            None => {
                s += &format!(
                    "{:<16} restored into {}  {} tables, {} rows  (verify {:.1} s, load {:.1} s, swap {:.2} s, total {:.1} s)\n",
                    d.database,
                    d.target,
                    d.tables,
                    d.rows,
                    d.verify_secs,
                    d.restore_secs,
                    d.swap_secs,
                    d.total_secs
                );
                if let Some(old) = &d.kept_old {
                    s += &format!("{:<16} previous database kept as {old}\n", "");
                }
            }
            Some(e) => s += &format!("{:<16} FAILED (live database untouched)  {e}\n", d.database),
        }
    }
    s
}

pub fn list(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "no backups\n".into();
    }
    let offsite = entries.iter().any(|e| e.offsite.is_some());
    let encrypted = entries.iter().any(|e| e.encrypted_to.is_some());
    let tiers: Vec<String> = entries.iter().map(offsite_column).collect();
    // OFFSITE is as wide as its widest cell (protection marks are long).
    let width = tiers.iter().map(|t| t.len()).chain([7]).max().unwrap_or(7);
    let row = |c: [&str; 8]| {
        let mut line = format!(
            "{:<16} {:<16} {:>10}  {:<13} {:<12} {:>10}",
            c[0], c[1], c[2], c[3], c[4], c[5]
        );
        if offsite {
            line += &format!("  {:<width$}", c[6]);
        }
        if encrypted {
            line += &format!("  {}", c[7]);
        }
        line.trim_end().to_string() + "\n"
    };
    let mut s = row([
        "TIMESTAMP",
        "DATABASE",
        "SIZE",
        "STATE",
        "SHA256",
        "ROWS",
        "OFFSITE",
        "ENCRYPTED TO",
    ]);
    for (e, tiers) in entries.iter().zip(&tiers) {
        s += &row([
            &e.timestamp.to_string(),
            &e.dbname,
            &human_bytes(e.size_bytes),
            &e.state.to_string(),
            e.sha256.as_deref().map_or("-", |h| &h[..12]),
            &e.rows.map_or("-".to_string(), |r| r.to_string()),
            tiers,
            &encrypted_to(e),
        ]);
    }
    s
}

/// The tiers holding a copy, each with what protects it; `-` for none.
fn offsite_column(e: &ListEntry) -> String {
    let tiers: Vec<String> = e
        .offsite
        .iter()
        .flatten()
        .map(|t| tier_with_protection(*t, e))
        .collect();
    if tiers.is_empty() {
        "-".to_string()
    } else {
        tiers.join(",")
    }
}

/// The recipients of an encrypted backup, each key shortened (the whole
/// keys are in `--json`).
fn encrypted_to(e: &ListEntry) -> String {
    match &e.encrypted_to {
        None => "-".into(),
        Some(keys) if keys.is_empty() => "age (recipients unknown)".into(),
        Some(keys) => {
            let short: Vec<String> = keys
                .iter()
                .map(|k| format!("{}...", &k[..k.len().min(16)]))
                .collect();
            short.join(",")
        }
    }
}

/// `weekly`, or `weekly(hold)`, `weekly(locked to 2027-03-01)`,
/// `weekly(unlocked to ...)` for a protected copy.
fn tier_with_protection(t: valerix_backup::offsite::Tier, e: &ListEntry) -> String {
    let Some(p) = e.protected.iter().find(|p| p.tier == t) else {
        return t.to_string();
    };
    let mut marks = Vec::new();
    if p.protection.legal_hold {
        marks.push("hold".to_string());
    }
    if let Some(pol) = p.protection.policy {
        let until = pol.until.format("%Y-%m-%d");
        marks.push(if pol.until > chrono::Utc::now() {
            format!("{} to {until}", pol.mode.as_str())
        } else {
            format!("expired {until}")
        });
    }
    format!("{t}({})", marks.join(", "))
}

pub fn upload(r: &UploadReport) -> String {
    let mut s = format!("upload to {}\n", r.container);
    for u in &r.results {
        s += &format!(
            "  {:<40} {:<7} {:<9} {:>10}  {:.1} s{}\n",
            u.file,
            u.tier,
            u.status,
            human_bytes(u.bytes),
            u.secs,
            u.error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default()
        );
    }
    if !r.reports.is_empty() {
        s += &format!("  copied {} post-mortem record file(s)\n", r.reports.len());
    }
    s
}

pub fn audit(r: &AuditReport) -> String {
    let mut s = format!("audit of {} ({} blobs listed", r.container, r.blobs_listed);
    if r.deep_checked + r.deep_skipped > 0 {
        s += &format!(
            "; re-hashed {}, {} proven earlier",
            r.deep_checked, r.deep_skipped
        );
    }
    s += ")\n";
    s += &format!(
        "{:<16} {:>6} {:>6} {:>10}  {:<16} {:<16}\n",
        "DATABASE", "DAILY", "WEEKLY", "SIZE", "NEWEST DAILY", "NEWEST WEEKLY"
    );
    let stamp = |t: Option<valerix_backup::catalog::Stamp>| t.map_or("-".into(), |t| t.to_string());
    for d in &r.databases {
        s += &format!(
            "{:<16} {:>6} {:>6} {:>10}  {:<16} {:<16}\n",
            d.dbname,
            d.daily,
            d.weekly,
            human_bytes(d.bytes),
            stamp(d.newest_daily),
            stamp(d.newest_weekly)
        );
    }
    for d in r.databases.iter().filter(|d| !d.immutability.is_empty()) {
        let i = &d.immutability;
        s += &format!(
            "{}: {} cop{} protected ({} under a legal hold); {} previous version(s), {}\n",
            d.dbname,
            i.protected,
            if i.protected == 1 { "y" } else { "ies" },
            i.held,
            i.previous_versions,
            human_bytes(i.previous_version_bytes)
        );
    }
    if r.findings.is_empty() {
        s += "no problems found\n";
    }
    for f in &r.findings {
        let kind = serde_json::to_value(f.kind).expect("kinds serialize");
        s += &format!(
            "  {:<16} {:<16} {}{}\n",
            kind.as_str().unwrap_or("?"),
            f.database,
            f.blob
                .as_deref()
                .map(|b| format!("{b}: "))
                .unwrap_or_default(),
            f.detail
        );
    }
    s
}

pub fn status(r: &StatusReport) -> String {
    let mut s = String::new();
    for d in &r.databases {
        let newest = d.newest.map_or("-".to_string(), |t| t.to_string());
        match &d.problem {
            None => {
                s += &format!(
                    "{:<16} ok       newest {newest} ({} backups)\n",
                    d.dbname, d.backups
                )
            }
            Some(p) if d.refuses_connections => s += &format!("{:<16} LOCKED   {p}\n", d.dbname),
            Some(p) => s += &format!("{:<16} MISSING  {p} (newest {newest})\n", d.dbname),
        }
    }
    for j in &r.interrupted {
        s += &format!(
            "INTERRUPTED  {j}: a run died half-way; the next `valerix-backup backup` settles it\n"
        );
    }
    s
}

pub fn hold(r: &HoldReport) -> String {
    let verb = if r.legal_hold {
        "set on"
    } else {
        "cleared from"
    };
    r.blobs
        .iter()
        .map(|b| format!("legal hold {verb} {}\n", b.blob))
        .collect()
}

pub fn reports(all: &[report::Summary]) -> String {
    if all.is_empty() {
        return "no post-mortem records\n".into();
    }
    let mut s = format!(
        "{:<32} {:<12} {:<11} {:>8}  {:<24} INTO\n",
        "RECORD", "KIND", "OUTCOME", "SECONDS", "BY"
    );
    for r in all {
        s += &format!(
            "{:<32} {:<12} {:<11} {:>8.1}  {:<24} {}\n",
            r.name,
            r.kind.as_str(),
            r.outcome.as_str(),
            r.total_secs,
            r.operator,
            r.targets.join(", ")
        );
    }
    s
}

pub fn prune(removed: &[String], dry_run: bool) -> String {
    let verb = if dry_run { "would remove" } else { "removed" };
    if removed.is_empty() {
        return "nothing past retention\n".into();
    }
    removed.iter().map(|f| format!("{verb} {f}\n")).collect()
}

pub fn geo_plan(p: &GeoRestorePlan) -> String {
    format!(
        "dry run: nothing was sent\n{} {}\n{}\n",
        p.method,
        p.url,
        serde_json::to_string_pretty(&p.body).expect("JSON values serialize")
    )
}

pub fn geo_report(r: &GeoRestoreReport) -> String {
    let mut s = format!("geo-restore {}\n", r.target_id);
    match (&r.state, &r.operation) {
        (Some(state), _) => {
            s += &format!(
                "  state {state}, FQDN {}\n",
                r.fqdn.as_deref().unwrap_or("-")
            );
            s += &step_times([
                r.accepted_secs,
                r.operation_secs,
                r.ready_secs,
                r.total_secs,
            ]);
        }
        (None, Some(op)) => {
            s += &not_waiting(
                r.accepted_secs,
                &geo::resume_command(&r.target_id, Some(op)),
            )
        }
        (None, None) => s += "  accepted\n",
    }
    s + &kubectl_lines(&r.k8s_commands, r.k8s_applied, "new")
}

/// `  accepted in 0.3 s, operation 95.2 s, ready 1.1 s, total 96.9 s`.
fn step_times([accepted, operation, ready, total]: [f64; 4]) -> String {
    format!(
        "  accepted in {accepted:.1} s, operation {operation:.1} s, ready {ready:.1} s, total {total:.1} s\n"
    )
}

fn not_waiting(accepted: f64, watch: &str) -> String {
    format!("  accepted in {accepted:.1} s; not waiting. Watch it with:\n    {watch}\n")
}

/// The kubectl commands that point the services at the `which` server:
/// run, or to run.
fn kubectl_lines(commands: &[Vec<String>], applied: bool, which: &str) -> String {
    if commands.is_empty() {
        return String::new();
    }
    let mut s = if applied {
        format!("services pointed at the {which} server:\n")
    } else {
        format!(
            "next: point the services at the {which} server (or rerun with --update-k8s NAMESPACE):\n"
        )
    };
    for c in commands {
        s += &format!("  {}\n", c.join(" "));
    }
    s
}

pub fn azure_check(r: &CheckReport) -> String {
    let mut s = String::new();
    for c in &r.servers {
        let verdict = if c.problems.is_empty() {
            "ok"
        } else {
            "NOT RESTORABLE"
        };
        s += &format!("{:<28} {verdict}\n", c.name);
        if c.found {
            s += &format!(
                "  location {}, paired region {}, state {}\n  backup retention {} days, geo-redundant backup {}, earliest restore {}\n",
                c.location.as_deref().unwrap_or("-"),
                c.paired_region.as_deref().unwrap_or("-"),
                c.state.as_deref().unwrap_or("-"),
                c.backup_retention_days
                    .map_or("-".into(), |d| d.to_string()),
                if c.geo_redundant_backup == Some(true) {
                    "enabled"
                } else {
                    "DISABLED"
                },
                c.earliest_restore_date.as_deref().unwrap_or("-")
            );
        }
        s += &replica_lines(c);
        for p in &c.problems {
            s += &format!("  problem: {p}\n");
        }
        for w in &c.warnings {
            s += &format!("  warning: {w}\n");
        }
    }
    if let Some(st) = &r.storage {
        let on = |b: Option<bool>| match b {
            Some(true) => "on",
            Some(false) => "OFF",
            None => "unknown",
        };
        let verdict = if st.problems.is_empty() {
            "ok"
        } else {
            "CANNOT KEEP IMMUTABLE COPIES"
        };
        s += &format!(
            "container {} (account {}) {verdict}\n  blob versioning {}, version-level immutability {}\n",
            st.container,
            st.account,
            on(st.versioning),
            on(st.version_level_immutability)
        );
        for p in &st.problems {
            s += &format!("  problem: {p}\n");
        }
    }
    s
}

pub fn config_check(r: &ConfigCheck) -> String {
    let mut s = format!("config {}\n", r.config);
    for i in &r.items {
        s += &format!(
            "  {:<4} {:<40} {}\n",
            if i.ok { "ok" } else { "FAIL" },
            i.what,
            i.detail
        );
    }
    s
}

/// `drill region`: each step's seconds, the smoke check, what is left.
pub fn drill_region(r: &DrillReport) -> String {
    let mut s = format!("drill region: {} into {}\n", r.source_id, r.target_id);
    for l in &r.left_behind {
        s += &format!(
            "  left behind by an earlier drill, deleted first: {} ({:.1} s)\n",
            l.name, l.secs
        );
    }
    for (step, secs) in r.steps.list() {
        s += &format!("  {step:<10} {secs:>8.1} s\n");
    }
    let rows: u64 = r.tables.iter().filter_map(|t| t.found).sum();
    let bad = r
        .tables
        .iter()
        .filter(|t| t.found.is_none_or(|n| n < t.expected))
        .count();
    if !r.tables.is_empty() {
        s += &format!(
            "  smoke check: {} tables, {rows} rows, {bad} short or missing\n",
            r.tables.len()
        );
    }
    if let Some(ok) = r.smoke_query {
        s += &format!("  smoke_query: {}\n", if ok { "true" } else { "NOT true" });
    }
    s += &match (r.deleted, r.kept) {
        (true, _) => format!("  {} deleted\n", r.name()),
        (false, true) => format!(
            "  {} kept (--keep): delete it when done, it costs money\n",
            r.name()
        ),
        (false, false) => format!("  {} NOT deleted: delete it by hand\n", r.name()),
    };
    s += &match &r.error {
        Some(e) => format!("FAILED: {e}\n"),
        None => format!(
            "ok: measured RTO of the region scenario {:.1} s (preflight to a checked server)\n",
            r.rto_secs
        ),
    };
    s
}

#[cfg(test)]
mod tests;

/// `restore-config`: every file written, then where.
pub fn restore_config(r: &valerix_backup::ops::config_backup::RestoreConfigReport) -> String {
    let mut s = String::new();
    for f in &r.files {
        s += &format!(
            "wrote {}  {} {}\n",
            f.path.display(),
            f.mode,
            human_bytes(f.size)
        );
    }
    s + &format!(
        "restored {} file(s) of {} (sha256 {}) into {}\n",
        r.files.len(),
        r.archive,
        &r.sha256[..12],
        r.into.display()
    )
}

/// The preflight of `failover --dry-run`: the replicas, then the request.
pub fn failover_plan(p: &geo::FailoverPlan) -> String {
    let mut s = format!("dry run: nothing was sent\nprimary {}\n", p.primary_id);
    s += &failover_replicas(&p.replicas);
    s += &match &p.writer_endpoint {
        Some(w) => format!("virtual endpoints: writer {w}\n"),
        None if p.virtual_endpoints.is_empty() => "virtual endpoints: none\n".into(),
        None => format!("virtual endpoints: {}\n", p.virtual_endpoints.join(", ")),
    };
    s += &format!(
        "{} {}\n{}\n",
        p.method,
        p.url,
        serde_json::to_string_pretty(&p.body).expect("JSON values serialize")
    );
    s
}

fn failover_replicas(replicas: &[geo::failover::ReplicaInfo]) -> String {
    if replicas.is_empty() {
        return "replicas: not listed\n".into();
    }
    let mut s = String::from("replicas:\n");
    for r in replicas {
        s += &format!("  {:<28} {}\n", r.name, r.describe());
    }
    s
}

pub fn failover_report(r: &geo::FailoverReport) -> String {
    let mut s = format!("failover to {}\n", r.replica_id);
    let w = &r.waited;
    match (&w.state, &r.operation) {
        (Some(state), _) => {
            s += &format!(
                "  state {state}, role {}, FQDN {}\n",
                w.role.as_deref().unwrap_or("-"),
                w.fqdn.as_deref().unwrap_or("-")
            );
            s += &step_times([
                r.accepted_secs,
                w.operation_secs,
                w.ready_secs,
                w.total_secs,
            ]);
        }
        (None, Some(_)) => {
            s += &not_waiting(
                r.accepted_secs,
                &geo::failover::follow_command(&r.replica_id),
            )
        }
        (None, None) => s += "  accepted\n",
    }
    if let Some(note) = &r.repoint {
        s += &format!("{note}\n");
    }
    s + &kubectl_lines(&r.k8s_commands, r.k8s_applied, "promoted")
}

/// azure-check's lines on the replicas and the recovery point of each path.
fn replica_lines(c: &geo::ServerCheck) -> String {
    let mut s = String::new();
    let remote: Vec<_> = c
        .replicas
        .iter()
        .filter(|r| r.location.is_some() && r.location != c.location)
        .collect();
    match (c.cross_region_replica, remote.as_slice()) {
        (None, _) => {
            if let Some(why) = &c.replicas_unread {
                s += &format!("  replicas: cannot list them ({why})\n");
            }
        }
        (Some(false), _) | (_, []) => {
            s += "  no cross-region read replica: a region failure means a geo-restore\n";
        }
        (Some(true), remote) => {
            for r in remote {
                s += &format!("  cross-region replica {}: {}\n", r.name, r.describe());
            }
        }
    }
    for p in &c.recovery_paths {
        let how = if p.available { "" } else { ", not available" };
        s += &format!("  RPO of {}: {}{how}\n", p.path, p.rpo);
    }
    s
}
