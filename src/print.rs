//! Human-readable reports on stdout (JSON with --json). Logs and progress go
//! to stderr, so stdout stays clean for pipes and scripts.

use std::io::Write;

use serde::Serialize;
use valerix_backup::ops::backup::BackupReport;
use valerix_backup::ops::inspect::{ListEntry, StatusReport};
use valerix_backup::ops::restore::RestoreReport;
use valerix_backup::ops::verify::VerifyReport;
use valerix_backup::{Error, Result};

pub fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl Fn(&T) -> String,
) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
    } else {
        human(value)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::io("writing to stdout", e)),
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

pub fn backup(r: &BackupReport) -> String {
    let mut s = format!("backup {}\n", r.timestamp);
    for d in &r.results {
        match (&d.manifest, &d.error) {
            (Some(m), _) => {
                s += &format!(
                    "  {:<16} ok      {:>10}  sha256 {}  {} tables, {} rows  {:.1} s\n",
                    d.dbname,
                    human_bytes(m.size_bytes),
                    &m.sha256[..12],
                    m.tables.len(),
                    m.total_rows(),
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
    s
}

pub fn verify(r: &VerifyReport) -> String {
    let mut s = String::new();
    for d in &r.results {
        let file = d.file.as_deref().unwrap_or("-");
        match &d.error {
            None => {
                s += &format!(
                    "{:<16} ok      {file}  {} tables, {} rows, read {:.1} s",
                    d.database, d.tables, d.rows, d.read_secs
                );
                if let Some(t) = d.restore_secs {
                    s += &format!(", restore+count {t:.1} s (RTO evidence)");
                }
                s += "\n";
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
    let mut s = format!(
        "{:<16} {:<16} {:>10}  {:<13} {:<12} {:>10}\n",
        "TIMESTAMP", "DATABASE", "SIZE", "STATE", "SHA256", "ROWS"
    );
    for e in entries {
        s += &format!(
            "{:<16} {:<16} {:>10}  {:<13} {:<12} {:>10}\n",
            e.timestamp.to_string(),
            e.dbname,
            human_bytes(e.size_bytes),
            e.state.to_string(),
            e.sha256.as_deref().map_or("-", |h| &h[..12]),
            e.rows.map_or("-".to_string(), |r| r.to_string())
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
            Some(p) => s += &format!("{:<16} MISSING  {p} (newest {newest})\n", d.dbname),
        }
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
