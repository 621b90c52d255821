//! `drill region`: the region scenario rehearsed. Geo-restores the
//! configured flexible server into a throwaway server in the paired region
//! (the same [`super::plan`] and [`super::execute`] as `geo-restore`),
//! connects to it and checks it against the newest local backups'
//! manifests, then deletes it, whatever happened, unless told to keep it.
//! Every step is timed: together they are the measured RTO of a region
//! failure.
//!
//! The throwaway server is tagged `valerix-backup-drill-of = <source id>`
//! when it is created. Only a server named as this tool names drill
//! servers *and* carrying that tag is ever deleted (by this run, or by a
//! later one when this one was killed); anything else is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::restore::{REQUEST_TAG, configured, source_marker};
use super::{GeoRestorePlan, GeoRestoreRequest, execute, name_of, plan, split_id};
use crate::arm::lro::{self, Operation};
use crate::arm::resources::FlexibleServer;
use crate::arm::{Answer, Arm};
use crate::catalog::Catalog;
use crate::config::{Database, DrillConfig};
use crate::error::{Error, Result};
use crate::ops::upload::azure;
use crate::ops::{Context, Observer, report};
use crate::pg::tools::{ident, literal};

/// The tag that marks a drill server: the (lowercased) id of the server it
/// is a drill of.
pub const DRILL_TAG: &str = "valerix-backup-drill-of";
const DRILL_INFIX: &str = "-drill-";
const MAX_NAME: usize = 63;

#[derive(Debug, Clone, Default)]
pub struct DrillRequest {
    /// A configured `[[azure.postgres_server]]` name (default:
    /// `[drill] source`, else the first configured server).
    pub source: Option<String>,
    /// Default: `<source>-drill-<YYYYMMDD>` (UTC).
    pub target: Option<String>,
    /// Leave the drill server running (and paid for).
    pub keep: bool,
}

/// Seconds of each step; `None`: the step did not run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillSteps {
    /// Reading the source server and the paired region.
    pub preflight: Option<f64>,
    /// The creating PUT, until it was accepted.
    pub accepted: Option<f64>,
    /// The geo-restore's long-running operation.
    pub operation: Option<f64>,
    /// From the operation's end to the server being Ready.
    pub ready: Option<f64>,
    /// The first connection to the drill server.
    pub connect: Option<f64>,
    /// Tables and row counts (and `smoke_query`).
    pub smoke: Option<f64>,
    /// DELETE of the drill server, followed to its end.
    pub delete: Option<f64>,
    pub total: f64,
}

impl DrillSteps {
    /// The steps of a recovery: all but `delete` (and `total`).
    pub fn rto(&self) -> f64 {
        [
            self.preflight,
            self.accepted,
            self.operation,
            self.ready,
            self.connect,
            self.smoke,
        ]
        .into_iter()
        .flatten()
        .sum()
    }

    /// `(name, seconds)` of the steps that ran, in order.
    pub fn list(&self) -> Vec<(&'static str, f64)> {
        [
            ("preflight", self.preflight),
            ("accepted", self.accepted),
            ("operation", self.operation),
            ("ready", self.ready),
            ("connect", self.connect),
            ("smoke", self.smoke),
            ("delete", self.delete),
            ("total", Some(self.total)),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect()
    }
}

/// One table of a backup's manifest, as found on the drill server.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub database: String,
    pub table: String,
    /// Rows in the manifest of the newest local backup.
    pub expected: u64,
    /// Rows on the drill server; `None`: the table is missing.
    pub found: Option<u64>,
}

impl TableCheck {
    fn problem(&self) -> Option<String> {
        match self.found {
            None => Some(format!(
                "{}: table {} is missing",
                self.database, self.table
            )),
            Some(n) if n < self.expected => Some(format!(
                "{}: table {} has {n} rows, the backup had {}",
                self.database, self.table, self.expected
            )),
            Some(_) => None,
        }
    }
}

