//! The two ways a restore (and `verify --deep`) reads a backup: an indexed
//! file (gzip members that carry their length) is inflated on every core
//! and checked beside the load; any other gzip file is read serially, as
//! before. And a check that fails while the load runs stops it, drops the
//! fresh database and leaves the live one as it was.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::*;

fn manifest_path(dump: &Path) -> String {
    dump.to_string_lossy().replace(".dump.gz", ".manifest.json")
}

/// Edits the manifest of `dump` in place.
fn edit_manifest(dump: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut m = manifest(dump);
    edit(&mut m);
    std::fs::write(manifest_path(dump), m.to_string()).unwrap();
}

/// The gzip members of a file, counted by decoding them one by one.
fn gzip_members(bytes: &[u8]) -> usize {
    let mut rest = bytes;
    let mut n = 0;
    while !rest.is_empty() {
        let mut d = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut d, &mut std::io::sink()).unwrap();
        rest = d.into_inner();
        n += 1;
    }
    n
}

/// Enough rows that the dump spans several 2 MiB gzip members.
const SCALE: u32 = 4000;

#[test]
fn an_indexed_backup_is_inflated_in_parallel_and_restores_the_same_database() {
    let sb = Sandbox::with_scale(SCALE);
    let source = sb.pg.fingerprint("order_db");
    sb.run(&["backup", "order"]).ok();
    let dump = sb.dump_of("order_db");
    let members = gzip_members(&std::fs::read(&dump).unwrap());
    assert!(members >= 3, "only {members} gzip members: raise SCALE");
    sb.pg
        .psql("order_db", "DELETE FROM order_items WHERE line = 2");
    assert_ne!(sb.pg.fingerprint("order_db"), source);

    let out = sb
        .run(&["restore", "latest", "order", "--yes", "--json"])
        .ok();
    assert!(
        out.stderr
            .contains(&format!("inflated in parallel ({members} gzip members")),
        "{}",
        out.stderr
    );
    assert_eq!(sb.pg.fingerprint("order_db"), source);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["ok"], true, "{r}");
    for key in ["verify_secs", "restore_secs", "swap_secs"] {
        assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
    }
    assert_eq!(sb.pg.databases(), ["inventory_db", "order_db", "postgres"]);
    assert_eq!(
        backup_files(&sb.backup_dir()).len(),
        2,
        "{:?}",
        backup_files(&sb.backup_dir())
    );

    let out = sb
        .run(&["verify", "--deep", "latest", "order", "--json"])
        .ok();
    assert!(
        out.stderr.contains("inflated in parallel"),
        "{}",
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["sha256"].as_str().unwrap(), sha256_file(&dump));
    assert!(r["restore_secs"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(sb.pg.databases(), ["inventory_db", "order_db", "postgres"]);
}

#[test]
fn a_plain_gzip_backup_with_a_manifest_is_read_serially_and_restores_the_same_database() {
    let sb = Sandbox::with_scale(SCALE);
    let source = sb.pg.fingerprint("order_db");
    sb.run(&["backup", "order"]).ok();
    let dump = sb.dump_of("order_db");
    // Rewritten by stock gzip (one member, no length in its header), as a
    // backup written before the index, or recompressed by hand, is.
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&dump).unwrap())
        .read_to_end(&mut plain)
        .unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();
    std::fs::write(&dump, &gz).unwrap();
    edit_manifest(&dump, |m| {
        m["sha256"] = sha256_file(&dump).into();
        m["size_bytes"] = (gz.len() as u64).into();
    });
    sb.pg.psql("order_db", "UPDATE orders SET total = 1");

    sb.run(&["verify", "--deep", "latest", "order"]).ok();
    let out = sb.run(&["restore", "latest", "order", "--yes"]).ok();
    assert!(out.stderr.contains("read serially"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("inflated in parallel"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.pg.fingerprint("order_db"), source);
    assert_eq!(sb.pg.databases(), ["inventory_db", "order_db", "postgres"]);
    assert_eq!(
        backup_files(&sb.backup_dir()).len(),
        2,
        "{:?}",
        backup_files(&sb.backup_dir())
    );
}

/// A pg_restore that answers `--list` after 2 s (so that the checks beside
/// the load surely end after the load began) and waits `secs` before a
/// load, leaving its pid in `bin`.
fn slow_load(sb: &Sandbox, secs: u32) -> std::path::PathBuf {
    sb.wrap_tool(
        "pg_restore",
        &format!(
            "[ \"$1\" = --list ] && sleep 2 && exec \"$REAL/pg_restore\" \"$@\"\n\
             here=$(dirname \"$0\")\n\
             echo $$ > \"$here/load.pid\"\n\
             sleep {secs}\n\
             touch \"$here/resumed\"\n\
             exec \"$REAL/pg_restore\" \"$@\""
        ),
    )
}

fn alive(pid: &str) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid.trim().parse().unwrap(), 0) == 0 }
}

