//! The local backup directory: what is in it, how files are named, their
//! manifests, the lock that serializes runs, and retention.
//!
//! Layout, kept compatible with the seed's scripts (`ls backups/*.dump.gz`):
//! ```text
//! backups/order_db_20261125_020000.dump.gz        the backup (gzip of pg_dump -Fc)
//! backups/order_db_20261125_020000.manifest.json  its manifest (hash, sizes, rows)
//! backups/.valerix-backup.lock                    held while a run writes
//! backups/.*.partial                              files being written
//! ```
//! A backup file counts as this tool's own only when its manifest exists;
//! retention never touches anything else.
//!
//! The backups are listed and removed through the [`Store`] trait, over the
//! directory driver's flat view ([`DirStore::flat`]), as the offsite copies
//! are over the Azure driver: one repository, two stores. The lock,
//! `.partial` files and journals are the directory's (hidden, so never
//! objects) and stay file-system code here and in [`fsutil`]. Writes stay
//! [`fsutil`]'s atomic files, 0600 in the 0700 directory; the manifests are
//! the metadata, so the driver's sidecar is never needed.

pub mod copies;
pub mod fsutil;
pub mod lock;
pub mod manifest;
pub mod naming;
pub mod sets;
pub mod stamp;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Config, Database};
use crate::error::{Error, IoContext, Kind, Result};
use crate::storage::Store;
use crate::storage::dir::DirStore;

pub use lock::Lock;
pub use manifest::Manifest;
pub use naming::{
    DUMP_SUFFIX, ENCRYPTED_SUFFIX, FileKind, MANIFEST_SUFFIX, dump_name, dump_name_as, file_part,
    is_encrypted, manifest_name, manifest_of, parse_file_name,
};
pub use stamp::Stamp;

/// One backup file of one database, with its manifest when it has one.
#[derive(Debug, Clone)]
pub struct LocalBackup {
    pub database: String,
    pub dbname: String,
    pub stamp: Stamp,
    pub path: PathBuf,
    pub size: u64,
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read, when it exists but is broken.
    pub manifest_error: Option<String>,
}

impl LocalBackup {
    /// Its file name: `<dbname>_<stamp>.dump.gz`, or `.dump.gz.age` when
    /// it is encrypted.
    pub fn file_name(&self) -> String {
        match self.path.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            None => dump_name(&self.dbname, &self.stamp),
        }
    }

    /// Whether the file is age-encrypted (by its name, which the backup
    /// chose; the read fails by name if the content says otherwise).
    pub fn encrypted(&self) -> bool {
        is_encrypted(&self.file_name())
    }

    /// The recipients its manifest says it was encrypted to.
    pub fn recipients(&self) -> &[String] {
        let enc = self.manifest.as_ref().and_then(|m| m.encryption.as_ref());
        enc.map_or(&[], |e| &e.recipients)
    }

    /// A cheap health check for listings and retention (no re-hash).
    pub fn state(&self) -> BackupState {
        match (&self.manifest, &self.manifest_error) {
            (_, Some(_)) => BackupState::BadManifest,
            (None, None) => BackupState::NoManifest,
            (Some(m), _) if m.size_bytes != self.size => BackupState::SizeMismatch,
            _ => BackupState::Ok,
        }
    }

    /// Complete with a sound manifest: this tool's own, and usable.
    pub fn is_sound(&self) -> bool {
        self.state() == BackupState::Ok
    }
}

impl sets::Member for LocalBackup {
    fn stamp(&self) -> Stamp {
        self.stamp
    }

    fn is_sound(&self) -> bool {
        LocalBackup::is_sound(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupState {
    Ok,
    /// Not written by this tool (or its manifest was lost).
    NoManifest,
    BadManifest,
    /// The file's size differs from the manifest's: truncated or replaced.
    SizeMismatch,
    /// No local file; a copy exists offsite (`list` only).
    OffsiteOnly,
}

impl std::fmt::Display for BackupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupState::Ok => "ok",
            BackupState::NoManifest => "no-manifest",
            BackupState::BadManifest => "bad-manifest",
            BackupState::SizeMismatch => "size-mismatch",
            BackupState::OffsiteOnly => "offsite-only",
        })
    }
}

pub struct Catalog {
    dir: PathBuf,
    /// The backups themselves: the directory's own visible files.
    store: DirStore,
}

impl Catalog {
    /// Opens the backup directory, creating it 0700 when missing.
    pub fn open(cfg: &Config) -> Result<Catalog> {
        fsutil::create_private_dir(&cfg.backup_dir)?;
        Ok(Catalog::open_existing(cfg))
    }

