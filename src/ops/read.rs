//! The one read pass over a backup file that everything downstream trusts:
//! SHA-256 of the file, a full gzip decode (CRC and length of every member),
//! the archive scan (completeness, row counts), `pg_restore --list` fed from
//! the same stream, and optionally the decompressed dump written to a
//! seekable scratch file for a parallel `pg_restore --jobs`.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::process::Stdio;

use flate2::read::MultiGzDecoder;

use crate::catalog::LocalBackup;
use crate::error::{Error, IoContext, Result};
use crate::ops::{Context, Observer};
use crate::pg::archive::{ArchiveScanner, ArchiveSummary, TableRows};
use crate::pg::tools::{StderrTail, spawn, tool_error};
use crate::pipeline::HashingReader;
use crate::pipeline::hash::short;

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub sha256: String,
    pub size_bytes: u64,
    pub plain_bytes: u64,
    pub archive: ArchiveSummary,
}

/// Reads `b` once; with `plain`, writes the decompressed dump there. Every
/// check that fails names the file and what is wrong with it.
pub fn read_backup(
    ctx: &Context,
    b: &LocalBackup,
    mut plain: Option<&mut File>,
    obs: &dyn Observer,
) -> Result<ReadResult> {
    let name = b.file_name();
    let corrupt = |reason: String| Error::Corrupt {
        file: name.clone(),
        reason,
    };
    let file = File::open(&b.path).ctx(|| format!("opening {}", b.path.display()))?;
    let mut hashed = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let mut list = ListCheck::start(ctx)?;
    let mut scanner = ArchiveScanner::new();
    let bar = obs.bytes(format!("{}: reading", b.dbname));
    let mut plain_bytes = 0u64;
    {
        let mut gz = MultiGzDecoder::new(&mut hashed);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            ctx.check_cancel()?;
            let n = match gz.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(corrupt(format!("gzip data is corrupt: {e}"))),
            };
            let chunk = &buf[..n];
            bar.inc(n);
            plain_bytes += n as u64;
            scanner
                .feed(chunk)
                .map_err(|e| corrupt(format!("dump inside is damaged: {e}")))?;
            list.feed(chunk);
            if let Some(out) = plain.as_deref_mut() {
                out.write_all(chunk)
                    .ctx(|| format!("writing the decompressed copy of {name}"))?;
            }
        }
    }
    let (sha256, size_bytes) = hashed.finish().ctx(|| format!("reading {name}"))?;
    let archive = scanner
        .finish()
        .map_err(|e| corrupt(format!("dump inside is damaged: {e}")))?;
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

/// Compares a read with the backup's manifest, when it has one.
pub fn check_manifest(b: &LocalBackup, r: &ReadResult) -> Result<()> {
    let corrupt = |reason: String| Error::Corrupt {
        file: b.file_name(),
        reason,
    };
    if let Some(e) = &b.manifest_error {
        return Err(corrupt(e.clone()));
    }
    let Some(m) = &b.manifest else {
        return Ok(());
    };
    if m.sha256 != r.sha256 {
        return Err(corrupt(format!(
            "SHA-256 {} does not match the manifest's {} (the file changed after the backup)",
            short(&r.sha256),
            short(&m.sha256)
        )));
    }
    if m.size_bytes != r.size_bytes || m.uncompressed_bytes != r.plain_bytes {
        return Err(corrupt("sizes do not match the manifest".into()));
    }
    if m.tables != r.archive.tables {
        return Err(corrupt(
            "row counts in the dump differ from the manifest".into(),
        ));
    }
    Ok(())
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
