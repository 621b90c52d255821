//! The post-mortem record: every restore (local, `--from-azure`, `--into`),
//! geo-restore, failover and drill writes one, beside the backups:
//! `<backup_dir>/reports/<stamp>-<kind>.json` (for machines, `report show
//! --json`) and `.md` (for the post-mortem document), both 0600 in a 0700
//! directory. A record says what was restored from which copy, into what,
//! who ran it, every step with its time, what was kept and how to undo it.
//!
//! Writing a record never fails the command it records: the restore is
//! done (or not) whatever happens to its paperwork, so a record that
//! cannot be written is one warning line. Nothing is sent anywhere while
//! the command runs: during a region outage the storage account may be
//! unreachable. The next `upload` (or the agent's upload job) copies the
//! records offsite under `<prefix>reports/`, where the weekly tier's
//! lifecycle rule keeps them as long as the weekly copies
//! ([`upload_pending`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::catalog::Stamp;
use crate::catalog::fsutil::{create_private_dir, write_atomic};
use crate::config::{Azure, Config};
use crate::error::{Error, IoContext, Result};
use crate::offsite::{SUPERSEDED_TAG, SUPERSEDED_VALUE};
use crate::ops::Context;
use crate::storage::{Store, WriteSpec};

/// The folder under the backup directory, and under the container's prefix.
pub const DIR: &str = crate::offsite::REPORTS_DIR;

/// What was done: the last part of the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Restore,
    GeoRestore,
    Failover,
    Drill,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Restore => "restore",
            Kind::GeoRestore => "geo-restore",
            Kind::Failover => "failover",
            Kind::Drill => "drill",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Restore => "Restore",
            Kind::GeoRestore => "Geo-restore",
            Kind::Failover => "Failover",
            Kind::Drill => "Region drill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Stopped by a signal; what was under way may go on (a geo-restore
    /// in Azure) or was settled (a restore's journal).
    Interrupted,
}

/// Who ran it, where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operator {
    pub user: String,
    pub host: String,
    pub tool_version: String,
}

/// One copy something was restored from: a backup file (local, maybe
/// fetched from a blob) or a server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Source {
    /// Database (dbname) or server the copy is of.
    pub of: String,
    /// Local file, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The blob it came from (`--from-azure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// When the backup was taken, or the point in time restored to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_time: Option<DateTime<Utc>>,
}

/// One step with its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTime {
    pub name: String,
    pub started: DateTime<Utc>,
    pub secs: f64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The record of one run. Build it while the run goes, then [`finish`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    /// Its file name without extension: `<stamp>-<kind>`.
    pub name: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub total_secs: f64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub operator: Operator,
    /// The command line (never holds a secret: secrets come from the
    /// environment and files only).
    pub command: Vec<String>,
    pub sources: Vec<Source>,
    /// Databases or servers that now hold the restored data.
    pub targets: Vec<String>,
    pub steps: Vec<StepTime>,
    /// What was kept that a later clean-up may want to remove (a replaced
    /// database kept under `__old_`, a drill server kept with `--keep`).
    pub kept: Vec<String>,
    /// How to undo it, one action per line.
    pub undo: Vec<String>,
}

impl Record {
    pub fn new(kind: Kind, target: impl Into<String>) -> Record {
        Record::starting_at(kind, target, Utc::now())
    }

