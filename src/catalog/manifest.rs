//! The manifest written beside each backup: enough to check the file without
//! trusting it (SHA-256, sizes) and to check a restore without trusting it
//! (row counts per table, taken from the dump stream itself).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Stamp;
use crate::error::{Error, Result};
use crate::pg::archive::TableRows;
use crate::pipeline::hash::check_sha256;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub tool_version: String,
    /// The config's target name (`order`).
    pub database: String,
    /// The PostgreSQL database name (`order_db`).
    pub dbname: String,
    pub host: String,
    pub port: u16,
    pub timestamp: Stamp,
    pub file: String,
    /// SHA-256 of the whole file as stored (.dump.gz, or .dump.gz.age:
    /// the encrypted bytes), hex.
    pub sha256: String,
    pub size_bytes: u64,
    /// Size of the pg_dump stream inside the gzip.
    pub uncompressed_bytes: u64,
    pub compression: String,
    pub pg_dump_version: String,
    pub server_version: String,
    pub archive_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_secs: f64,
    pub tables: Vec<TableRows>,
    /// How the file is encrypted; absent for an unencrypted one (and in
    /// every manifest written before encryption existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// A configuration archive's contents, in place of `tables` (which is
    /// then empty, as the pg_dump fields are); absent for a database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigContents>,
}

/// What a configuration archive holds and what it left out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ConfigContents {
    /// Every regular file of the archive, in archive order.
    pub files: Vec<ConfigFile>,
    /// Files left out on purpose (secrets without encryption), and globs
    /// that matched nothing.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// What could not be read (a missing file, a failed command): the
    /// backup of the configuration failed, the archive holds the rest.
    #[serde(default)]
    pub unreadable: Vec<Skipped>,
}

/// One file of a configuration archive: its member name
/// (`files/etc/valerix/docker-compose.yml`, `commands/1-kubectl-get.out`),
/// where it came from, its size and permission bits (`0644`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigFile {
    pub path: String,
    pub source: String,
    pub size: u64,
    pub mode: String,
}

/// A path or command left out, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    pub source: String,
    pub reason: String,
}

/// The encryption of a backup file: the gzip file, age-encrypted to these
/// recipients (public keys), so `list` can say which key opens it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Encryption {
    /// `age` (X25519 recipients, the age v1 format).
    pub scheme: String,
    pub recipients: Vec<String>,
}

impl Manifest {
    /// A manifest's bytes, read from `file` (named in errors): an error when
    /// they are not a manifest, or its hash is not one.
    pub fn from_json(file: &str, bytes: &[u8]) -> Result<Manifest> {
        let corrupt = |reason: String| Error::Corrupt {
            file: file.to_string(),
            reason,
        };
        let mut m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("unreadable manifest: {e}")))?;
        // Checked here once, so that no reader of a hand-edited or damaged
        // manifest trips over a hash that is not one.
        m.sha256 = check_sha256("its sha256", &m.sha256)
            .map_err(|reason| corrupt(format!("unusable manifest: {reason}")))?;
        Ok(m)
    }

    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}
