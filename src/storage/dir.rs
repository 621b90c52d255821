//! A directory as a store: object `a/b/c` is the file `<root>/a/b/c`; its
//! metadata, tags and tier are in `<root>/.meta/a/b/c.json`. Writes go to a
//! hidden temporary file that is hard-linked to its name, so an existing
//! object is never replaced and a crash never leaves half an object.
//!
//! Hidden files (names starting with `.`) are never objects: the sidecars,
//! and in the backup directory the lock, journals and `.partial` files,
//! which belong to the directory, not to the store. [`DirStore::flat`] is
//! the backup directory's view: its own entries only, nothing below, so
//! the seed's layout (`backups/order_db_<ts>.dump.gz`) is the store's.
//!
//! An object's immutability policy and legal hold are in its sidecar too,
//! and a delete is refused while they protect it, as Azure does: the
//! semantics the unit tests of the rules rely on (a directory cannot
//! enforce them against anyone who deletes the file by other means).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Object, Protection, Store, WriteSpec, WriteStats};
use crate::error::{Error, IoContext, Result};
use crate::ui::Bar;

const META_DIR: &str = ".meta";

pub struct DirStore {
    root: PathBuf,
    /// Objects are the root's own files only (names without `/`).
    flat: bool,
}

/// What the sidecar keeps of an object besides its content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Sidecar {
    metadata: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    access_tier: Option<String>,
    created: Option<DateTime<Utc>>,
    etag: Option<String>,
    #[serde(default)]
    protection: Protection,
}

impl DirStore {
    /// A store whose object names may hold `/` (folders under the root).
    pub fn new(root: &Path) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
            flat: false,
        }
    }

    /// A store of the root's own entries: nothing below a subdirectory is
    /// listed and a name with `/` is refused. Nothing depends on the sidecar: a file
    /// written by other means (a backup) is an object with empty metadata.
    pub fn flat(root: &Path) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
            flat: true,
        }
    }

    /// The file of object `name`; names that could leave the root are
    /// refused.
    fn path(&self, name: &str) -> Result<PathBuf> {
        let bad = name.is_empty()
            || name
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('.'))
            || (self.flat && name.contains('/'));
        match bad {
            true => Err(Error::Refused(format!("{name:?} is not an object name"))),
            false => Ok(self.root.join(name)),
        }
    }

    fn sidecar_path(&self, name: &str) -> PathBuf {
        self.root.join(META_DIR).join(format!("{name}.json"))
    }

    fn sidecar(&self, name: &str) -> Sidecar {
        std::fs::read(self.sidecar_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_sidecar(&self, name: &str, s: &Sidecar) -> Result<()> {
        let path = self.sidecar_path(name);
        let text = serde_json::to_vec_pretty(s).expect("plain data serializes");
        create_parent(&path)?;
        let temp = temp_beside(&path);
        std::fs::write(&temp, text).ctx(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, &path).ctx(|| format!("renaming to {}", path.display()))
    }

    fn object(&self, name: String, size: u64) -> Object {
        let s = self.sidecar(&name);
        Object {
            name,
            size,
            metadata: s.metadata,
            tags: s.tags,
            access_tier: s.access_tier,
            created: s.created,
            etag: s.etag,
            protection: s.protection,
        }
    }

    /// Changes the protection an existing object's sidecar keeps.
    fn change_protection(
        &self,
        name: &str,
        f: impl FnOnce(&mut Protection) -> Result<()>,
    ) -> Result<()> {
        if self.head(name)?.is_none() {
            return Err(Error::NoBackup {
                what: format!("{name} in {}", self.root.display()),
            });
        }
        let mut s = self.sidecar(name);
        f(&mut s.protection)?;
        self.save_sidecar(name, &s)
    }

    /// Files under `dir`, as object names relative to the root; in a flat
    /// store every visible entry of the root, a directory too: one where a
    /// backup should be is listed (and its removal fails, named), never
    /// silently skipped. A missing root holds none; a file removed while
    /// listing is skipped.
    fn walk(&self, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", entry.path().display()), e)),
            };
            if meta.is_dir() && !self.flat {
                self.walk(&entry.path(), out)?;
            } else if let Ok(rel) = entry.path().strip_prefix(&self.root) {
                out.push((rel.to_string_lossy().into_owned(), meta.len()));
            }
        }
        Ok(())
    }

    /// Writes what `src` holds as object `name` unless it exists, checking
    /// its SHA-256 against `spec.expect_sha256` before it gets its name.
    fn write_once(
        &self,
        name: &str,
        src: &mut dyn Read,
        spec: &WriteSpec,
        bar: &Bar,
    ) -> Result<WriteStats> {
        let path = self.path(name)?;
        create_parent(&path)?;
        let temp = temp_beside(&path);
        let written = copy_to(&temp, src, bar).and_then(|(sha, n)| {
            super::check_expected(name, &sha, spec)?;
            match std::fs::hard_link(&temp, &path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(super::exists(name)),
                r => r
                    .ctx(|| format!("linking {}", path.display()))
                    .map(|()| (sha, n)),
            }
        });
        let _ = std::fs::remove_file(&temp);
        let (sha, bytes) = written?;
        let obj = super::object_of(name, bytes, &sha, spec);
        self.save_sidecar(
            name,
            &Sidecar {
                metadata: obj.metadata,
                tags: obj.tags,
                access_tier: obj.access_tier,
                created: obj.created,
                etag: obj.etag,
                protection: obj.protection,
            },
        )?;
        Ok(WriteStats {
            bytes,
            blocks: 1,
            resumed_blocks: 0,
        })
    }
}