    /// A record of a run that began at `started` (a restore whose backups
    /// were fetched first).
    pub fn starting_at(kind: Kind, target: impl Into<String>, started: DateTime<Utc>) -> Record {
        let target: String = target.into();
        Record {
            kind,
            name: format!("{}-{}", Stamp::from_datetime(started), kind.as_str()),
            started,
            finished: None,
            total_secs: 0.0,
            outcome: Outcome::Failed,
            error: None,
            operator: Operator {
                user: user_name(),
                host: crate::ops::upload::host_name(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
            },
            command: std::env::args().collect(),
            sources: Vec::new(),
            targets: (!target.is_empty()).then_some(target).into_iter().collect(),
            steps: Vec::new(),
            kept: Vec::new(),
            undo: Vec::new(),
        }
    }

    pub fn source(&mut self, s: Source) {
        self.sources.push(s);
    }

    pub fn target(&mut self, t: impl Into<String>) {
        let t = t.into();
        if !self.targets.contains(&t) {
            self.targets.push(t);
        }
    }

    /// Runs `f` as step `name`, recording its start, seconds and whether it
    /// succeeded.
    pub fn timed<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = Utc::now();
        let t = Instant::now();
        let out = f();
        self.steps.push(StepTime {
            name: name.into(),
            started,
            secs: t.elapsed().as_secs_f64(),
            ok: out.is_ok(),
            detail: out.as_ref().err().map(|e| e.to_string()),
        });
        out
    }

    /// A step measured elsewhere, ended now, that succeeded.
    pub fn step(&mut self, name: &str, secs: f64, detail: Option<&str>) {
        self.push_step(name, secs, true, detail);
    }

    /// A step measured elsewhere, ended now, that failed.
    pub fn failed_step(&mut self, name: &str, secs: f64, why: &str) {
        self.push_step(name, secs, false, Some(why));
    }

    fn push_step(&mut self, name: &str, secs: f64, ok: bool, detail: Option<&str>) {
        let started = Utc::now() - chrono::Duration::milliseconds((secs * 1000.0) as i64);
        self.step_at(name, started, secs, ok, detail);
    }

    /// A step that began at `started` and took `secs`.
    pub fn step_at(
        &mut self,
        name: &str,
        started: DateTime<Utc>,
        secs: f64,
        ok: bool,
        detail: Option<&str>,
    ) {
        self.steps.push(StepTime {
            name: name.into(),
            started,
            secs,
            ok,
            detail: detail.map(str::to_string),
        });
    }

    pub fn kept(&mut self, what: impl Into<String>) {
        self.kept.push(what.into());
    }

    pub fn undo(&mut self, how: impl Into<String>) {
        self.undo.push(how.into());
    }

    /// Closes the record with the run's error (`None`: it succeeded).
    fn close(&mut self, error: Option<&Error>) {
        let finished = Utc::now();
        self.finished = Some(finished);
        self.total_secs = (finished - self.started).num_milliseconds().max(0) as f64 / 1000.0;
        (self.outcome, self.error) = match error {
            None => (Outcome::Succeeded, None),
            Some(Error::Interrupted) => {
                (Outcome::Interrupted, Some(Error::Interrupted.to_string()))
            }
            Some(e) => (Outcome::Failed, Some(e.to_string())),
        };
    }
}

/// Closes `rec` with `result` and writes it (`.json` and `.md`); the path
/// of the JSON file, or `None` (and one warning) when it could not be
/// written. Never fails: the run's result is the caller's to return.
pub fn finish<T>(ctx: &Context, rec: Record, result: &Result<T>) -> Option<PathBuf> {
    finish_with(ctx, rec, result.as_ref().err())
}

/// [`finish`] with the run's error, `None` when it succeeded.
pub fn finish_with(ctx: &Context, mut rec: Record, error: Option<&Error>) -> Option<PathBuf> {
    rec.close(error);
    match write(&ctx.cfg, &mut rec) {
        Ok(path) => {
            info!("post-mortem record: {}", path.display());
            Some(path)
        }
        Err(e) => {
            warn!(
                "the post-mortem record of this {} could not be written: {e}",
                rec.kind.as_str()
            );
            None
        }
    }
}

/// Closes `rec` for a run that ended with `done`: when it produced its
/// report, `fill` adds what it says and returns the run's outcome
/// (an interrupted wait, a failed check); an error is the outcome itself.
pub fn finish_run<T>(
    ctx: &Context,
    mut rec: Record,
    done: &Result<T>,
    fill: impl FnOnce(&mut Record, &T) -> Result<()>,
) -> Option<PathBuf> {
    let judged;
    let error = match done {
        Ok(r) => {
            judged = fill(&mut rec, r).err();
            judged.as_ref()
        }
        Err(e) => Some(e),
    };
    finish_with(ctx, rec, error)
}