#[test]
fn a_check_failing_while_the_load_runs_stops_it_and_leaves_the_live_database() {
    let sb = Sandbox::with_scale(SCALE);
    sb.run(&["backup", "order"]).ok();
    let dump = sb.dump_of("order_db");
    // A valid SHA-256, but not the file's.
    let other = "ab".repeat(32);
    edit_manifest(&dump, |m| m["sha256"] = other.clone().into());
    sb.pg.psql(
        "order_db",
        "UPDATE customers SET country = 'QQ' WHERE id < 9",
    );
    let live = sb.pg.fingerprint("order_db");
    let before = sb.pg.databases();
    let bin = slow_load(&sb, 60);

    for args in [
        &["restore", "latest", "order", "--yes"][..],
        &["verify", "--deep", "latest", "order"][..],
    ] {
        let out = sb.run(args);
        out.fails_with(1, "does not match the manifest's abababababab");
        // The load had begun (the check ran beside it), and was stopped.
        let pid = std::fs::read_to_string(bin.join("load.pid"))
            .unwrap_or_else(|_| panic!("{args:?}: the load never started"));
        assert!(!alive(&pid), "{args:?}: pg_restore still runs");
        assert!(!bin.join("resumed").exists());
        std::fs::remove_file(bin.join("load.pid")).unwrap();

        assert_eq!(sb.pg.databases(), before, "{args:?}: a database was left");
        assert_eq!(sb.pg.fingerprint("order_db"), live, "{args:?}");
        assert_eq!(
            backup_files(&sb.backup_dir()).len(),
            2,
            "{args:?}: a journal or scratch file was left: {:?}",
            backup_files(&sb.backup_dir())
        );
    }
}

/// A pg_restore that loads, then runs `sql` in the database it loaded, as
/// a server that lost rows, or a session that wrote into the fresh
/// database, would leave it. The session's counters are flushed before it
/// ends (a session flushes them when idle, at most once a second, and as
/// it exits): the proof reads what the server has published.
fn load_then(sb: &Sandbox, sql: &str) {
    sb.wrap_tool(
        "pg_restore",
        &format!(
            "[ \"$1\" = --list ] && exec \"$REAL/pg_restore\" \"$@\"\n\
             \"$REAL/pg_restore\" \"$@\" || exit $?\n\
             exec \"$REAL/psql\" -X -q -v ON_ERROR_STOP=1 -c \"{sql}\" \
             -c 'SELECT pg_stat_force_next_flush()' -c 'SELECT 1'"
        ),
    );
}