/// A drill server deleted before this drill (a run that was killed).
#[derive(Debug, Clone, Serialize)]
pub struct LeftBehind {
    pub name: String,
    pub secs: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct DrillReport {
    pub source_id: String,
    pub target_id: String,
    pub location: String,
    pub fqdn: Option<String>,
    /// The backups the drill server was checked against, per database.
    pub backups: BTreeMap<String, String>,
    pub tables: Vec<TableCheck>,
    /// `smoke_query`'s verdict, when one is configured and ran.
    pub smoke_query: Option<bool>,
    pub left_behind: Vec<LeftBehind>,
    /// Whether the drill server is gone at the end.
    pub deleted: bool,
    pub kept: bool,
    pub steps: DrillSteps,
    /// Preflight to a checked server (the steps before `delete`): how long
    /// the region scenario takes, measured.
    pub rto_secs: f64,
    /// The first failure, in one line; the report is complete all the same.
    pub error: Option<String>,
    /// `error`, typed (its exit status); taken by [`DrillReport::into_outcome`].
    #[serde(skip)]
    pub failure: Option<Error>,
}

impl DrillReport {
    /// The drill's outcome: its first failure, if any.
    pub fn into_outcome(self) -> Result<()> {
        self.failure.map_or(Ok(()), Err)
    }

    pub fn name(&self) -> &str {
        name_of(&self.target_id)
    }