/// `<backup_dir>/reports/`.
pub fn dir(cfg: &Config) -> PathBuf {
    cfg.backup_dir.join(DIR)
}

fn write(cfg: &Config, rec: &mut Record) -> Result<PathBuf> {
    let dir = dir(cfg);
    create_private_dir(&cfg.backup_dir)?;
    create_private_dir(&dir)?;
    // Two runs in the same second: the second gets `-2`, never the first's name.
    let base = rec.name.clone();
    let mut n = 1;
    while dir.join(format!("{}.json", rec.name)).exists() {
        n += 1;
        rec.name = format!("{base}-{n}");
    }
    let json = serde_json::to_vec_pretty(rec).expect("a record serialises");
    let path = dir.join(format!("{}.json", rec.name));
    // The Markdown first: the JSON is what `report list` reads, so a
    // record is listed only once both exist.
    write_atomic(
        &dir.join(format!("{}.md", rec.name)),
        markdown(rec).as_bytes(),
    )?;
    write_atomic(&path, &json)?;
    Ok(path)
}

/// One line of `report list`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub kind: Kind,
    pub started: DateTime<Utc>,
    pub outcome: Outcome,
    pub total_secs: f64,
    pub targets: Vec<String>,
    pub operator: String,
    pub path: PathBuf,
}

/// The records in the backup directory, oldest first. A file that is not
/// a record is named in a warning and skipped.
pub fn list(cfg: &Config) -> Result<Vec<Summary>> {
    let mut out = Vec::new();
    for path in json_files(&dir(cfg))? {
        match read(&path) {
            Ok(r) => out.push(Summary {
                name: r.name.clone(),
                kind: r.kind,
                started: r.started,
                outcome: r.outcome,
                total_secs: r.total_secs,
                targets: r.targets.clone(),
                operator: format!("{}@{}", r.operator.user, r.operator.host),
                path,
            }),
            Err(e) => warn!("{e}"),
        }
    }
    out.sort_by(|a, b| (a.started, &a.name).cmp(&(b.started, &b.name)));
    Ok(out)
}

/// Record `which`: a name (`20261201_021500-restore`, with or without
/// `.json`/`.md`), `latest`, or `latest-<kind>` (`latest-drill`).
pub fn show(cfg: &Config, which: &str) -> Result<(Record, String)> {
    let all = list(cfg)?;
    let none = || {
        Error::NotFound(format!(
            "no post-mortem record '{which}' in {} (report list shows them)",
            dir(cfg).display()
        ))
    };
    let wanted = which.trim_end_matches(".json").trim_end_matches(".md");
    let found = match wanted.strip_prefix("latest") {
        Some("") => all.last(),
        Some(kind) => all
            .iter()
            .rev()
            .find(|s| kind.strip_prefix('-') == Some(s.kind.as_str())),
        None => all.iter().find(|s| s.name == wanted),
    };
    let summary = found.ok_or_else(none)?;
    let rec = read(&summary.path)?;
    let md = std::fs::read_to_string(summary.path.with_extension("md"))
        .unwrap_or_else(|_| markdown(&rec));
    Ok((rec, md))
}

fn read(path: &Path) -> Result<Record> {
    let bytes = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        file: path.display().to_string(),
        reason: format!("not a post-mortem record: {e}"),
    })
}

fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.ctx(|| format!("reading {}", dir.display()))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // Hidden names are files being written (see AtomicFile).
        if name.ends_with(".json") && !name.starts_with('.') {
            out.push(path);
        }
    }
    Ok(out)
}

/// `<prefix>reports/<file>`.
pub fn blob_name(az: &Azure, file: &str) -> String {
    format!("{}{DIR}/{file}", az.prefix)
}