#[test]
fn the_row_proof_counts_what_the_server_counters_cannot_vouch_for() {
    let sb = Sandbox::with_scale(SCALE);
    sb.run(&["backup", "order"]).ok();
    let m = manifest(&sb.dump_of("order_db"));
    let rows = |name: &str| {
        m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["rows"]
            .as_u64()
            .unwrap()
    };

    // A normal load: the counters prove every table, none is counted.
    for args in [
        &["restore", "latest", "order", "--yes", "--json"][..],
        &["verify", "--deep", "latest", "order", "--json"][..],
    ] {
        let out = sb.run(args).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["results"][0]["tables_counted"], 0, "{args:?}: {v}");
    }

    sb.pg.psql("order_db", "UPDATE orders SET total = 2");
    let live = sb.pg.fingerprint("order_db");
    let before = sb.pg.databases();
    let items = rows("order_items");
    // One row gone (the delete counter shows it), and every row gone by a
    // TRUNCATE (which leaves the insert counter as it was).
    for (sql, left) in [
        (
            "DELETE FROM order_items WHERE ctid = (SELECT min(ctid) FROM order_items)",
            items - 1,
        ),
        ("TRUNCATE order_items", 0),
    ] {
        load_then(&sb, sql);
        for args in [
            &["restore", "latest", "order", "--yes"][..],
            &["verify", "--deep", "latest", "order"][..],
        ] {
            let out = sb.run(args);
            out.fails_with(
                1,
                &format!("restored table public.order_items has {left} rows, the dump has {items}"),
            );
            assert!(
                out.stderr.contains("tables counted with count(*)"),
                "{sql}: {}",
                out.stderr
            );
            assert_eq!(
                sb.pg.databases(),
                before,
                "{sql}, {args:?}: a database was left"
            );
            assert_eq!(sb.pg.fingerprint("order_db"), live, "{sql}, {args:?}");
        }
    }
}

/// A freshly loaded database is what autovacuum picks next, and a
/// non-superuser may not terminate an autovacuum worker: `DROP DATABASE ...
/// WITH (FORCE)` of the scratch database failed on it ("must be a member of
/// the role whose process is being terminated"). Here autovacuum is made
/// slow enough to be still at work in the scratch database when the drop
/// comes, and the drop waits until it is.
#[test]
fn a_scratch_database_autovacuum_is_working_in_is_dropped_all_the_same() {
    let sb = Sandbox::with_scale(SCALE);
    sb.run(&["backup", "order"]).ok();
    // Nothing left for autovacuum elsewhere, so that its workers (3) are
    // free for the scratch database.
    for db in ["order_db", "inventory_db", "postgres", "template1"] {
        sb.pg.psql(db, "VACUUM ANALYZE");
    }
    for setting in [
        "autovacuum_naptime = 1",
        "autovacuum_vacuum_cost_delay = 100",
        "autovacuum_vacuum_cost_limit = 1",
    ] {
        sb.pg
            .psql("postgres", &format!("ALTER SYSTEM SET {setting}"));
    }
    sb.pg.psql("postgres", "SELECT pg_reload_conf()");
    // The superuser on the socket: a non-superuser's pg_stat_activity does
    // not show an autovacuum worker's backend type.
    let bin = sb.wrap_tool(
        "psql",
        &format!(
            "sql=$(cat)\n\
             db=$(printf '%s' \"$sql\" | sed -n 's/^DROP DATABASE IF EXISTS \"\\([^\"]*\\)\".*/\\1/p')\n\
             if [ -n \"$db\" ]; then\n\
               for i in $(seq 600); do\n\
                 n=$(\"$REAL/psql\" -X -At -h '{dir}' -p {port} -U postgres -d postgres -c \
                     \"SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' \
                     AND backend_type = 'autovacuum worker'\" </dev/null)\n\
                 if [ \"$n\" -gt 0 ]; then echo \"$db\" >> \"$(dirname \"$0\")/seen\"; break; fi\n\
                 sleep 0.1\n\
               done\n\
             fi\n\
             printf '%s\\n' \"$sql\" | exec \"$REAL/psql\" \"$@\"",
            dir = sb.pg.dir.display(),
            port = sb.pg.port
        ),
    );
    let before = sb.pg.databases();
    sb.run(&["verify", "--deep", "latest", "order"]).ok();
    let seen = std::fs::read_to_string(bin.join("seen")).unwrap_or_default();
    assert!(
        seen.contains("__verify_"),
        "autovacuum never worked in the scratch database: {seen:?}"
    );
    assert_eq!(sb.pg.databases(), before);
}
