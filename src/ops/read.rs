//! The checks that everything downstream trusts: SHA-256 of the file, a
//! full gzip decode (CRC and length of every member), the archive scan
//! (completeness, row counts) and `pg_restore --list`, made in one of two
//! ways:
//!
//! - [`read_backup`]: one serial read pass, every check fed from the same
//!   stream, optionally writing the decompressed dump to a seekable scratch
//!   file for a parallel `pg_restore --jobs`. Any gzip file.
//! - an indexed file (its members carry their length, see
//!   [`crate::pipeline::member`]): [`inflate_backup`] inflates the members on
//!   every core into the scratch file, checking each member's CRC and size;
//!   [`check_inflated`] then makes the other checks from the file and the
//!   inflated dump, beside the load of a restore.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::catalog::LocalBackup;
use crate::error::{Error, IoContext, Result};
use crate::ops::{Context, Observer};
use crate::pg::archive::{ArchiveScanner, ArchiveSummary, TableRows};
use crate::pg::tools::{StderrTail, spawn, tool_error};
use crate::pipeline::HashingReader;
use crate::pipeline::encryption;
use crate::pipeline::hash::short;
use crate::pipeline::member::{self, IndexError, InflateError, Member};

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub sha256: String,
    pub size_bytes: u64,
    pub plain_bytes: u64,
    pub archive: ArchiveSummary,
}

/// Reads `b` once; with `plain`, writes the decompressed dump there. Every
/// check that fails names the file and what is wrong with it. An encrypted
/// file is decrypted on the way (the identity from the configuration); the
/// SHA-256 is of its bytes as stored.
pub fn read_backup(
    ctx: &Context,
    b: &LocalBackup,
    mut plain: Option<&mut File>,
    obs: &dyn Observer,
) -> Result<ReadResult> {
    let name = b.file_name();
    let corrupt = |reason: String| corrupt(b, reason);
    let file = File::open(&b.path).ctx(|| format!("opening {}", b.path.display()))?;
    let mut hashed = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let mut list = ListCheck::start(ctx)?;
    let mut scanner = ArchiveScanner::new();
    let bar = obs.bytes(format!("{}: reading", b.dbname));
    let mut plain_bytes = 0u64;
    {
        let encrypted = b.encrypted();
        let source: Box<dyn Read + '_> = if encrypted {
            let ids = crate::pipeline::encryption::identities(&ctx.cfg)?;
            Box::new(ids.open(&mut hashed, &name, b.recipients())?)
        } else {
            Box::new(&mut hashed)
        };
        let mut gz = MultiGzDecoder::new(source);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            ctx.check_cancel()?;
            let n = match gz.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let age = encrypted.then(|| encryption::read_failure(&e)).flatten();
                    return Err(corrupt(age.unwrap_or_else(|| gzip_corrupt(e))));
                }
            };
            let chunk = &buf[..n];
            bar.inc(n);
            plain_bytes += n as u64;
            scanner.feed(chunk).map_err(|e| corrupt(dump_damaged(e)))?;
            list.feed(chunk);
            if let Some(out) = plain.as_deref_mut() {
                out.write_all(chunk)
                    .ctx(|| format!("writing the decompressed copy of {name}"))?;
            }
        }
    }
    let (sha256, size_bytes) = hashed.finish().ctx(|| format!("reading {name}"))?;
    let archive = scanner.finish().map_err(|e| corrupt(dump_damaged(e)))?;
    list.finish()?;
    if let Some(out) = plain {
        out.flush()
            .ctx(|| format!("writing the decompressed copy of {name}"))?;
    }
    Ok(ReadResult {
        sha256,
        size_bytes,
        plain_bytes,
        archive,
    })
}

fn corrupt(b: &LocalBackup, reason: String) -> Error {
    Error::Corrupt {
        file: b.file_name(),
        reason,
    }
}

fn gzip_corrupt(e: impl std::fmt::Display) -> String {
    format!("gzip data is corrupt: {e}")
}

fn dump_damaged(e: impl std::fmt::Display) -> String {
    format!("dump inside is damaged: {e}")
}

/// The open file and its members when `b` is indexed; `None` when it is
/// not (written by gzip, the seed's scripts or a version before the index,
/// or empty): read it with [`read_backup`]. An index that does not add up is
/// damage, named as a serial read would name it.
pub fn indexed(b: &LocalBackup) -> Result<Option<(File, Vec<Member>)>> {
    let file = File::open(&b.path).ctx(|| format!("opening {}", b.path.display()))?;
    let size = file
        .metadata()
        .ctx(|| format!("reading {}", b.path.display()))?
        .len();
    match member::index(&file, size) {
        Ok(Some(index)) if !index.is_empty() => Ok(Some((file, index))),
        Ok(_) => Ok(None),
        Err(IndexError::Io(e)) => Err(Error::io(format!("reading {}", b.file_name()), e)),
        Err(e) => Err(corrupt(b, gzip_corrupt(e))),
    }
}