    fn failed(&mut self, e: Error) {
        warn!("drill: {e}");
        if self.failure.is_none() {
            self.error = Some(e.to_string());
            self.failure = Some(e);
        }
    }
}

/// `<source>-drill-<YYYYMMDD>`, the source cut so the whole stays a valid
/// server name (63 characters, no '-' before the infix).
pub fn default_name(source: &str, day: NaiveDate) -> String {
    format!("{}{}", prefix(source), day.format("%Y%m%d"))
}

/// `<source, cut>-drill-`: what every drill server of `source` starts with.
fn prefix(source: &str) -> String {
    let keep = MAX_NAME - DRILL_INFIX.len() - 8;
    let cut = &source[..source.len().min(keep)];
    format!("{}{DRILL_INFIX}", cut.trim_end_matches('-'))
}

/// Whether `name` is one this tool gives drill servers of `source`.
fn generated_name(source: &str, name: &str) -> bool {
    name.strip_prefix(&prefix(source))
        .is_some_and(|d| NaiveDate::parse_from_str(d, "%Y%m%d").is_ok() && d.len() == 8)
}

/// Runs the drill and writes its post-mortem record (`Kind::Drill`). An
/// error before anything was created (config, preflight, a server it
/// refuses to touch) is returned as such; once the drill server may exist,
/// every failure is in the report, after the server was deleted.
pub fn drill(
    ctx: &Context,
    arm: &Arm,
    req: &DrillRequest,
    obs: &dyn Observer,
) -> Result<DrillReport> {
    let mut rec = report::Record::new(report::Kind::Drill, "");
    let out = run(ctx, arm, req, obs);
    match &out {
        Ok(r) => {
            record(&mut rec, r);
            report::finish_with(ctx, rec, r.failure.as_ref());
        }
        Err(e) => drop(report::finish_with(ctx, rec, Some(e))),
    }
    out
}

/// The recovery step a failed drill stopped at: the first one without a
/// time, or the smoke check (which has one even when it found problems).
fn failed_step(ran: &[(&'static str, f64)]) -> &'static str {
    const RECOVERY: [&str; 6] = [
        "preflight",
        "accepted",
        "operation",
        "ready",
        "connect",
        "smoke",
    ];
    RECOVERY
        .into_iter()
        .find(|step| !ran.iter().any(|(s, _)| s == step))
        .unwrap_or("smoke")
}

/// The drill's record: what it was checked against, each step's time,
/// what is left running and how to remove it.
fn record(rec: &mut report::Record, r: &DrillReport) {
    rec.source(report::Source {
        of: r.source_id.clone(),
        ..Default::default()
    });
    for (db, file) in &r.backups {
        rec.source(report::Source {
            of: db.clone(),
            path: Some(file.clone()),
            ..Default::default()
        });
    }
    rec.target(r.target_id.clone());
    for l in &r.left_behind {
        rec.step(&format!("deleted {} (left behind)", l.name), l.secs, None);
    }
    let rows: u64 = r.tables.iter().filter_map(|t| t.found).sum();
    let checked = format!("{} tables, {rows} rows", r.tables.len());
    let ran = r.steps.list();
    let failed_at = r.error.as_deref().map(|e| (failed_step(&ran), e));
    // A step that failed before it had a time goes after the last one that
    // had one, before the delete.
    let mut untimed = failed_at.filter(|(at, _)| !ran.iter().any(|(s, _)| s == at));
    for (step, secs) in ran.iter().filter(|(s, _)| *s != "total") {
        if let Some((at, e)) = untimed.take_if(|_| *step == "delete") {
            rec.failed_step(at, 0.0, e);
        }
        match failed_at {
            Some((at, e)) if at == *step => rec.failed_step(step, *secs, e),
            _ => rec.step(step, *secs, (*step == "smoke").then_some(checked.as_str())),
        }
    }
    if let Some((at, e)) = untimed {
        rec.failed_step(at, 0.0, e);
    }
    if !r.deleted {
        let (sub, rg, name) = split_id(&r.target_id).unwrap_or_default();
        rec.kept(format!("{} (billed until deleted)", r.target_id));
        rec.undo(format!(
            "az postgres flexible-server delete --subscription {sub} --resource-group {rg} \
             --name {name} --yes"
        ));
    }
}

fn run(ctx: &Context, arm: &Arm, req: &DrillRequest, obs: &dyn Observer) -> Result<DrillReport> {
    let t0 = Instant::now();
    let cfg = ctx.cfg.drill.clone().unwrap_or_default();
    let source = source_name(ctx, req, &cfg)?;
    let target = req
        .target
        .clone()
        .unwrap_or_else(|| default_name(&source, Utc::now().date_naive()));
    let greq = GeoRestoreRequest {
        source: source.clone(),
        target: target.clone(),
        target_resource_group: cfg.resource_group.clone(),
        ..Default::default()
    };
    let mut plan = plan(ctx, arm, &greq)?;
    plan.body["tags"][DRILL_TAG] = json!(source_marker(&plan.source_id));
    let mut report = DrillReport {
        source_id: plan.source_id.clone(),
        target_id: plan.target_id.clone(),
        location: plan.location.clone(),
        kept: req.keep,
        ..Default::default()
    };
    report.steps.preflight = Some(t0.elapsed().as_secs_f64());
    let backups = newest_backups(ctx, &plan)?;
    check_config(&cfg, &backups)?;
    report.left_behind = clear_left_behind(arm, &plan, &source, &target)?;
    run_steps(ctx, arm, &plan, &cfg, &backups, &mut report, obs);
    if req.keep {
        info!(
            "--keep: {} stays (and costs money until deleted)",
            report.name()
        );
    } else {
        let t = Instant::now();
        match delete_ours(arm, &plan) {
            Ok(()) => {
                report.deleted = true;
                report.steps.delete = Some(t.elapsed().as_secs_f64());
            }
            Err(e) => report.failed(e),
        }
    }
    report.steps.total = t0.elapsed().as_secs_f64();
    report.rto_secs = report.steps.rto();
    Ok(report)
}

fn source_name(ctx: &Context, req: &DrillRequest, cfg: &DrillConfig) -> Result<String> {
    let az = azure(ctx)?;
    let name = req
        .source
        .clone()
        .or_else(|| cfg.source.clone())
        .or_else(|| az.postgres_servers.first().map(|s| s.name.clone()))
        .ok_or_else(|| {
            Error::Setup(
                "no [[azure.postgres_server]] configured: drill region needs the server to drill"
                    .into(),
            )
        })?;
    if configured(az, &name).is_none() {
        return Err(Error::Setup(format!(
            "drill source {name} is not an [[azure.postgres_server]] of the config"
        )));
    }
    Ok(name)
}

/// The newest sound local backup of each of the server's databases: what
/// the drill server is checked against.
fn newest_backups(
    ctx: &Context,
    plan: &GeoRestorePlan,
) -> Result<Vec<(Database, crate::catalog::LocalBackup)>> {
    let catalog = Catalog::open_existing(&ctx.cfg);
    let dbs = ctx.cfg.select(&plan.databases)?;
    let all = catalog.list(&dbs)?;
    dbs.into_iter()
        .map(|db| {
            let newest = all
                .iter()
                .rfind(|b| b.dbname == db.dbname && b.is_sound())
                .ok_or_else(|| Error::NoBackup {
                    what: format!(
                        "of {} in {} to check the drill server against (run a backup first)",
                        db.dbname,
                        catalog.dir().display()
                    ),
                })?;
            Ok((db.clone(), newest.clone()))
        })
        .collect()
}

/// What the smoke check will need, checked before anything is created: a
/// mistake here must not cost an hour-long geo-restore.
fn check_config(
    cfg: &DrillConfig,
    backups: &[(Database, crate::catalog::LocalBackup)],
) -> Result<()> {
    for fqdn in cfg.resolve.keys() {
        cfg.resolved(fqdn)?;
    }
    match (&cfg.smoke_query, &cfg.smoke_database) {
        (Some(_), Some(name)) if !backups.iter().any(|(d, _)| &d.name == name) => {
            Err(Error::Setup(format!(
                "drill.smoke_database {name:?} is not a database of the drilled server"
            )))
        }
        _ => Ok(()),
    }
}

/// Create, wait, connect and check; the first failure goes in the report.
fn run_steps(
    ctx: &Context,
    arm: &Arm,
    plan: &GeoRestorePlan,
    cfg: &DrillConfig,
    backups: &[(Database, crate::catalog::LocalBackup)],
    report: &mut DrillReport,
    obs: &dyn Observer,
) {
    let geo = match execute(ctx, arm, plan, false, obs) {
        Ok(g) => g,
        Err(e) => return report.failed(e),
    };
    report.steps.accepted = Some(geo.accepted_secs);
    report.steps.operation = Some(geo.operation_secs);
    report.fqdn = geo.fqdn.clone();
    if geo.resume.is_some() {
        return report.failed(Error::Interrupted);
    }
    report.steps.ready = Some(geo.ready_secs);
    let Some(fqdn) = geo.ready_fqdn().map(str::to_string) else {
        return report.failed(Error::Unexpected(format!(
            "{} is Ready without a fullyQualifiedDomainName",
            report.name()
        )));
    };
    if let Err(e) = ctx.check_cancel() {
        return report.failed(e);
    }
    if let Err(e) = smoke(ctx, cfg, &fqdn, backups, report) {
        report.failed(e);
    }
}

/// Connects to the drill server and compares every table of each backup's
/// manifest with what is there.
fn smoke(
    ctx: &Context,
    cfg: &DrillConfig,
    fqdn: &str,
    backups: &[(Database, crate::catalog::LocalBackup)],
    report: &mut DrillReport,
) -> Result<()> {
    let server = DrillServer {
        ctx,
        cfg,
        fqdn,
        addr: cfg.resolved(fqdn)?,
    };
    let Some((first, _)) = backups.first() else {
        return Err(Error::Setup(format!(
            "{}: no databases configured to check (azure.postgres_server databases)",
            report.name()
        )));
    };
    let t = Instant::now();
    connect(ctx, &server.on(first))?;
    report.steps.connect = Some(t.elapsed().as_secs_f64());
    let t = Instant::now();
    for (db, backup) in backups {
        let conn = server.on(db);
        report.backups.insert(db.dbname.clone(), backup.file_name());
        let manifest = backup.manifest.as_ref().expect("sound backups have one");
        let found = conn.row_counts(manifest)?;
        for tr in &manifest.tables {
            let table = format!("{}.{}", tr.schema, tr.name);
            report.tables.push(TableCheck {
                database: db.dbname.clone(),
                found: found.get(&table).copied(),
                table,
                expected: tr.rows,
            });
        }
    }
    let problems: Vec<String> = report
        .tables
        .iter()
        .filter_map(TableCheck::problem)
        .collect();
    let query = smoke_query(&server, backups, report);
    report.steps.smoke = Some(t.elapsed().as_secs_f64());
    if !problems.is_empty() {
        return Err(Error::Unsound(format!(
            "smoke check of {fqdn} failed: {}",
            problems.join("; ")
        )));
    }
    query
}

/// How long a Ready server may stay unreachable: its DNS name and
/// gateway can lag the Ready state by a minute or two.
const CONNECT_PATIENCE: Duration = Duration::from_secs(300);
const CONNECT_EVERY: Duration = Duration::from_secs(5);

/// The first connection, tried again while the failure is one of reaching
/// the server (a name not resolving yet, a refused or timed-out
/// connection), never after a refused login.
fn connect(ctx: &Context, conn: &Conn) -> Result<()> {
    let t = Instant::now();
    loop {
        match conn.query("select 1") {
            Ok(_) => return Ok(()),
            Err(e) if unreachable(&e) && t.elapsed() < CONNECT_PATIENCE => {
                info!("{e}; trying again in {} s", CONNECT_EVERY.as_secs());
                let until = Instant::now() + CONNECT_EVERY;
                while Instant::now() < until {
                    ctx.check_cancel()?;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether psql failed before reaching a server.
fn unreachable(e: &Error) -> bool {
    const SIGNS: [&str; 5] = [
        "could not translate host name",
        "Connection refused",
        "timeout expired",
        "No route to host",
        "Network is unreachable",
    ];
    let text = e.to_string();
    SIGNS.iter().any(|s| text.contains(s))
}

/// `[drill] smoke_query`, in `smoke_database`: must return true.
fn smoke_query(
    server: &DrillServer,
    backups: &[(Database, crate::catalog::LocalBackup)],
    report: &mut DrillReport,
) -> Result<()> {
    let (cfg, fqdn) = (server.cfg, server.fqdn);
    let Some(sql) = &cfg.smoke_query else {
        return Ok(());
    };
    let db = match &cfg.smoke_database {
        Some(name) => backups.iter().map(|(d, _)| d).find(|d| &d.name == name),
        None => backups.first().map(|(d, _)| d),
    }
    .ok_or_else(|| {
        Error::Setup(format!(
            "drill.smoke_database {:?} is not a database of the drilled server",
            cfg.smoke_database.as_deref().unwrap_or("")
        ))
    })?;
    let conn = server.on(db);
    let rows = conn.query(sql)?;
    let answer = rows.first().and_then(|r| r.first()).map(String::as_str);
    let ok = answer == Some("t");
    report.smoke_query = Some(ok);
    if ok {
        Ok(())
    } else {
        Err(Error::Unsound(format!(
            "smoke check of {fqdn} failed: drill.smoke_query in {} returned {}, not true",
            db.dbname,
            answer.unwrap_or("no row")
        )))
    }
}

/// The drill server as psql reaches it: host the FQDN (what `verify-full` checks),
/// `hostaddr` and port from `[drill] resolve` when it maps the FQDN, the
/// configured sslmode.
struct DrillServer<'a> {
    ctx: &'a Context,
    cfg: &'a DrillConfig,
    fqdn: &'a str,
    addr: Option<SocketAddr>,
}

impl<'a> DrillServer<'a> {
    fn on(&'a self, db: &'a Database) -> Conn<'a> {
        Conn { server: self, db }
    }
}

/// psql to one database of the drill server, with the password of the
/// database's environment variable, as for every connection.
struct Conn<'a> {
    server: &'a DrillServer<'a>,
    db: &'a Database,
}

impl Conn<'_> {
    fn command(&self) -> Result<Command> {
        let DrillServer {
            ctx,
            cfg,
            fqdn,
            addr,
        } = self.server;
        let mut target = self.db.clone();
        target.host = fqdn.to_string();
        target.port = addr.map_or(5432, |a| a.port());
        if let Some(user) = &cfg.user {
            target.user = user.clone();
        }
        let mut cmd = ctx.tools.command("psql", &target, &self.db.dbname)?;
        cmd.env("PGSSLMODE", &cfg.sslmode);
        match addr {
            Some(a) => cmd.env("PGHOSTADDR", a.ip().to_string()),
            None => cmd.env_remove("PGHOSTADDR"),
        };
        Ok(cmd)
    }

    fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.server
            .ctx
            .tools
            .query_with(self.command()?, sql)
            .map_err(|e| match e {
                Error::Tool { stderr, .. } => Error::Failed {
                    target: format!("{} on {}", self.db.dbname, self.server.fqdn),
                    error: stderr,
                },
                e => e,
            })
    }

    /// `schema.table` → rows, of the manifest's tables that exist.
    fn row_counts(&self, manifest: &crate::catalog::Manifest) -> Result<BTreeMap<String, u64>> {
        let present: std::collections::HashSet<(String, String)> = self
            .query(
                "SELECT n.nspname, c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')",
            )?
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
            .collect();
        let tables: Vec<_> = manifest
            .tables
            .iter()
            .filter(|t| present.contains(&(t.schema.clone(), t.name.clone())))
            .collect();
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sql: String = tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT {}, count(*) FROM {}.{};\n",
                    literal(&format!("{}.{}", t.schema, t.name)),
                    ident(&t.schema),
                    ident(&t.name)
                )
            })
            .collect();
        let mut out = BTreeMap::new();
        for row in self.query(&sql)? {
            let n = row
                .get(1)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::Unexpected(format!("psql answered {row:?} to a count")))?;
            out.insert(row[0].clone(), n);
        }
        Ok(out)
    }
}

