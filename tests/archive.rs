//! The custom-archive scanner against real pg_dump output: row counts equal
//! the database's, any chunking gives the same answer, and every truncation
//! of the stream is caught.

mod common;

use std::process::Command;

use common::*;
use valerix_backup::pg::archive::{ArchiveScanner, ArchiveSummary};
use valerix_backup::pg::{offsets, rechunk};

fn dump(pg: &Pg, db: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::new(pg_bin().join("pg_dump"))
        .args(["--format=custom", "-h"])
        .arg(&pg.dir)
        .args(["-p", &pg.port.to_string(), "-U", "postgres", db])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn scan(bytes: &[u8], chunk: usize) -> Result<ArchiveSummary, String> {
    let mut s = ArchiveScanner::new();
    for c in bytes.chunks(chunk) {
        s.feed(c).map_err(|e| e.to_string())?;
    }
    s.finish().map_err(|e| e.to_string())
}

#[test]
fn scanner_counts_rows_and_catches_every_truncation() {
    let pg = Pg::start(20);
    pg.psql("order_db", "CREATE TABLE empty_one (a int); CREATE SCHEMA \"odd schema\"; \
                         CREATE TABLE \"odd schema\".\"Odd.Table\" (t text); \
                         INSERT INTO \"odd schema\".\"Odd.Table\" VALUES (E'\\\\.'), (E'a\\nb'), ('\\.')");
    let plain = dump(&pg, "order_db", &["--compress=0"]);
    let whole = scan(&plain, plain.len()).unwrap();
    assert!(
        whole.archive_version.starts_with("1.1"),
        "{}",
        whole.archive_version
    );
    assert!(!whole.compressed);
    assert_eq!(whole.dbname, "order_db");
    let rows = |schema: &str, name: &str| {
        whole
            .tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
            .unwrap()
            .rows
    };
    for t in ["customers", "orders", "order_items", "invoices"] {
        let n: u64 = pg
            .psql("order_db", &format!("SELECT count(*) FROM {t}"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(rows("public", t), n, "{t}");
    }
    assert_eq!(rows("public", "empty_one"), 0);
    assert_eq!(rows("odd schema", "Odd.Table"), 3);

    for chunk in [1, 7, 4096] {
        assert_eq!(
            scan(&plain, chunk).unwrap().tables,
            whole.tables,
            "chunk {chunk}"
        );
    }
    // Every cut but the full length fails, wherever it falls.
    let stride = (plain.len() / 2000).max(1);
    for cut in (0..plain.len())
        .step_by(stride)
        .chain([plain.len() - 1, plain.len() - 5])
    {
        assert!(
            scan(&plain[..cut], 65536).is_err(),
            "cut at {cut} of {} passed",
            plain.len()
        );
    }

    // pg_dump's own compression (the seed's files): structure checked, no counts.
    let compressed = scan(&dump(&pg, "order_db", &[]), 65536).unwrap();
    assert!(compressed.compressed && compressed.tables.is_empty());
    assert_eq!(compressed.data_blocks, whole.data_blocks);

    let e = scan(b"PK\x03\x04 a zip file", 100).unwrap_err();
    assert!(e.contains("not a pg_dump custom-format archive"), "{e}");
}

/// The offsets `pg::offsets::fill` writes are the ones pg_dump writes when
/// it can seek in its output, and pg_restore follows them.
#[test]
fn filled_data_offsets_are_those_pg_dump_writes_to_a_file() {
    use std::os::unix::fs::FileExt;
    let pg = Pg::start(200);
    // A large object too: its data is a block of another kind.
    pg.psql("order_db", "SELECT lo_from_bytea(0, 'a large object')");
    let work = tempfile::tempdir().unwrap();
    let seekable = work.path().join("file.dump");
    dump(
        &pg,
        "order_db",
        &["--compress=0", &format!("--file={}", seekable.display())],
    );
    let piped = dump(&pg, "order_db", &["--compress=0"]);
    let path = work.path().join("piped.dump");
    std::fs::write(&path, &piped).unwrap();
    let data_entries = scan(&piped, piped.len()).unwrap().data_blocks;
    assert!(data_entries >= 5, "{data_entries}");
    assert_eq!(offsets::fill(&open_rw(&path)).unwrap(), data_entries);
    assert_eq!(
        offsets::fill(&open_rw(&path)).unwrap(),
        0,
        "a second fill changes nothing"
    );

    // Byte for byte pg_dump's own seekable archive, but for its creation
    // time (seven integers in the header, before the database name).
    let filled = std::fs::read(&path).unwrap();
    let theirs = std::fs::read(&seekable).unwrap();
    assert_eq!(filled.len(), theirs.len());
    let differ: Vec<usize> = (0..filled.len())
        .filter(|&i| filled[i] != theirs[i])
        .collect();
    assert!(differ.iter().all(|&i| i < 60), "bytes differ at {differ:?}");
    let patched: Vec<usize> = (0..filled.len())
        .filter(|&i| filled[i] != piped[i])
        .collect();
    assert!(!patched.is_empty());

    // pg_restore reads them: one entry pointed at another's block fails.
    restores_as_order_db(&pg, "filled_db", &path);
    // The flags (1 -> 2) mark where each patched 9-byte field starts.
    let fields: Vec<usize> = patched
        .iter()
        .copied()
        .filter(|&i| piped[i] == 1 && filled[i] == 2)
        .collect();
    let (a, b) = (fields[0], fields[1]);
    let f = open_rw(&path);
    f.write_all_at(&filled[b + 1..b + 9], a as u64 + 1).unwrap();
    let out = restore_into(&pg, "misled_db", &path);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unexpected block ID"), "{stderr}");
}

/// `pg_restore --jobs 2 --exit-on-error` of `path` into `db` (created
/// here), as the superuser.
fn restore_into(pg: &Pg, db: &str, path: &std::path::Path) -> std::process::Output {
    pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    Command::new(pg_bin().join("pg_restore"))
        .args(["--exit-on-error", "--jobs", "2", "-h"])
        .arg(&pg.dir)
        .args(["-p", &pg.port.to_string(), "-U", "postgres", "-d", db])
        .arg(path)
        .output()
        .unwrap()
}

/// Restores `path` into a new database `db` and checks that it holds what
/// order_db holds.
fn restores_as_order_db(pg: &Pg, db: &str, path: &std::path::Path) {
    let out = restore_into(pg, db, path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.fingerprint(db), pg.fingerprint("order_db"));
}

/// `path` opened for reading and writing, as `offsets::fill` wants it.
fn open_rw(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// All of `bytes` through `Rechunk`, read `step` bytes at a time.
fn rechunked(bytes: &[u8], step: usize) -> Vec<u8> {
    let mut r = rechunk::Rechunk::new(bytes);
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        let n = std::io::Read::read(&mut r, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Merged chunks: the same archive to pg_restore and to the scan, smaller,
/// and damage still found.
#[test]
fn rechunked_archives_scan_and_restore_as_pg_dump_wrote_them() {
    let pg = Pg::start(300);
    pg.psql(
        "order_db",
        "SELECT lo_from_bytea(0, 'a large object'); \
         CREATE TABLE wide (t text); \
         INSERT INTO wide SELECT repeat(md5(i::text), 3000) FROM generate_series(1, 5) i",
    );
    let plain = dump(&pg, "order_db", &["--compress=0"]);
    let merged = rechunked(&plain, 65536);
    assert!(
        merged.len() * 100 < plain.len() * 97,
        "{} -> {} bytes",
        plain.len(),
        merged.len()
    );
    for step in [1, 7, 4096, 1 << 20] {
        assert!(rechunked(&plain, step) == merged, "read {step} at a time");
    }
    let (theirs, ours) = (scan(&plain, 65536).unwrap(), scan(&merged, 65536).unwrap());
    assert_eq!(ours.tables, theirs.tables);
    assert_eq!(
        (ours.toc_entries, ours.data_blocks),
        (theirs.toc_entries, theirs.data_blocks)
    );
    // Every cut of the input is still a damaged archive after merging.
    let stride = (plain.len() / 300).max(1);
    for cut in (1..plain.len()).step_by(stride).chain([plain.len() - 1]) {
        assert!(
            scan(&rechunked(&plain[..cut], 65536), 65536).is_err(),
            "cut at {cut} of {} passed",
            plain.len()
        );
    }
    // An archive pg_dump compressed itself passes through as it is.
    let compressed = dump(&pg, "order_db", &[]);
    assert!(rechunked(&compressed, 4096) == compressed);

    // pg_restore loads the same database from it, its offsets filled in.
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("merged.dump");
    std::fs::write(&path, &merged).unwrap();
    assert_eq!(offsets::fill(&open_rw(&path)).unwrap(), theirs.data_blocks);
    restores_as_order_db(&pg, "merged_db", &path);
    let lo = "SELECT encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata";
    assert_eq!(pg.psql("merged_db", lo), pg.psql("order_db", lo));
}
