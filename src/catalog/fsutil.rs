//! File-system helpers that keep three promises: no file ever appears under
//! its final name before it is complete and on disk, backups are private
//! (files 0600 in a 0700 directory), and a run's temporary files are removed
//! by another run only once their owner is gone.
//!
//! Ownership is an exclusive `flock` held on the open file for as long as
//! the owner lives: the kernel drops it when the process dies (SIGKILL, OOM,
//! container stop included), so "is the owner gone?" is one `try_lock`, with
//! no pid files to go stale and no pid reuse to fool it. flock locks belong
//! to the open file, so two threads of the agent exclude each other too.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};

pub const PARTIAL_SUFFIX: &str = ".partial";

/// A name for a temporary file beside `target`'s directory, unique to this
/// process and call (the agent writes the same state file from two jobs).
fn temp_name(dir: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{name}.{}-{n}{PARTIAL_SUFFIX}",
        std::process::id()
    ))
}

/// Creates `path` (which must not exist), 0600, and locks it for this owner.
fn create_owned(path: &Path, read: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(read)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .ctx(|| format!("creating {}", path.display()))?;
    file.try_lock()
        .map_err(|e| Error::io(format!("locking {}", path.display()), e.into()))?;
    Ok(file)
}

/// The file at `path`, locked, when its owner is gone: `None` while a live
/// run holds it, or when the name now points at another file (the owner
/// replaced or removed it between our open and our lock).
pub fn claim_abandoned(path: &Path) -> Result<Option<File>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => {
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
    }
    let same = match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    Ok(same.then_some(file))
}

/// A small file under its final name that stays locked while its owner
/// lives (the journal of a restore): written complete under a temporary
/// name, then renamed, so nobody ever sees it half-written or unlocked.
#[derive(Debug)]
pub struct OwnedFile {
    file: File,
    pub path: PathBuf,
}

impl OwnedFile {
    /// Fails when `path` exists: two runs never share one.
    pub fn create(path: &Path, bytes: &[u8]) -> Result<OwnedFile> {
        let file = Self::write_locked(path, bytes, false)?;
        Ok(OwnedFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Replaces the content in one rename; the new file is locked before it
    /// takes the name, the old one released after.
    pub fn replace(&mut self, bytes: &[u8]) -> Result<()> {
        self.file = Self::write_locked(&self.path, bytes, true)?;
        Ok(())
    }

    /// Removes the file while still holding it.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).ctx(|| format!("removing {}", self.path.display()))?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }

    /// Writes `bytes` into a new locked file and gives it the name `path`:
    /// by rename when replacing, else by hard link, which fails when the name
    /// is taken.
    fn write_locked(path: &Path, bytes: &[u8], replace: bool) -> Result<File> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temp = temp_name(dir, &name);
        let mut file = create_owned(&temp, false)?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .ctx(|| format!("writing {}", temp.display()))
            .and_then(|()| {
                if replace {
                    std::fs::rename(&temp, path)
                } else {
                    std::fs::hard_link(&temp, path)
                }
                .ctx(|| format!("naming {}", path.display()))
            });
        let _ = std::fs::remove_file(&temp);
        written?;
        sync_dir(dir)?;
        Ok(file)
    }
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .ctx(|| format!("creating backup directory {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).ctx(|| format!("reading {}", dir.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        // The seed's directory was created with the default umask; tighten it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .ctx(|| format!("restricting permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// A file being written under a hidden temporary name in the same directory;
/// [`AtomicFile::commit`] fsyncs it, renames it to its final name and fsyncs
/// the directory. Dropped without commit, it deletes itself.
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let temp = temp_name(dir, &name);
        let file = create_owned(&temp, false)?;
        Ok(AtomicFile {
            file: Some(file),
            temp,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is open until commit")
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Refuses to replace an existing file: backups are write-once.
    pub fn commit(self) -> Result<PathBuf> {
        if self.target.exists() {
            return Err(crate::error::Error::Refused(format!(
                "{} already exists; not replacing it",
                self.target.display()
            )));
        }
        self.commit_replacing()
    }

    /// Like [`AtomicFile::commit`], but replaces an existing file (state
    /// files, never backups).
    pub fn commit_replacing(mut self) -> Result<PathBuf> {
        let file = self.file.take().expect("commit once");
        file.sync_all()
            .ctx(|| format!("flushing {} to disk", self.temp.display()))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target)
            .ctx(|| format!("renaming to {}", self.target.display()))?;
        sync_dir(self.target.parent().unwrap_or(Path::new(".")))?;
        Ok(self.target.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.temp.exists() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes a small file atomically (manifests).
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.file()
        .write_all(bytes)
        .ctx(|| format!("writing {}", f.temp_path().display()))?;
    f.commit().map(drop)
}

/// Writes a small file atomically, replacing an existing one.
pub fn replace_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(target)?;
    f.file()
        .write_all(bytes)
        .ctx(|| format!("writing {}", f.temp_path().display()))?;
    f.commit_replacing().map(drop)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// A private scratch file that is removed when dropped (the decompressed
/// dump of a restore or a deep verify). It stays locked, and so safe from
/// another run's clean-up, until then, even after the writer is closed and
/// while pg_restore reads it by name.
pub struct ScratchFile {
    pub path: PathBuf,
    _owner: File,
}

impl ScratchFile {
    pub fn create(dir: &Path, name: &str) -> Result<(ScratchFile, File)> {
        let path = temp_name(dir, name);
        let file = create_owned(&path, true)?;
        let owner = file
            .try_clone()
            .ctx(|| format!("opening {}", path.display()))?;
        Ok((
            ScratchFile {
                path,
                _owner: owner,
            },
            file,
        ))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