/// Deletes the drill servers of `source` an earlier run left behind
/// (killed before its own delete): named as this tool names them (or
/// `target`) and tagged as its drill. A server with such a name but not
/// the tag is refused: it is not ours to delete.
fn clear_left_behind(
    arm: &Arm,
    plan: &GeoRestorePlan,
    source: &str,
    target: &str,
) -> Result<Vec<LeftBehind>> {
    let (sub, rg, _) = split_id(&plan.target_id).unwrap_or_default();
    let marker = source_marker(&plan.source_id);
    let mut out = Vec::new();
    for server in list_servers(arm, &sub, &rg)? {
        let name = server.get("name").and_then(Value::as_str).unwrap_or("");
        if !(generated_name(source, name) || name.eq_ignore_ascii_case(target)) {
            continue;
        }
        let tagged = FlexibleServer::from_body(&server).tag(DRILL_TAG) == Some(marker.as_str());
        if !tagged {
            return Err(Error::Refused(format!(
                "refusing to delete {name} in resource group {rg}: named like a drill server of \
                 {source} but without the tag {DRILL_TAG} = {marker}, so not made by \
                 valerix-backup; nothing was created (rename or delete it by hand)"
            )));
        }
        let parsed = FlexibleServer::from_body(&server);
        if let Some(since) = still_being_made(&parsed, arm.cfg.timeout_minutes) {
            return Err(Error::Refused(format!(
                "{name} in resource group {rg} is a drill server still being created (its \
                 request began {since}): another drill of {source} may be running; nothing was \
                 created (wait for it, or delete {name} by hand)"
            )));
        }
        warn!("{name} was left behind by an earlier drill of {source}: deleting it first");
        let t = Instant::now();
        delete_server(arm, &super::server_id(&sub, &rg, name))?;
        out.push(LeftBehind {
            name: name.to_string(),
            secs: t.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

/// When a drill server is still being created by a request younger than
/// the wait's timeout, that request's start: it may be another drill's
/// (the agent's and a hand-run one on the same day), and deleting it would
/// break that drill. A request older than that was left behind. A Ready
/// server counts as left behind: a run killed during its smoke check leaves
/// one, and nothing tells it from a drill checking it this minute (that
/// race is minutes wide; the creating one is an hour).
fn still_being_made(server: &FlexibleServer, timeout_minutes: u64) -> Option<String> {
    if matches!(
        server.state(),
        Some("Ready") | Some("Stopped") | Some("Disabled")
    ) {
        return None;
    }
    let request = server.tag(REQUEST_TAG)?;
    let stamp = request.split('-').next()?;
    let began = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.6fZ").ok()?;
    let age = Utc::now().naive_utc() - began;
    (age < chrono::Duration::minutes(timeout_minutes as i64)).then(|| format!("{began} UTC"))
}

/// `GET .../resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/
/// flexibleServers` (Servers_ListByResourceGroup), every page.
fn list_servers(arm: &Arm, sub: &str, rg: &str) -> Result<Vec<Value>> {
    let path = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/{}",
        super::PROVIDER
    );
    let mut url = Some(arm.url(&path, &arm.cfg.api_version));
    let mut out = Vec::new();
    while let Some(u) = url {
        let a = arm.get(&u)?;
        if !a.ok() {
            return Err(a.refused(&format!("listing the flexible servers of {rg}")));
        }
        if let Some(v) = a.body.get("value").and_then(Value::as_array) {
            out.extend(v.iter().cloned());
        }
        url = a
            .body
            .get("nextLink")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    Ok(out)
}

/// Deletes this run's drill server, if it exists: only when it carries
/// this run's request tag and the drill tag (a 409 on create means the
/// name is someone else's, which must stay).
fn delete_ours(arm: &Arm, plan: &GeoRestorePlan) -> Result<()> {
    let a = arm.get(&plan.url)?;
    if a.status == 404 {
        return Ok(());
    }
    if !a.ok() {
        return Err(a.refused(&format!(
            "reading {} before deleting it",
            name_of(&plan.target_id)
        )));
    }
    let server = FlexibleServer::from_body(&a.body);
    let ours = server.tag(REQUEST_TAG) == Some(plan.request.as_str())
        && server.tag(DRILL_TAG) == Some(source_marker(&plan.source_id).as_str());
    if !ours {
        return Err(Error::Refused(format!(
            "refusing to delete {}: it was not created by this drill (its tags say so)",
            name_of(&plan.target_id)
        )));
    }
    delete_server(arm, &plan.target_id)
}

/// DELETE of a flexible server, followed to its end (Servers_Delete,
/// 2025-08-01: 202 with Azure-AsyncOperation, Location and Retry-After, or
/// 204 when it does not exist), then a GET until 404. An interrupt does
/// not stop it: the drill server must not be left running.
pub fn delete_server(arm: &Arm, id: &str) -> Result<()> {
    let name = name_of(id);
    info!("DELETE {id}");
    let url = arm.url(id, &arm.cfg.api_version);
    let a = arm.delete(&url)?;
    let never = AtomicBool::new(false);
    let deadline = Duration::from_secs(arm.cfg.timeout_minutes * 60);
    match a.status {
        204 => return Ok(()),
        200 | 202 => {}
        _ => return Err(a.refused(&format!("deleting {name}"))),
    }
    if let Some(op) = Operation::from_answer(arm, &a) {
        lro::wait(arm, &op, a.retry_after, deadline, &never, |s| {
            info!("deleting {name}: {s}")
        })
        .map_err(|e| deletion_failed(name, e))?;
    }
    let t = Instant::now();
    loop {
        let g: Answer = arm.get(&url)?;
        if g.status == 404 {
            info!("{name} deleted");
            return Ok(());
        }
        if !g.ok() {
            return Err(g.refused(&format!("reading {name} after deleting it")));
        }
        if t.elapsed() > deadline {
            return Err(Error::Timeout(format!(
                "{name} still exists {} minutes after its DELETE: delete it by hand \
                 (az postgres flexible-server delete -n {name})",
                deadline.as_secs() / 60
            )));
        }
        lro::pause(arm, g.retry_after, &never)?;
    }
}

fn deletion_failed(name: &str, e: Error) -> Error {
    Error::OperationFailed(format!(
        "deleting {name}: {e}; it may still exist and cost money: check with \
         `az postgres flexible-server show -n {name}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_server_still_being_made_by_a_recent_request_is_left_alone() {
        let server = |state: &str, began: chrono::DateTime<Utc>| {
            let request = format!("{}-4242", began.format("%Y%m%dT%H%M%S%.6fZ"));
            FlexibleServer::from_body(&serde_json::json!({
                "name": "valerix-postgres-drill-20261201",
                "tags": { REQUEST_TAG: request },
                "properties": { "state": state }
            }))
        };
        let now = Utc::now();
        let recent = now - chrono::Duration::minutes(5);
        assert!(still_being_made(&server("Provisioning", recent), 60).is_some());
        // Older than the wait's timeout: left behind by a run that died.
        let old = now - chrono::Duration::minutes(90);
        assert!(still_being_made(&server("Provisioning", old), 60).is_none());
        // Created: treated as left behind (see still_being_made).
        assert!(still_being_made(&server("Ready", recent), 60).is_none());
    }

    #[test]
    fn drill_names_are_valid_and_recognised() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(
            default_name("valerix-postgres", day),
            "valerix-postgres-drill-20261201"
        );
        let long = "a".repeat(47) + "-bcdefghijklmnop";
        let name = default_name(&long, day);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, format!("{}-drill-20261201", "a".repeat(47)));
        assert!(generated_name(
            "valerix-postgres",
            "valerix-postgres-drill-20250301"
        ));
        assert!(!generated_name(
            "valerix-postgres",
            "valerix-postgres-drill-2025030"
        ));
        assert!(!generated_name(
            "valerix-postgres",
            "valerix-postgres-drill-prod"
        ));
        assert!(!generated_name("valerix-postgres", "valerix-postgres"));
        assert!(generated_name(&long, &name));
    }

    #[test]
    fn only_unreachable_servers_are_tried_again() {
        let psql = |stderr: &str| Error::Failed {
            target: "order_db on x".into(),
            error: stderr.into(),
        };
        assert!(unreachable(&psql(
            "could not translate host name \"x.postgres.database.azure.com\" to address"
        )));
        assert!(unreachable(&psql(
            "connection to server at \"10.0.0.4\", port 5432 failed: Connection refused"
        )));
        assert!(!unreachable(&psql(
            "connection to server failed: FATAL: password authentication failed for user \"order_user\""
        )));
    }

    #[test]
    fn table_checks_name_the_table() {
        let t = |found| TableCheck {
            database: "order_db".into(),
            table: "public.orders".into(),
            expected: 10,
            found,
        };
        assert_eq!(t(Some(10)).problem(), None);
        assert_eq!(t(Some(11)).problem(), None);
        assert!(
            t(Some(9))
                .problem()
                .unwrap()
                .contains("public.orders has 9 rows")
        );
        assert!(
            t(None)
                .problem()
                .unwrap()
                .contains("public.orders is missing")
        );
    }
}