    /// Opens the directory for reading only; a missing one holds no backups.
    pub fn open_existing(cfg: &Config) -> Catalog {
        Catalog {
            dir: cfg.backup_dir.clone(),
            store: DirStore::flat(&cfg.backup_dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn lock(&self) -> Result<Lock> {
        Lock::acquire(&self.dir.join(lock::LOCK_NAME))
    }

    /// Whether a dump (or configuration archive) of `dbname` at `stamp`
    /// is here, encrypted or not.
    pub fn holds_dump(&self, dbname: &str, stamp: &Stamp) -> bool {
        [false, true].into_iter().any(|enc| {
            self.dir.join(dump_name_as(dbname, stamp, enc)).exists()
                || self
                    .dir
                    .join(naming::tar_name_as(dbname, stamp, enc))
                    .exists()
        })
    }

    /// Every backup of the given databases, oldest first.
    pub fn list(&self, dbs: &[&Database]) -> Result<Vec<LocalBackup>> {
        let mut out = Vec::new();
        for object in self.store.list("")? {
            let Some((db, stamp)) = naming::parse_dump_name(&object.name, dbs) else {
                continue;
            };
            let (manifest, manifest_error) = match self.manifest(&manifest_name(&db.dbname, &stamp))
            {
                Ok(m) => (m, None),
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(LocalBackup {
                database: db.name.clone(),
                dbname: db.dbname.clone(),
                stamp,
                path: self.dir.join(&object.name),
                size: object.size,
                manifest,
                manifest_error,
            });
        }
        out.sort_by(|a, b| (a.stamp, &a.database).cmp(&(b.stamp, &b.database)));
        Ok(out)
    }

    /// Manifest `name`, `None` when there is none; read through the store
    /// as the offsite manifests are (with the same 1 MiB bound), and named
    /// in errors by its path, as every local file is.
    fn manifest(&self, name: &str) -> Result<Option<Manifest>> {
        let file = self.dir.join(name).display().to_string();
        let bytes = match self.store.read_small(name, &AtomicBool::new(false)) {
            Ok(b) => b,
            Err(e) if e.kind() == Kind::NotFound => return Ok(None),
            Err(Error::Corrupt { reason, .. }) => return Err(Error::Corrupt { file, reason }),
            Err(e) => return Err(e),
        };
        Manifest::from_json(&file, &bytes).map(Some)
    }

    /// The backup of `db` at `stamp`, or its newest one for `None`.
    pub fn find(&self, db: &Database, stamp: Option<&Stamp>) -> Result<LocalBackup> {
        let all = self.list(&[db])?;
        let found = match stamp {
            Some(s) => all.into_iter().find(|b| &b.stamp == s),
            None => all.into_iter().next_back(),
        };
        found.ok_or_else(|| Error::NoBackup {
            what: match stamp {
                Some(s) => format!(
                    "of {} at {s} in {} (see `valerix-backup list`)",
                    db.dbname,
                    self.dir.display()
                ),
                None => format!("of {} in {}", db.dbname, self.dir.display()),
            },
        })
    }

    /// The newest timestamp at which every one of `dbs` has a sound backup:
    /// `latest` for a restore of several databases, so they come back to one
    /// point in time as the seed's single-timestamp restore did.
    pub fn latest_common(&self, dbs: &[&Database]) -> Result<Option<Stamp>> {
        let all = self.list(dbs)?;
        let per_db: Vec<Vec<Stamp>> = dbs
            .iter()
            .map(|db| {
                all.iter()
                    .filter(|b| b.database == db.name && b.is_sound())
                    .map(|b| b.stamp)
                    .collect()
            })
            .collect();
        Ok(sets::newest_common(&per_db))
    }

    /// Removes `.partial` files left by runs that died. A file whose owner
    /// still runs (a `verify --deep` beside a backup, another agent job) is
    /// locked by it and left alone.
    pub fn remove_stale_partials(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for path in self.hidden_files(fsutil::PARTIAL_SUFFIX) {
            if let Some(_held) = fsutil::claim_abandoned(&path)? {
                std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Hidden files of the directory (`.name...suffix`), sorted.
    pub fn hidden_files(&self, suffix: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with('.') && name.ends_with(suffix)
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Backups past retention: older than `days`, this tool's own (with a
    /// manifest), and never the newest good backup of their database.
    /// Refused (nothing is past retention) when the clock disagrees with the
    /// backups' dates: see [`check_clock`].
    pub fn expired(&self, dbs: &[&Database], days: u32, now: Stamp) -> Result<Vec<LocalBackup>> {
        let all = self.list(dbs)?;
        let sound: Vec<&LocalBackup> = all.iter().filter(|b| b.is_sound()).collect();
        check_clock(&sound, Utc::now())?;
        let cutoff = now.minus_days(days);
        let mut out = Vec::new();
        for db in dbs {
            // Only this tool's own backups are members: a foreign or broken
            // file is never deleted.
            let own: Vec<LocalBackup> = sound
                .iter()
                .filter(|b| b.database == db.name)
                .map(|b| (*b).clone())
                .collect();
            out.extend(
                sets::expired(&own, |b| b.stamp < cutoff)
                    .into_iter()
                    .cloned(),
            );
        }
        Ok(out)
    }

    /// Writes the manifest of a new backup (after its file), atomically.
    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(m).expect("manifest serializes");
        let path = self.dir.join(manifest_name(&m.dbname, &m.timestamp));
        fsutil::write_atomic(&path, &json)
    }

    /// Deletes a backup: its manifest last, so a crash in between leaves a
    /// manifest without data (reported by `list`), never the reverse.
    pub fn remove(&self, b: &LocalBackup) -> Result<()> {
        self.store.delete(&b.file_name())?;
        self.store.delete(&manifest_name(&b.dbname, &b.stamp))
    }
}

/// How far a backup's date may be ahead of the clock (the seconds a run's
/// timestamp is moved on to stay unique), and clocks may disagree.
pub const CLOCK_SLACK: TimeDelta = TimeDelta::minutes(15);

/// `2026-12-01 08:20:20 UTC`, for the clock's messages.
pub fn utc_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Deleting by age trusts the clock. A backup dated after now, or a
/// manifest written after now, says the clock was ahead when it was written
/// or is behind now; the age of every backup is then in doubt (a clock that
/// jumps ahead makes every older backup look past retention), so retention
/// deletes nothing until they agree again.
fn check_clock(backups: &[&LocalBackup], now: DateTime<Utc>) -> Result<()> {
    let limit = now + CLOCK_SLACK;
    if let Some(b) = backups.iter().max_by_key(|b| b.stamp)
        && b.stamp.to_utc() > limit
    {
        return Err(Error::Clock(format!(
            "retention deleted nothing: {} is dated {}, in the future of this machine's \
             clock ({}); check the clock (timedatectl), then move that backup aside",
            b.file_name(),
            utc_time(b.stamp.to_utc()),
            utc_time(now)
        )));
    }
    let written = backups
        .iter()
        .filter_map(|b| b.manifest.as_ref().map(|m| (m.finished_at, b)))
        .max_by_key(|(t, _)| *t);
    if let Some((t, b)) = written
        && t > limit
    {
        return Err(Error::Clock(format!(
            "retention deleted nothing: this machine's clock ({}) is behind the time {}'s \
             manifest was written ({}); check the clock (timedatectl)",
            utc_time(now),
            b.file_name(),
            utc_time(t)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup directory with one dump per manifest case, listed.
    #[test]
    fn manifests_read_through_the_store_keep_their_states() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "backup_dir = {:?}\n[[database]]\nname = \"o\"\ndbname = \"o\"\nuser = \"u\"\n",
            dir.path()
        );
        let cfg = Config::parse(&text, Path::new("x.toml")).unwrap();
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
        for ts in ["20261101_020000", "20261102_020000", "20261103_020000"] {
            write(&format!("o_{ts}.dump.gz"), b"dump");
        }
        write("o_20261102_020000.manifest.json", b"{not json");
        let huge = vec![b' '; (crate::storage::MAX_MANIFEST_BYTES + 1) as usize];
        write("o_20261103_020000.manifest.json", &huge);
        let catalog = Catalog::open_existing(&cfg);
        let db = &cfg.databases[0];
        let all = catalog.list(&[db]).unwrap();
        let states: Vec<BackupState> = all.iter().map(LocalBackup::state).collect();
        use BackupState::*;
        assert_eq!(states, [NoManifest, BadManifest, BadManifest]);
        let path = |ts: &str| dir.path().join(format!("o_{ts}.manifest.json"));
        let bad = all[1].manifest_error.as_deref().unwrap();
        let want = format!(
            "{}: unreadable manifest: ",
            path("20261102_020000").display()
        );
        assert!(bad.starts_with(&want), "{bad}");
        let big = all[2].manifest_error.as_deref().unwrap();
        let want = format!(
            "{}: larger than 1024 KiB",
            path("20261103_020000").display()
        );
        assert!(big.starts_with(&want), "{big}");
    }
}
