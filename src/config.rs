//! The TOML configuration: where backups live, how long they are kept, and
//! which databases to back up.
//!
//! Loading resolves the file (`--config`, `$VALERIX_BACKUP_CONFIG`,
//! `./valerix-backup.toml`), rejects unknown keys (a typo must not silently
//! fall back to a default) and validates every name that later becomes part of
//! a file name or an SQL identifier. Passwords are never stored here: a
//! database names the environment variable that holds its password.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const ENV_CONFIG: &str = "VALERIX_BACKUP_CONFIG";
pub const DEFAULT_CONFIG: &str = "valerix-backup.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the local backups; relative paths are taken from the
    /// directory of the config file, so cron's working directory does not
    /// matter.
    pub backup_dir: PathBuf,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Directory holding pg_dump, pg_restore and psql; PATH when absent.
    #[serde(default)]
    pub pg_bin_dir: Option<PathBuf>,
    /// gzip level 1-9 of the backup files.
    #[serde(default = "default_level")]
    pub compression_level: u32,
    /// Compression threads (0 = one per core).
    #[serde(default)]
    pub compression_threads: usize,
    /// `pg_restore --jobs` (0 = one per core).
    #[serde(default)]
    pub restore_jobs: usize,
    /// Database used to create, rename and drop the others.
    #[serde(default = "default_maintenance_db")]
    pub maintenance_db: String,
    #[serde(rename = "database", default)]
    pub databases: Vec<Database>,
    /// Where the config was read from (not part of the TOML).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The TARGET word on the command line (`order`, `inventory`).
    pub name: String,
    /// The PostgreSQL database name; also the backup file name prefix.
    pub dbname: String,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// Environment variable holding the password; libpq's own PGPASSWORD or
    /// ~/.pgpass apply when absent.
    #[serde(default)]
    pub password_env: Option<String>,
}

fn default_retention_days() -> u32 {
    7
}
fn default_level() -> u32 {
    6
}
fn default_maintenance_db() -> String {
    "postgres".into()
}
fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> u16 {
    5432
}

impl Config {
    /// The config path chosen by `--config`, then the environment, then the
    /// working directory.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        if let Some(p) = explicit {
            return p.to_path_buf();
        }
        match std::env::var_os(ENV_CONFIG) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_CONFIG),
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            msg: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "not found (pass --config FILE or set {ENV_CONFIG}; \
                     valerix-backup.example.toml is a template)"
                ),
                _ => e.to_string(),
            },
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let bad = |msg: String| Error::Config {
            path: path.to_path_buf(),
            msg,
        };
        let mut cfg: Config = toml::from_str(text).map_err(|e| bad(one_line_toml_error(&e)))?;
        cfg.path = path.to_path_buf();
        if cfg.backup_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            cfg.backup_dir = base.join(&cfg.backup_dir);
        }
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.databases.is_empty() {
            return Err("no [[database]] configured".into());
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(format!(
                "compression_level {} is out of range 1-9",
                self.compression_level
            ));
        }
        if self.retention_days == 0 {
            return Err("retention_days must be at least 1".into());
        }
        for (i, db) in self.databases.iter().enumerate() {
            check_word("database name", &db.name)?;
            check_word("dbname", &db.dbname)?;
            if db.name == "both" || db.name == "all" {
                return Err(format!("database name '{}' is reserved", db.name));
            }
            if db.user.is_empty() {
                return Err(format!("database '{}': user is empty", db.name));
            }
            for other in &self.databases[..i] {
                if other.name == db.name || other.dbname == db.dbname {
                    return Err(format!(
                        "databases '{}' and '{}' share a name or dbname",
                        other.name, db.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn compression_threads(&self) -> usize {
        nonzero_or_cores(self.compression_threads)
    }

    pub fn restore_jobs(&self) -> usize {
        nonzero_or_cores(self.restore_jobs)
    }

    /// Resolves command-line targets: none, `both` or `all` select every
    /// database; otherwise each word must be a configured `name` or `dbname`.
    pub fn select(&self, targets: &[String]) -> Result<Vec<&Database>> {
        if targets.is_empty() || targets.iter().any(|t| t == "both" || t == "all") {
            return Ok(self.databases.iter().collect());
        }
        let mut out: Vec<&Database> = Vec::new();
        for t in targets {
            check_word("target", t).map_err(|_| Error::Invalid {
                what: "target",
                value: t.clone(),
                why: "a target is a database name from the config, not a path",
            })?;
            let db = self
                .databases
                .iter()
                .find(|d| &d.name == t || &d.dbname == t)
                .ok_or_else(|| Error::UnknownTarget {
                    target: t.clone(),
                    known: self.known_targets(),
                })?;
            if !out.iter().any(|d| d.name == db.name) {
                out.push(db);
            }
        }
        Ok(out)
    }

    pub fn known_targets(&self) -> String {
        let names: Vec<&str> = self.databases.iter().map(|d| d.name.as_str()).collect();
        format!("{}, both", names.join(", "))
    }
}

impl Database {
    /// The password from `password_env`, if configured. A configured but unset
    /// variable is an error: falling back to another password would hide it.
    pub fn password(&self) -> Result<Option<String>> {
        let Some(var) = &self.password_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(Error::Check(format!(
                "environment variable {var} (password_env of database '{}') is not set",
                self.name
            ))),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({}@{}:{})",
            self.dbname, self.user, self.host, self.port
        )
    }
}

/// Names that end up in file names and identifiers: letters, digits, `_`, `-`.
fn check_word(what: &str, s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{s}' must be 1-63 letters, digits, '_' or '-'"
        ))
    }
}

fn nonzero_or_cores(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// toml's errors span several lines with a source excerpt; keep the first
/// line plus the location so the message stays on one line.
fn one_line_toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
backup_dir = "./backups"
[[database]]
name = "order"
dbname = "order_db"
user = "order_user"
password_env = "ORDER_DB_PASSWORD"
[[database]]
name = "inventory"
dbname = "inventory_db"
port = 5433
user = "inventory_user"
"#;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(GOOD, Path::new("/etc/vx/valerix-backup.toml")).unwrap();
        assert_eq!(c.retention_days, 7);
        assert_eq!(c.backup_dir, Path::new("/etc/vx/./backups"));
        assert_eq!(c.databases[1].port, 5433);
        assert_eq!(c.databases[0].host, "localhost");
    }

    #[test]
    fn selects_targets() {
        let c = Config::parse(GOOD, Path::new("x.toml")).unwrap();
        assert_eq!(c.select(&[]).unwrap().len(), 2);
        assert_eq!(c.select(&["both".into()]).unwrap().len(), 2);
        let one = c.select(&["inventory_db".into()]).unwrap();
        assert_eq!(one[0].name, "inventory");
        let e = c.select(&["payments".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown target 'payments'"), "{e}");
        let e = c.select(&["../x".into()]).unwrap_err().to_string();
        assert!(e.contains("not a path"), "{e}");
    }

    #[test]
    fn rejects_typos_and_bad_names() {
        let e = Config::parse(&GOOD.replace("retention_days", "x"), Path::new("c"));
        assert!(e.is_ok());
        let e = Config::parse(&format!("retension_days = 3\n{GOOD}"), Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("retension_days"), "{e}");
        let e = Config::parse(&GOOD.replace("order_db", "../etc"), Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dbname '../etc'"), "{e}");
        assert!(!e.contains('\n'));
    }
}