/// Inflates the members of an indexed backup on `threads` threads into
/// `plain` (each member's CRC32 and size checked); returns the inflated size.
pub fn inflate_backup(
    ctx: &Context,
    b: &LocalBackup,
    (src, index): &(File, Vec<Member>),
    plain: &File,
    threads: usize,
    obs: &dyn Observer,
) -> Result<u64> {
    let bar = obs.bytes(format!("{}: inflating", b.dbname));
    let progress = |n: u64| bar.inc(n as usize);
    member::inflate_into(src, index, plain, threads, &ctx.cancel, &progress)
        .map_err(|e| inflate_error(b, e))
}

/// As [`inflate_backup`], for an encrypted backup: decrypted as it is read
/// (the identity from the configuration), its members inflated on
/// `threads` threads as they arrive. `None` when its members carry no index
/// (nothing written: read it serially).
pub fn inflate_sealed(
    ctx: &Context,
    b: &LocalBackup,
    plain: &File,
    threads: usize,
    obs: &dyn Observer,
) -> Result<Option<u64>> {
    let ids = crate::pipeline::encryption::identities(&ctx.cfg)?;
    let file = File::open(&b.path).ctx(|| format!("opening {}", b.path.display()))?;
    let input = BufReader::with_capacity(1 << 20, file);
    let mut plain_gzip = ids.open(input, &b.file_name(), b.recipients())?;
    let bar = obs.bytes(format!("{}: decrypting, inflating", b.dbname));
    let progress = |n: u64| bar.inc(n as usize);
    member::inflate_stream(&mut plain_gzip, plain, threads, &ctx.cancel, &progress)
        .map_err(|e| inflate_error(b, e))
}

/// A parallel inflation's failure, named for `b`. A read failure of an
/// encrypted file is age's authentication failing.
fn inflate_error(b: &LocalBackup, e: InflateError) -> Error {
    match e {
        InflateError::Read(e) => match b.encrypted().then(|| encryption::read_failure(&e)) {
            Some(Some(reason)) => corrupt(b, reason),
            _ => Error::io(format!("reading {}", b.file_name()), e),
        },
        InflateError::Corrupt { offset, reason } => corrupt(
            b,
            gzip_corrupt(format!("the member at byte {offset}: {reason}")),
        ),
        InflateError::Write(e) => Error::io(
            format!("writing the decompressed copy of {}", b.file_name()),
            e,
        ),
        InflateError::Cancelled => Error::Interrupted,
    }
}

/// The checks of a backup that [`inflate_backup`] inflated to `plain`
/// (`plain_bytes` long), each on its own thread: the SHA-256 of the file,
/// the archive scan of the dump and `pg_restore --list` of it; then the
/// comparison with the manifest, as after [`read_backup`]. `stop` (or an
/// interrupt) ends the checks early with [`Error::Interrupted`].
pub fn check_inflated(
    ctx: &Context,
    b: &LocalBackup,
    plain: &Path,
    plain_bytes: u64,
    stop: &AtomicBool,
) -> Result<ReadResult> {
    let stopped = || stop.load(Ordering::Relaxed) || ctx.cancel.load(Ordering::Relaxed);
    let (hashed, listed, archive) = std::thread::scope(|s| {
        let hashed = s.spawn(|| {
            let mut hasher = Sha256::new();
            let size = each_chunk(&b.path, &stopped, |c| {
                hasher.update(c);
                Ok(())
            })?;
            Ok::<_, Error>((hex::encode(hasher.finalize()), size))
        });
        let listed = s.spawn(|| ctx.tools.restore_list(plain));
        let mut scanner = ArchiveScanner::new();
        let scanned = each_chunk(plain, &stopped, |c| {
            scanner.feed(c).map_err(|e| corrupt(b, dump_damaged(e)))
        });
        let archive =
            scanned.and_then(|_| scanner.finish().map_err(|e| corrupt(b, dump_damaged(e))));
        let join = "a check thread panicked";
        (
            hashed.join().expect(join),
            listed.join().expect(join),
            archive,
        )
    });
    // The order of a serial read: the file, the dump inside, the listing.
    let (sha256, size_bytes) = hashed?;
    let archive = archive?;
    listed?;
    let read = ReadResult {
        sha256,
        size_bytes,
        plain_bytes,
        archive,
    };
    check_manifest(b, &read)?;
    Ok(read)
}

