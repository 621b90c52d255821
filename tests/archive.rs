//! The custom-archive scanner against real pg_dump output: row counts equal
//! the database's, any chunking gives the same answer, and every truncation
//! of the stream is caught.

mod common;

use std::process::Command;

use common::*;
use valerix_backup::pg::archive::{ArchiveScanner, ArchiveSummary};

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
