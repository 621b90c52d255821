//! File-system helpers that keep two promises: no file ever appears under
//! its final name before it is complete and on disk, and backups are private
//! (files 0600 in a 0700 directory).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub const PARTIAL_SUFFIX: &str = ".partial";

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
        let temp = dir.join(format!(".{name}.{}{PARTIAL_SUFFIX}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .ctx(|| format!("creating {}", temp.display()))?;
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
/// dump of a restore).
pub struct ScratchFile {
    pub path: PathBuf,
}

impl ScratchFile {
    pub fn create(dir: &Path, name: &str) -> Result<(ScratchFile, File)> {
        let path = dir.join(format!(".{name}.{}{PARTIAL_SUFFIX}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        Ok((ScratchFile { path }, file))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