/// Copies `src` into a new file `temp`, synced; its SHA-256 and length.
fn copy_to(temp: &Path, src: &mut dyn Read, bar: &Bar) -> Result<(String, u64)> {
    let f = File::create(temp).ctx(|| format!("creating {}", temp.display()))?;
    let mut out = crate::pipeline::HashingWriter::new(f);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let got = src
            .read(&mut buf)
            .ctx(|| format!("reading for {}", temp.display()))?;
        if got == 0 {
            break;
        }
        out.write_all(&buf[..got])
            .ctx(|| format!("writing {}", temp.display()))?;
        bar.inc(got);
    }
    let (f, sha, n) = out.finish();
    f.sync_all().ctx(|| format!("writing {}", temp.display()))?;
    Ok((sha, n))
}

fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))
}

/// The file of an object, to read it: a missing one is `NotFound`, as a
/// missing blob is in the Azure driver.
fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("reading {}: {e}", path.display())),
        _ => Error::io(format!("reading {}", path.display()), e),
    })
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

impl Store for DirStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).ctx(|| format!("creating {}", self.root.display()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let mut files = Vec::new();
        self.walk(&self.root, &mut files)?;
        files.sort();
        Ok(files
            .into_iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, size)| self.object(n, size))
            .collect())
    }

    fn head(&self, name: &str) -> Result<Option<Object>> {
        let path = self.path(name)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(Object {
                tags: BTreeMap::new(),
                ..self.object(name.to_string(), m.len())
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn read(&self, name: &str, out: &mut dyn Write, cancel: &AtomicBool, bar: &Bar) -> Result<u64> {
        let path = self.path(name)?;
        let mut f = open(&path)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let got = f
                .read(&mut buf)
                .ctx(|| format!("reading {}", path.display()))?;
            if got == 0 {
                return Ok(n);
            }
            super::copy_out(name, &buf[..got], out, cancel, bar)?;
            n += got as u64;
        }
    }

    fn read_small(&self, name: &str, _cancel: &AtomicBool) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        let f = open(&path)?;
        let mut out = Vec::new();
        f.take(super::MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut out)
            .ctx(|| format!("reading {}", path.display()))?;
        super::small(name, out)
    }

    fn write_file(
        &self,
        path: &Path,
        name: &str,
        spec: &WriteSpec,
        _cancel: &AtomicBool,
        bar: &Bar,
    ) -> Result<WriteStats> {
        let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        self.write_once(name, &mut f, spec, bar)
    }

    fn write_bytes(&self, name: &str, bytes: &[u8], spec: &WriteSpec) -> Result<()> {
        let mut src = bytes;
        self.write_once(name, &mut src, spec, &Bar::hidden())
            .map(drop)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        if let Some(e) = self.sidecar(name).protection.refusal(name, Utc::now()) {
            return Err(e);
        }
        for p in [path, self.sidecar_path(name)] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("removing {}", p.display()), e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        if self.head(name)?.is_none() {
            return Err(Error::NoBackup {
                what: format!("{name} in {}", self.root.display()),
            });
        }
        let mut s = self.sidecar(name);
        s.tags = tags.clone();
        self.save_sidecar(name, &s)
    }

    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
        self.change_protection(name, |p| {
            p.legal_hold = hold;
            Ok(())
        })
    }

    fn set_policy(&self, name: &str, policy: &super::Policy) -> Result<()> {
        self.change_protection(name, |p| super::apply_policy(name, p, policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_write_once_with_metadata_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let s = DirStore::new(dir.path());
        let spec = WriteSpec {
            metadata: BTreeMap::from([("sha256".into(), "x".into())]),
            tags: BTreeMap::from([("tier".into(), "daily".into())]),
            ..Default::default()
        };
        s.write_bytes("daily/o/a.dump.gz", b"abc", &spec).unwrap();
        assert!(s.write_bytes("daily/o/a.dump.gz", b"x", &spec).is_err());
        let l = s.list("daily/").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].size, l[0].tags["tier"].as_str()), (3, "daily"));
        s.set_tags("daily/o/a.dump.gz", &BTreeMap::new()).unwrap();
        assert!(s.list("").unwrap()[0].tags.is_empty());
        let mut out = Vec::new();
        let no = AtomicBool::new(false);
        s.read("daily/o/a.dump.gz", &mut out, &no, &Bar::hidden())
            .unwrap();
        assert_eq!(out, b"abc");
        assert!(s.path("../x").is_err() && s.path("a/.meta").is_err());
        let wrong = WriteSpec {
            expect_sha256: Some("0".repeat(64)),
            ..Default::default()
        };
        let e = s
            .write_bytes("daily/o/b.dump.gz", b"abc", &wrong)
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert_eq!(s.list("").unwrap().len(), 1);
        s.delete("daily/o/a.dump.gz").unwrap();
        assert!(s.list("").unwrap().is_empty());
        let gone = s.read_small("daily/o/a.dump.gz", &no).unwrap_err();
        assert_eq!(gone.kind(), crate::error::Kind::NotFound, "{gone}");
    }

    #[test]
    fn a_flat_store_is_the_directorys_own_visible_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "a.dump.gz",
            ".lock",
            ".a.dump.gz.1.partial",
            "sub/b.dump.gz",
        ] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), b"xy").unwrap();
        }
        let s = DirStore::flat(root);
        let l = s.list("").unwrap();
        let names: Vec<&str> = l.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a.dump.gz", "sub"]);
        assert_eq!((l[0].size, l[0].metadata.is_empty()), (2, true));
        assert!(s.path("sub/b.dump.gz").is_err() && s.path(".lock").is_err());
        assert_eq!(
            DirStore::new(root).list("").unwrap()[1].name,
            "sub/b.dump.gz"
        );
        s.delete("a.dump.gz").unwrap();
        assert!(s.delete("sub").is_err(), "a directory is never removed");
        assert_eq!(s.list("").unwrap().len(), 1);
        assert!(root.join(".lock").exists());
        let gone = DirStore::flat(&root.join("missing"));
        assert!(gone.list("").unwrap().is_empty());
    }
}