/// Copies the records not yet offsite to `<prefix>reports/` (both files of
/// each); the blob names written. They carry the lifecycle tag from the
/// start: a record is never anyone's newest copy, so it simply expires with
/// the weekly tier's rule, which also covers `<prefix>reports/`.
pub fn upload_pending(cfg: &Config, store: &dyn Store, az: &Azure) -> Result<Vec<String>> {
    let local = json_files(&dir(cfg))?;
    if local.is_empty() {
        return Ok(Vec::new());
    }
    let there: BTreeSet<String> = store
        .list(&blob_name(az, ""))?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut sent = Vec::new();
    for json in local {
        for path in [json.with_extension("md"), json] {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            let name = blob_name(az, &file);
            if there.contains(&name) || !path.exists() {
                continue;
            }
            let bytes = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
            store.write_bytes(&name, &bytes, &report_spec(&bytes))?;
            sent.push(name);
        }
    }
    Ok(sent)
}

fn report_spec(bytes: &[u8]) -> WriteSpec {
    let sha = crate::pipeline::hash::sha256_hex(bytes);
    let mut spec = WriteSpec::default();
    spec.metadata.insert("kind".into(), "report".into());
    spec.metadata.insert("sha256".into(), sha.clone());
    spec.tags
        .insert(SUPERSEDED_TAG.into(), SUPERSEDED_VALUE.into());
    spec.expect_sha256 = Some(sha);
    spec
}

fn user_name() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let by_env = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"));
    match by_env {
        Ok(u) if !u.is_empty() => format!("{u} (uid {uid})"),
        _ => format!("uid {uid}"),
    }
}

fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The record as a Markdown document for the post-mortem.
pub fn markdown(r: &Record) -> String {
    let mut s = String::new();
    let outcome = match r.outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "FAILED",
        Outcome::Interrupted => "INTERRUPTED",
    };
    let _ = writeln!(s, "# {} {}: {outcome}\n", r.kind.title(), utc(r.started));
    let _ = writeln!(s, "- Record: `{}`", r.name);
    let _ = writeln!(
        s,
        "- Run by: {} on {} (valerix-backup {})",
        r.operator.user, r.operator.host, r.operator.tool_version
    );
    let _ = writeln!(s, "- Command: `{}`", r.command.join(" "));
    let finished = r.finished.map_or_else(|| "-".into(), utc);
    let _ = writeln!(
        s,
        "- Started {}, finished {finished}, {:.1} s in all",
        utc(r.started),
        r.total_secs
    );
    let _ = writeln!(s, "- Into: {}", list_or_none(&r.targets));
    if let Some(e) = &r.error {
        let _ = writeln!(s, "- Error: {e}");
    }
    if !r.sources.is_empty() {
        let _ = writeln!(s, "\n## Restored from\n");
        let _ = writeln!(s, "| of | copy | tier | SHA-256 | bytes | backup time |");
        let _ = writeln!(s, "|---|---|---|---|---:|---|");
        for c in &r.sources {
            let copy = match (&c.blob, &c.path) {
                (Some(b), Some(p)) => format!("blob `{b}`, fetched to `{p}`"),
                (Some(b), None) => format!("blob `{b}`"),
                (None, Some(p)) => format!("`{p}`"),
                (None, None) => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {copy} | {} | {} | {} | {} |",
                c.of,
                c.tier.as_deref().unwrap_or("-"),
                c.sha256.as_deref().unwrap_or("-"),
                c.size_bytes.map_or_else(|| "-".into(), |b| b.to_string()),
                c.backup_time.map_or_else(|| "-".into(), utc),
            );
        }
    }
    let _ = writeln!(s, "\n## Steps\n");
    let _ = writeln!(s, "| step | started | seconds | result |");
    let _ = writeln!(s, "|---|---|---:|---|");
    for st in &r.steps {
        let result = match (st.ok, &st.detail) {
            (true, None) => "ok".to_string(),
            (true, Some(d)) => d.clone(),
            (false, d) => format!("FAILED: {}", d.as_deref().unwrap_or("")),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {} |",
            st.name,
            utc(st.started),
            st.secs,
            result.replace('|', "\\|")
        );
    }
    let _ = writeln!(s, "\n## Kept\n\n{}", bullets(&r.kept, "nothing"));
    let _ = writeln!(
        s,
        "## How to undo\n\n{}",
        bullets(&r.undo, "nothing to undo")
    );
    s
}