/// Calls `each` with every 1 MiB of `path`, in order; returns its size.
fn each_chunk(
    path: &Path,
    stopped: &dyn Fn() -> bool,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let what = || format!("reading {}", path.display());
    let mut file = File::open(path).ctx(what)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        if stopped() {
            return Err(Error::Interrupted);
        }
        let n = file.read(&mut buf).ctx(what)?;
        if n == 0 {
            return Ok(size);
        }
        each(&buf[..n])?;
        size += n as u64;
    }
}

/// Compares a read with the backup's manifest, when it has one.
pub fn check_manifest(b: &LocalBackup, r: &ReadResult) -> Result<()> {
    let corrupt = |reason: String| corrupt(b, reason);
    if let Some(e) = &b.manifest_error {
        return Err(corrupt(e.clone()));
    }
    let Some(m) = &b.manifest else {
        return Ok(());
    };
    check_stored(b, &r.sha256, r.size_bytes)?;
    if m.uncompressed_bytes != r.plain_bytes {
        return Err(corrupt("sizes do not match the manifest".into()));
    }
    if m.tables != r.archive.tables {
        return Err(corrupt(
            "row counts in the dump differ from the manifest".into(),
        ));
    }
    Ok(())
}

/// Compares the SHA-256 and size of the file as stored with its manifest's.
pub(crate) fn check_stored(b: &LocalBackup, sha256: &str, size: u64) -> Result<()> {
    let Some(m) = &b.manifest else {
        return Ok(());
    };
    if m.sha256 != sha256 {
        return Err(corrupt(
            b,
            format!(
                "SHA-256 {} does not match the manifest's {} (the file changed after the backup)",
                short(sha256),
                short(&m.sha256)
            ),
        ));
    }
    if m.size_bytes != size {
        return Err(corrupt(b, "sizes do not match the manifest".into()));
    }
    Ok(())
}

/// The checks of an encrypted backup that need no private key: its
/// SHA-256 and size against its manifest (which it must have), and an age
/// header that parses. Returns the SHA-256. The dump inside is not read.
pub fn check_sealed(b: &LocalBackup) -> Result<String> {
    if let Some(e) = &b.manifest_error {
        return Err(corrupt(b, e.clone()));
    }
    if b.manifest.is_none() {
        return Err(corrupt(
            b,
            "encrypted and without a manifest: nothing to check it against".into(),
        ));
    }
    let mut hasher = Sha256::new();
    let size = each_chunk(&b.path, &|| false, |c| {
        hasher.update(c);
        Ok(())
    })?;
    let sha256 = hex::encode(hasher.finalize());
    check_stored(b, &sha256, size)?;
    let file = File::open(&b.path).ctx(|| format!("opening {}", b.path.display()))?;
    age::Decryptor::new_buffered(BufReader::new(file))
        .map_err(|e| corrupt(b, format!("not a readable age file: {e}")))?;
    Ok(sha256)
}

/// The expected tables of a backup: the manifest's, else the scan's.
pub fn expected_tables(b: &LocalBackup, r: &ReadResult) -> Vec<TableRows> {
    match &b.manifest {
        Some(m) => m.tables.clone(),
        None => r.archive.tables.clone(),
    }
}

/// `pg_restore --list` reading the stream on its stdin. It stops reading
/// after the table of contents; the rest of the stream is then not sent.
struct ListCheck {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: Option<StderrTail>,
}

impl ListCheck {
    fn start(ctx: &Context) -> Result<ListCheck> {
        let mut cmd = std::process::Command::new(ctx.tools.program("pg_restore"));
        cmd.arg("--list")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn(&mut cmd, "pg_restore --list")?;
        let stderr = StderrTail::start(&mut child);
        let stdin = child.stdin.take();
        Ok(ListCheck {
            child,
            stdin,
            stderr: Some(stderr),
        })
    }

    fn feed(&mut self, chunk: &[u8]) {
        if let Some(pipe) = &mut self.stdin
            && pipe.write_all(chunk).is_err()
        {
            self.stdin = None; // it has read what it needs and closed the pipe
        }
    }

    fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .ctx(|| "waiting for pg_restore --list".into())?;
        if status.success() {
            Ok(())
        } else {
            let stderr = self
                .stderr
                .take()
                .map(StderrTail::finish)
                .unwrap_or_default();
            Err(tool_error("pg_restore --list", status, &stderr))
        }
    }
}

impl Drop for ListCheck {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
