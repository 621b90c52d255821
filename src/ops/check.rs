//! `config check`: the configuration and everything it depends on, checked
//! before the night it is needed: the PostgreSQL tools (present, one major
//! version, not older than the servers), each database (reachable with its
//! credentials), the container (reachable), the schedule, the webhooks.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::Context;
use crate::pg::db::MIN_SERVER_VERSION;
use crate::pg::tools::run;
use crate::storage::Store;
use crate::storage::azure::AzureStore;

#[derive(Debug, Serialize)]
pub struct CheckItem {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct ConfigCheck {
    pub config: String,
    pub items: Vec<CheckItem>,
}

impl ConfigCheck {
    pub fn outcome(&self) -> Result<()> {
        let bad: Vec<&str> = self
            .items
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.what.as_str())
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::Unsound(format!(
                "config check: {} problem(s): {}",
                bad.len(),
                bad.join(", ")
            )))
        }
    }
}

fn item(what: impl Into<String>, r: std::result::Result<String, String>) -> CheckItem {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    CheckItem {
        what: what.into(),
        ok,
        detail,
    }
}

/// The major version in `pg_dump (PostgreSQL) 15.18 (Debian ...)`.
fn major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
}

pub fn check(ctx: &Context) -> ConfigCheck {
    let mut items = Vec::new();
    let mut majors = Vec::new();
    for tool in ["pg_dump", "pg_restore", "psql"] {
        let mut cmd = std::process::Command::new(ctx.tools.program(tool));
        cmd.arg("--version");
        let r = run(cmd, tool, None)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                let v = v.trim().to_string();
                majors.push(major(&v).ok_or(format!("cannot read the version in '{v}'"))?);
                Ok(v)
            });
        items.push(item(tool, r));
    }
    let client = majors.iter().min().copied();
    if majors.windows(2).any(|w| w[0] != w[1]) {
        items.push(item(
            "tool versions",
            Err(format!("mixed major versions {majors:?}")),
        ));
    }
    for db in &ctx.cfg.databases {
        let r = ctx
            .tools
            .query(db, &db.dbname, "SHOW server_version_num;")
            .map_err(|e| e.to_string())
            .and_then(|rows| {
                let num: u32 = rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|s| s.parse().ok())
                    .ok_or("no server version")?;
                let server = num / 10000;
                match client {
                    Some(c) if c < server => Err(format!(
                        "server is PostgreSQL {server}, pg_dump is {c}: pg_dump must be at \
                         least the server's major version"
                    )),
                    _ if num < MIN_SERVER_VERSION => Err(format!(
                        "server is PostgreSQL {server}: backups work, but restore and verify \
                         --deep need 14 or newer"
                    )),
                    _ => Ok(format!("reachable, PostgreSQL {server}")),
                }
            });
        items.push(item(format!("database {}", db.describe()), r));
    }
    if let Some(enc) = &ctx.cfg.encryption {
        items.push(item(
            "encryption",
            Ok(format!(
                "new backups age-encrypted to {} recipient(s)",
                enc.recipients.len()
            )),
        ));
    }
    if let Some(r) = identity(ctx) {
        items.push(item("identity file", r));
    }
    for (what, r) in crate::ops::config_backup::check(ctx) {
        items.push(item(what, r));
    }
    if let Some(az) = &ctx.cfg.azure {
        let r = AzureStore::open(az)
            .and_then(|s| s.list(&format!("{}daily/", az.prefix)).map(|b| (s, b)))
            .map(|(s, b)| format!("{} reachable ({} daily blobs)", s.describe(), b.len()))
            .map_err(|e| e.to_string());
        items.push(item("azure container", r));
    }
    // Parsed at load (a wrong expression is a config error); reported so
    // the check shows what the agent will run.
    let s = &ctx.cfg.agent.schedule;
    let schedule = format!("{} jobs in {}", s.entries.len(), s.tz);
    items.push(item("agent schedule", Ok(schedule)));
    for (i, w) in ctx.cfg.alert.webhook.iter().enumerate() {
        let r = w.resolve().and_then(|u| {
            url::Url::parse(&u)
                .map(|u| format!("{:?} webhook to {}", w.kind, u.host_str().unwrap_or("?")))
                .map_err(|e| format!("not a URL: {e}"))
        });
        items.push(item(format!("alert.webhook[{i}]"), r));
    }
    ConfigCheck {
        config: ctx.cfg.path.display().to_string(),
        items,
    }
}

/// The identity file, when one is named: it must load, and hold a key of
/// one of the recipients, or the restores it is kept for would fail.
fn identity(ctx: &Context) -> Option<std::result::Result<String, String>> {
    let path = ctx.cfg.identity_path()?;
    let r = crate::pipeline::encryption::identities(&ctx.cfg)
        .map_err(|e| e.to_string())
        .and_then(|ids| {
            let ours = ctx.cfg.encryption.as_ref().map(|e| &e.recipients);
            let opens = |r: &String| ids.public_keys().contains(r);
            match ours {
                Some(rs) if !rs.iter().any(opens) => Err(format!(
                    "{}: none of its keys ({}) is in encryption.recipients: it cannot open new \
                 backups",
                    path.display(),
                    ids.public_keys().join(", ")
                )),
                _ => Ok(format!(
                    "{}: {} key(s), opens backups made for {}",
                    path.display(),
                    ids.public_keys().len(),
                    ids.public_keys().join(", ")
                )),
            }
        });
    Some(r)
}