fn list_or_none(v: &[String]) -> String {
    match v.is_empty() {
        true => "-".into(),
        false => v.join(", "),
    }
}

fn bullets(v: &[String], none: &str) -> String {
    match v.is_empty() {
        true => format!("- {none}\n"),
        false => v.iter().map(|l| format!("- {l}\n")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> Config {
        let text = format!(
            "backup_dir = \"{}\"\n[[database]]\nname = \"order\"\ndbname = \"order_db\"\n\
             user = \"u\"\n",
            dir.display()
        );
        Config::parse(&text, Path::new("x.toml")).unwrap()
    }

    #[test]
    fn a_record_is_written_private_listed_and_shown() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(&tmp.path().join("b"));
        let mut rec = Record::new(Kind::Restore, "order_db");
        rec.source(Source {
            of: "order_db".into(),
            path: Some("/b/order_db_20261201_020000.dump.gz".into()),
            sha256: Some("ab".repeat(32)),
            ..Default::default()
        });
        let v: Result<u8> = rec.timed("order_db: load", || Ok(7));
        assert_eq!(v.unwrap(), 7);
        let e: Result<()> = rec.timed("order_db: swap", || Err(Error::Refused("no".into())));
        assert!(e.is_err());
        rec.kept("order_db__old_20261201_030000");
        rec.undo("ALTER DATABASE ...");
        let mut first = rec.clone();
        first.close(None);
        let p1 = write(&cfg, &mut first).unwrap();
        // Same second, same kind: a new name, the first untouched.
        let mut second = rec.clone();
        second.close(Some(&Error::Interrupted));
        let p2 = write(&cfg, &mut second).unwrap();
        assert_ne!(p1, p2);
        assert!(p2.to_string_lossy().ends_with("-restore-2.json"));
        for p in [&p1, &p1.with_extension("md")] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let mode = std::fs::metadata(dir(&cfg)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        let all = list(&cfg).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].outcome, Outcome::Succeeded);
        let (r, md) = show(&cfg, "latest-restore").unwrap();
        assert_eq!(r.outcome, Outcome::Interrupted);
        assert_eq!(r.steps.len(), 2);
        assert!(!r.steps[1].ok);
        assert!(
            md.contains("# Restore ") && md.contains("INTERRUPTED"),
            "{md}"
        );
        assert!(md.contains("order_db__old_20261201_030000"), "{md}");
        assert!(
            md.contains("| order_db: swap |") && md.contains("FAILED: no"),
            "{md}"
        );
        let (r, _) = show(&cfg, &format!("{}.md", first.name)).unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert!(show(&cfg, "latest-drill").is_err());
    }

    #[test]
    fn records_go_offsite_once_with_the_lifecycle_tag() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(&tmp.path().join("b"));
        let text = "backup_dir = \"b\"\n[[database]]\nname = \"order\"\ndbname = \"order_db\"\n\
                    user = \"u\"\n[azure]\ncontainer = \"backups\"\nprefix = \"prod/\"\n";
        let az = Config::parse(text, Path::new("x.toml"))
            .unwrap()
            .azure
            .unwrap();
        let store = crate::storage::memory::MemoryStore::new();
        assert!(upload_pending(&cfg, &store, &az).unwrap().is_empty());
        let mut rec = Record::new(Kind::GeoRestore, "valerix-pg-west");
        rec.close(None);
        write(&cfg, &mut rec).unwrap();
        let sent = upload_pending(&cfg, &store, &az).unwrap();
        assert_eq!(
            sent,
            vec![
                format!("prod/reports/{}.md", rec.name),
                format!("prod/reports/{}.json", rec.name)
            ]
        );
        let objects = store.list("prod/reports/").unwrap();
        assert!(objects.iter().all(|o| o.is_superseded()));
        assert!(upload_pending(&cfg, &store, &az).unwrap().is_empty());
    }
}
