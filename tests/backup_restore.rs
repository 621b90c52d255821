//! End-to-end: backup, verify, restore against a real PostgreSQL, checked by
//! content fingerprints, hashes and the seed's own scripts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn backup_then_restore_gives_back_the_same_databases() {
    let sb = Sandbox::new();
    let before_order = sb.pg.fingerprint("order_db");
    let before_inv = sb.pg.fingerprint("inventory_db");

    let out = sb.run(&["backup"]).ok();
    assert!(out.stdout.contains("order_db") && out.stdout.contains("inventory_db"));

    // One timestamp for both; files 0600 in a 0700 directory; no leftovers.
    let dumps = sb.dumps();
    assert_eq!(dumps.len(), 2, "{dumps:?}");
    let stamp = |p: &std::path::Path| {
        p.to_string_lossy()
            .rsplit('_')
            .take(2)
            .collect::<Vec<_>>()
            .concat()
    };
    assert_eq!(stamp(&dumps[0]), stamp(&dumps[1]));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sb.backup_dir()), 0o700);
    for f in list_dir(&sb.backup_dir()) {
        assert_eq!(mode(&f), 0o600, "{f:?}");
        assert!(!f.to_string_lossy().ends_with(".partial"), "{f:?}");
    }

    // The manifest's hash is the file's; its row counts are the database's.
    let order = sb.dump_of("order_db");
    let m = manifest(&order);
    assert_eq!(m["sha256"].as_str().unwrap(), sha256_file(&order));
    assert_eq!(
        m["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(&order).unwrap().len()
    );
    for t in m["tables"].as_array().unwrap() {
        let name = format!(
            "{}.{}",
            t["schema"].as_str().unwrap(),
            t["name"].as_str().unwrap()
        );
        let live: u64 = sb
            .pg
            .psql("order_db", &format!("SELECT count(*) FROM {name}"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(t["rows"].as_u64().unwrap(), live, "{name}");
    }
    assert_eq!(m["tables"].as_array().unwrap().len(), 4);
    assert!(
        m["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );

    // Stock tools read the file: gunzip -c | pg_restore --list.
    let listed = Command::new("bash")
        .arg("-c")
        // No pipefail: pg_restore stops reading after the TOC, as in the seed.
        .arg(format!(
            "gunzip -c '{}' | pg_restore --list",
            order.display()
        ))
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public orders"));

    // Damage the live databases, then restore both from the backup.
    sb.pg.psql("order_db", "DELETE FROM order_items WHERE order_id < 100; UPDATE orders SET total = 0; SELECT nextval('order_number_seq')");
    sb.pg.psql(
        "inventory_db",
        "DROP VIEW low_stock; TRUNCATE stock_movements",
    );
    assert_ne!(sb.pg.fingerprint("order_db"), before_order);

    let out = sb.run(&["restore", "latest", "both", "--yes"]).ok();
    assert!(
        out.stdout.contains("restored into order_db"),
        "{}",
        out.stdout
    );
    assert_eq!(sb.pg.fingerprint("order_db"), before_order);
    assert_eq!(sb.pg.fingerprint("inventory_db"), before_inv);
    // The replaced databases are gone, the scratch files too.
    assert_eq!(sb.pg.databases(), ["inventory_db", "order_db", "postgres"]);
    assert!(
        list_dir(&sb.backup_dir())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".partial"))
    );
}

#[test]
fn verify_deep_restores_into_a_scratch_database_and_times_it() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    let out = sb
        .run(&["verify", "latest", "order", "--deep", "--json"])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["ok"], true);
    assert!(r["restore_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(
        r["sha256"].as_str().unwrap(),
        sha256_file(&sb.dump_of("order_db"))
    );
    assert_eq!(r["rows"].as_u64().unwrap(), 200 + 1000 + 3000 + 500);
    // The scratch database is dropped again.
    assert_eq!(sb.pg.databases(), ["inventory_db", "order_db", "postgres"]);

    // Plain verify of everything: inventory has no backup yet.
    let out = sb.run(&["verify"]);
    assert_eq!(out.code, 3, "some failed");
    assert!(
        out.error().contains("no backup of inventory_db"),
        "{}",
        out.error()
    );
}

#[test]
fn restore_into_a_new_database_keeps_the_live_one() {
    let sb = Sandbox::new();
    sb.run(&["backup"]).ok();
    let backed_up = sb.pg.fingerprint("order_db");
    sb.pg
        .psql("order_db", "DELETE FROM invoices WHERE order_id > 500");
    let live = sb.pg.fingerprint("order_db");

    let stamp = manifest(&sb.dump_of("order_db"))["timestamp"]
        .as_str()
        .unwrap()
        .to_string();
    sb.run(&["restore", &stamp, "order", "--into", "order_recovered"])
        .ok();
    assert_eq!(sb.pg.fingerprint("order_db"), live, "live database changed");
    assert_eq!(sb.pg.fingerprint("order_recovered"), backed_up);

    // Only one table, the runbook's scenario 3.
    sb.run(&[
        "restore",
        &stamp,
        "order",
        "--into",
        "invoices_only",
        "--table",
        "invoices",
    ])
    .ok();
    let n = sb.pg.psql("invoices_only", "SELECT count(*) FROM invoices");
    assert_eq!(n.trim(), "500");
    let tables = sb.pg.psql(
        "invoices_only",
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables.trim(), "1");

    // --into never overwrites.
    sb.run(&["restore", &stamp, "order", "--into", "order_recovered"])
        .fails_with(2, "already exists");
}

#[test]
fn keep_old_keeps_the_replaced_database() {
    let sb = Sandbox::new();
    sb.run(&["backup", "inventory"]).ok();
    let backed_up = sb.pg.fingerprint("inventory_db");
    sb.pg
        .psql("inventory_db", "DELETE FROM stock WHERE warehouse_id = 2");
    let changed = sb.pg.fingerprint("inventory_db");
    let out = sb
        .run(&["restore", "latest", "inventory", "--yes", "--keep-old"])
        .ok();
    assert!(
        out.stdout.contains("kept as inventory_db__old_"),
        "{}",
        out.stdout
    );
    assert_eq!(sb.pg.fingerprint("inventory_db"), backed_up);
    let old = sb
        .pg
        .databases()
        .into_iter()
        .find(|d| d.starts_with("inventory_db__old_"))
        .unwrap();
    assert_eq!(sb.pg.fingerprint(&old), changed);

    // The post-mortem record names the copy, the steps, what was kept and
    // how to undo it; following its undo gives the replaced data back.
    let rec = sb.json(&["report", "show", "latest-restore", "--json"]);
    assert_eq!(rec["outcome"], "succeeded", "{rec}");
    let dump = sb.dump_of("inventory_db");
    let src = &rec["sources"][0];
    assert_eq!(src["sha256"], manifest(&dump)["sha256"], "{rec}");
    assert_eq!(src["path"], dump.display().to_string());
    assert!(rec["kept"][0].as_str().unwrap().starts_with(&old), "{rec}");
    let steps = common::step_names(&rec);
    assert_eq!(
        steps,
        [
            "inventory_db: verify the backup",
            "inventory_db: load and count",
            "inventory_db: swap names",
            "inventory_db: in all"
        ]
    );
    let reports = sb.backup_dir().join("reports");
    let name = rec["name"].as_str().unwrap();
    for ext in ["json", "md"] {
        let mode = std::fs::metadata(reports.join(format!("{name}.{ext}")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}.{ext}");
    }
    let md = std::fs::read_to_string(reports.join(format!("{name}.md"))).unwrap();
    assert!(md.contains(&old) && md.contains("## How to undo"), "{md}");
    let listed = sb.run(&["report", "list"]).ok().stdout;
    assert!(
        listed.contains(name) && listed.contains("succeeded"),
        "{listed}"
    );
    let undo = rec["undo"][0].as_str().unwrap();
    let sql = undo
        .split_once("): ")
        .expect("the undo line holds its SQL")
        .1;
    for statement in sql.split("; ") {
        sb.pg.psql("postgres", statement);
    }
    assert_eq!(sb.pg.fingerprint("inventory_db"), changed, "undo: {undo}");
}

#[test]
fn restore_recreates_a_database_that_is_gone() {
    // The runbook's scenario 2: fresh infrastructure, the database is missing.
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    let before = sb.pg.fingerprint("order_db");
    sb.pg.psql("postgres", "DROP DATABASE order_db");
    sb.run(&["restore", "latest", "order", "--yes"]).ok();
    assert_eq!(sb.pg.fingerprint("order_db"), before);
}

#[test]
fn the_seeds_own_scripts_read_our_backups() {
    let sb = Sandbox::new();
    let before = sb.pg.fingerprint("order_db");
    sb.run(&["backup"]).ok();

    // verify-backup.sh, unchanged, run where its ./backups is ours.
    let seed = repo().join("tests/fixtures/seed");
    let out = Command::new("bash")
        .arg(seed.join("verify-backup.sh"))
        .current_dir(sb.work.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("All backups verified successfully"), "{text}");

    // restore-databases.sh with only its port constants pointed at the test cluster.
    let script = std::fs::read_to_string(seed.join("restore-databases.sh"))
        .unwrap()
        .replace(
            "ORDER_DB_PORT=\"5432\"",
            &format!("ORDER_DB_PORT=\"{}\"", sb.pg.port),
        )
        .replace(
            "INVENTORY_DB_PORT=\"5433\"",
            &format!("INVENTORY_DB_PORT=\"{}\"", sb.pg.port),
        );
    let path = sb.work.path().join("seed-restore.sh");
    std::fs::write(&path, script).unwrap();
    sb.pg.psql("order_db", "TRUNCATE order_items");
    let stamp = manifest(&sb.dump_of("order_db"))["timestamp"]
        .as_str()
        .unwrap()
        .to_string();
    let out = Command::new("bash")
        .arg(&path)
        .args([&stamp, "order"])
        .current_dir(sb.work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sb.pg.fingerprint("order_db"), before);
}

#[test]
fn wrapper_scripts_keep_the_seeds_interface() {
    let sb = Sandbox::new();
    let script = |name: &str, args: &[&str]| {
        let mut cmd = Command::new(repo().join("scripts").join(name));
        cmd.args(args)
            .current_dir(sb.work.path())
            .env("VALERIX_BACKUP_BIN", bin())
            .env("VALERIX_BACKUP_CONFIG", sb.config_path())
            .env("ORDER_DB_PASSWORD", ORDER_PW)
            .env("INVENTORY_DB_PASSWORD", INVENTORY_PW)
            .stdin(std::process::Stdio::null());
        run(cmd)
    };
    assert_eq!(script("monitor-backups.sh", &[]).code, 1, "no backups yet");
    script("backup-databases.sh", &[]).ok();
    assert_eq!(sb.dumps().len(), 2);
    script("verify-backup.sh", &[]).ok();
    script("monitor-backups.sh", &[]).ok();
    let usage = script("restore-databases.sh", &[]);
    assert_eq!(usage.code, 1);
    assert!(
        usage.stdout.contains("Usage:") && usage.stdout.contains("order_db"),
        "{}",
        usage.stdout
    );
    let before = sb.pg.fingerprint("inventory_db");
    sb.pg.psql(
        "inventory_db",
        "DELETE FROM products WHERE id NOT IN (SELECT product_id FROM stock) ",
    );
    sb.pg.psql("inventory_db", "UPDATE products SET price = 0");
    let stamp = manifest(&sb.dump_of("inventory_db"))["timestamp"]
        .as_str()
        .unwrap()
        .to_string();
    script("restore-databases.sh", &[&stamp, "inventory"]).ok();
    assert_eq!(sb.pg.fingerprint("inventory_db"), before);
}

#[test]
fn list_status_and_retention() {
    let sb = Sandbox::new();
    let st = sb.run(&["status"]);
    assert_eq!(st.code, 1);
    assert!(st.stdout.contains("no backup"), "{}", st.stdout);

    sb.run(&["backup"]).ok();
    sb.run(&["status", "--max-age", "25h"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    sb.run(&["status", "--max-age", "1s"])
        .fails_with(1, "lack a backup younger than 1s");

    // Age the backup by renaming it 10 days back; add files that are not ours.
    let dir = sb.backup_dir();
    let order = sb.dump_of("order_db");
    let old = "order_db_20200101_020000";
    std::fs::rename(&order, dir.join(format!("{old}.dump.gz"))).unwrap();
    std::fs::rename(
        order
            .to_string_lossy()
            .replace(".dump.gz", ".manifest.json"),
        dir.join(format!("{old}.manifest.json")),
    )
    .unwrap();
    std::fs::write(
        dir.join("order_db_20200102_020000.dump.gz"),
        b"made by the old script",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), b"keep me").unwrap();

    // The old one is the only good backup of order_db: retention keeps it.
    assert!(
        sb.run(&["prune", "--dry-run"])
            .ok()
            .stdout
            .contains("nothing past retention")
    );
    let listed: serde_json::Value =
        serde_json::from_str(&sb.run(&["list", "--json"]).ok().stdout).unwrap();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ok", "no-manifest", "ok"], "{listed}");

    // After a new backup it is past retention and goes; foreign files stay.
    let out = sb.run(&["backup", "order"]).ok();
    assert!(
        out.stdout
            .contains(&format!("retention removed {old}.dump.gz")),
        "{}",
        out.stdout
    );
    let names: Vec<String> = list_dir(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with(old)), "{names:?}");
    assert!(
        names.contains(&"notes.txt".to_string())
            && names.contains(&"order_db_20200102_020000.dump.gz".to_string())
    );
    assert_eq!(sb.dumps().len(), 3);
}

#[test]
fn latest_means_the_newest_sound_backup_of_all_databases() {
    let sb = Sandbox::new();
    let at_a = sb.pg.fingerprint("order_db");
    sb.run(&["backup"]).ok(); // A: both databases
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sb.pg.psql(
        "order_db",
        "UPDATE orders SET status = 'paid' WHERE status = 'pending'",
    );
    let at_b = sb.pg.fingerprint("order_db");
    sb.run(&["backup", "order"]).ok(); // B: order only (say inventory's failed)
    let stamp_of = |p: &std::path::Path| manifest(p)["timestamp"].as_str().unwrap().to_string();
    let b = sb.dump_of("order_db");
    let a = stamp_of(&sb.dump_of("inventory_db"));

    // Both databases come back to one point in time: A.
    let out = sb
        .run(&["restore", "latest", "both", "--yes", "--json"])
        .ok();
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for item in r["results"].as_array().unwrap() {
        assert!(item["file"].as_str().unwrap().contains(&a), "{item}");
    }
    assert_eq!(sb.pg.fingerprint("order_db"), at_a);

    // One database alone: its own newest, B.
    sb.run(&["restore", "latest", "order", "--yes"]).ok();
    assert_eq!(sb.pg.fingerprint("order_db"), at_b);

    // B damaged: latest skips it, says so, and restores A.
    let bytes = std::fs::read(&b).unwrap();
    std::fs::write(&b, &bytes[..bytes.len() - 100]).unwrap();
    let out = sb.run(&["restore", "latest", "order", "--yes"]).ok();
    assert!(
        out.stderr.contains(&format!(
            "skipping order_db_{}.dump.gz (size-mismatch)",
            stamp_of(&b)
        )),
        "{}",
        out.stderr
    );
    assert_eq!(sb.pg.fingerprint("order_db"), at_a);
    // verify latest still checks the newest file, and reports the damage.
    sb.run(&["verify", "latest", "order"])
        .fails_with(1, "gzip data is corrupt");
}

/// A copy of `dbname`'s newest backup as if taken at `stamp` (same bytes),
/// with its manifest (see [`manifest_as`]).
fn copy_backup(
    sb: &Sandbox,
    dbname: &str,
    stamp: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> std::path::PathBuf {
    let src = sb.dump_of(dbname);
    let dst = sb.backup_dir().join(format!("{dbname}_{stamp}.dump.gz"));
    std::fs::copy(&src, &dst).unwrap();
    manifest_as(&src, stamp, edit);
    dst
}

/// Writes the manifest of the backup `src` as the one of a backup of the
/// same database at `stamp`: name and time rewritten, then `edit`.
fn manifest_as(src: &std::path::Path, stamp: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut m = manifest(src);
    let dbname = m["dbname"].as_str().unwrap().to_string();
    m["timestamp"] = stamp.into();
    m["file"] = format!("{dbname}_{stamp}.dump.gz").into();
    edit(&mut m);
    let path = src.with_file_name(format!("{dbname}_{stamp}.manifest.json"));
    std::fs::write(path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// Every file in `dir` and its SHA-256 (directories: "dir").
fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    list_dir(dir)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let hash = if p.is_dir() {
                "dir".to_string()
            } else {
                sha256_file(&p)
            };
            (p.file_name().unwrap().to_string_lossy().into_owned(), hash)
        })
        .collect()
}

#[track_caller]
fn assert_warned(r: &common::Run, needle: &str) {
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains(needle)),
        "no warning with {needle:?}:\n{}",
        r.stderr
    );
}

#[track_caller]
fn assert_kept(before: &std::collections::BTreeMap<String, String>, dir: &std::path::Path) {
    let now = snapshot(dir);
    for (name, hash) in before {
        assert_eq!(now.get(name), Some(hash), "{name} changed or went: {now:?}");
    }
}

#[test]
fn a_retention_failure_warns_and_the_new_backup_is_still_uploaded() {
    use common::azurite::Azurite;
    const CONTAINER: &str = "database-backups";
    let sb = Sandbox::new();
    let az = Azurite::start();
    std::fs::write(
        sb.config_path(),
        format!(
            "{}\n[azure]\ncontainer = \"{CONTAINER}\"\nmax_retries = 2\nretry_max_secs = 3\n",
            sb.config_text("")
        ),
    )
    .unwrap();
    sb.run(&["backup", "order"]).ok();
    // A backup past retention that cannot be deleted: its dump became a
    // directory (unlink fails with EISDIR, whoever runs the test); its
    // manifest still describes it, so retention picks it.
    let dir = sb.backup_dir();
    let stuck = dir.join("order_db_20191231_020000.dump.gz");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::copy(sb.dump_of("order_db"), stuck.join("data")).unwrap();
    let dir_size = std::fs::metadata(&stuck).unwrap().len();
    manifest_as(&sb.dump_of("order_db"), "20191231_020000", |m| {
        m["size_bytes"] = dir_size.into()
    });
    // And one past retention that can be.
    copy_backup(&sb, "order_db", "20200101_020000", |_| {});
    let stuck_bytes = sha256_file(&stuck.join("data"));
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let mut cmd = sb.command(&["backup", "order", "--upload"]);
    cmd.env("AZURE_STORAGE_CONNECTION_STRING", az.conn_string());
    let r = common::run(cmd);
    // The backup is good, retention is not: exit 3 and a warning naming it.
    let e = r.fails_with(3, "retention");
    assert!(e.contains("order_db_20191231_020000.dump.gz"), "{e}");
    assert_warned(&r, "order_db_20191231_020000.dump.gz");
    // The new backup is offsite, byte for byte.
    let uploaded = |r: &common::Run| {
        let new = sb.dump_of("order_db");
        let name = new.file_name().unwrap().to_string_lossy().into_owned();
        let blobs = az.list(CONTAINER, "");
        let blob = blobs
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .find(|n| n.ends_with(&format!("/order_db/{name}")))
            .unwrap_or_else(|| panic!("{name} not uploaded: {blobs:?}\n{}", r.stderr));
        assert_eq!(az.sha256(CONTAINER, blob), sha256_file(&new));
    };
    uploaded(&r);
    // Retention went on past the failure; the stuck backup is untouched.
    assert!(
        r.stdout
            .contains("retention removed order_db_20200101_020000.dump.gz")
    );
    assert!(!dir.join("order_db_20200101_020000.manifest.json").exists());
    assert!(!dir.join("order_db_20200101_020000.dump.gz").exists());
    assert_eq!(sha256_file(&stuck.join("data")), stuck_bytes);
    assert!(dir.join("order_db_20191231_020000.manifest.json").exists());

    // The agent's backup job (a CronJob's `agent --once backup`) the same.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut cmd = sb.command(&["agent", "--once", "backup"]);
    cmd.env("AZURE_STORAGE_CONNECTION_STRING", az.conn_string());
    let r = common::run(cmd);
    r.fails_with(3, "order_db_20191231_020000.dump.gz");
    assert_warned(&r, "alert JobFailed: retention failed: removing");
    uploaded(&r);
    assert_eq!(sha256_file(&stuck.join("data")), stuck_bytes);
}

#[test]
fn retention_deletes_nothing_when_the_clock_is_behind_the_backups() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    let dir = sb.backup_dir();
    // Two backups past retention by today's clock...
    for stamp in ["20200101_020000", "20200102_020000"] {
        copy_backup(&sb, "order_db", stamp, |_| {});
    }
    // ...and one written while the clock was 400 days ahead.
    let ahead = chrono::Utc::now() + chrono::Duration::days(400);
    let ahead_stamp = ahead.format("%Y%m%d_%H%M%S").to_string();
    let future = copy_backup(&sb, "order_db", &ahead_stamp, |m| {
        m["started_at"] = ahead.to_rfc3339().into();
        m["finished_at"] = ahead.to_rfc3339().into();
    });
    let before = snapshot(&dir);
    assert_eq!(before.len(), 8, "{before:?}");

    let e = sb.run(&["prune"]).fails_with(1, "in the future");
    assert!(
        e.contains(&format!("order_db_{ahead_stamp}.dump.gz")),
        "{e}"
    );
    assert_kept(&before, &dir);
    assert_eq!(snapshot(&dir).len(), before.len());

    // A backup still succeeds, warns why, and deletes nothing.
    let r = sb.run(&["backup", "order"]);
    let e = r.fails_with(3, "in the future");
    assert!(e.contains(&format!("order_db_{ahead_stamp}")), "{e}");
    assert_warned(&r, "in the future");
    assert_kept(&before, &dir);
    assert_eq!(snapshot(&dir).len(), before.len() + 2);

    // The clock behind the newest manifest's time: the backups' dates are
    // in the past, but one manifest was written two days from now.
    let aside = sb.work.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    for ext in [".dump.gz", ".manifest.json"] {
        let f = format!("order_db_{ahead_stamp}{ext}");
        std::fs::rename(dir.join(&f), aside.join(&f)).unwrap();
    }
    assert!(!future.exists());
    let newest = sb.dump_of("order_db");
    let mpath = newest
        .to_string_lossy()
        .replace(".dump.gz", ".manifest.json");
    let real = std::fs::read_to_string(&mpath).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&real).unwrap();
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    m["finished_at"] = later.into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let before = snapshot(&dir);
    let e = sb.run(&["prune"]).fails_with(1, "clock");
    assert!(e.contains("manifest"), "{e}");
    assert_kept(&before, &dir);

    // The clock agrees with the backups again: retention runs.
    std::fs::write(&mpath, real).unwrap();
    let out = sb.run(&["prune"]).ok().stdout;
    assert!(
        out.contains("removed order_db_20200101_020000.dump.gz")
            && out.contains("removed order_db_20200102_020000.dump.gz"),
        "{out}"
    );
    assert_eq!(sb.dumps().len(), 2);
}

#[test]
fn retention_deletes_nothing_when_the_clock_jumped_ahead_of_the_database_server() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    let dir = sb.backup_dir();
    // This machine's clock jumped 35 days ahead: backups written before the
    // jump, 5 and 1 days ago in truth, look 40 and 36 days old, and the new
    // backup's date is 35 days late. Only the database server, whose clock
    // psql reports, still tells the true time.
    for days in [40, 36] {
        let t = chrono::Utc::now() - chrono::Duration::days(days);
        copy_backup(
            &sb,
            "order_db",
            &t.format("%Y%m%d_%H%M%S").to_string(),
            |_| {},
        );
    }
    sb.wrap_tool(
        "psql",
        r#"sql=$(cat)
case "$sql" in
  *clock_timestamp*) echo $(( $(date +%s) - 35 * 86400 )) ;;
  *) printf '%s' "$sql" | exec "$REAL/psql" "$@" ;;
esac"#,
    );
    let before = snapshot(&dir);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = sb.run(&["backup", "order"]);
    let e = r.fails_with(3, "ahead of");
    assert!(
        e.contains("order_db") && e.contains("35.0 days ahead"),
        "{e}"
    );
    assert_warned(&r, "retention deleted nothing");
    assert_kept(&before, &dir);
    assert_eq!(sb.dumps().len(), 4);
}

#[test]
fn a_backup_far_off_the_usual_size_is_a_warning_in_the_cli_and_an_alert_in_the_agent() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    // Three earlier backups (within retention) ten times the size of a
    // real one: sound by their manifests, so the new one is the odd one.
    let real = std::fs::read(sb.dump_of("order_db")).unwrap();
    let big = real.repeat(10);
    for days in 1..=3 {
        let stamp = (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y%m%d_%H%M%S")
            .to_string();
        let file = sb.backup_dir().join(format!("order_db_{stamp}.dump.gz"));
        std::fs::write(&file, &big).unwrap();
        manifest_as(&sb.dump_of("order_db"), &stamp, |m| {
            m["size_bytes"] = big.len().into();
            m["sha256"] = sha256_file(&file).into();
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Worth a look, not a failure: exit 0, a warning line, the JSON field.
    let r = sb.run(&["backup", "order"]).ok();
    let line = format!("x the median {} of its earlier backups", big.len());
    assert!(
        r.stdout.contains("WARNING backup of order_db is ") && r.stdout.contains(&line),
        "{}",
        r.stdout
    );
    assert_warned(&r, "backup of order_db is ");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = sb.run(&["backup", "order", "--json"]).ok();
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let anomaly = &report["size_anomalies"][0];
    assert_eq!(anomaly["dbname"], "order_db", "{report}");
    assert_eq!(anomaly["median_bytes"], big.len(), "{report}");

    // The agent's backup job alerts on the same rule.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = sb.run(&["agent", "--once", "backup"]).ok();
    assert_warned(&r, "alert SizeAnomaly");
    assert_warned(&r, "backup of order_db is ");
}

/// Every file under `dir` (recursively, hidden ones too): its path below
/// `dir`, bytes and mode.
fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
        let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
        let bytes = if e.file_type().is_file() {
            std::fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        out.push((rel, bytes, mode));
    }
    out
}

/// Writes `files` (path below `root`, content, mode) and returns `root`'s
/// real path, as the archive names its members.
fn make_files(root: &std::path::Path, files: &[(&str, &str, u32)]) -> std::path::PathBuf {
    for (path, text, mode) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    std::fs::canonicalize(root).unwrap()
}

fn config_archives(sb: &Sandbox) -> Vec<std::path::PathBuf> {
    list_dir(&sb.backup_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect()
}

#[test]
fn config_backup_archives_paths_globs_and_commands_and_restores_them_byte_for_byte() {
    let sb = Sandbox::with_scale(20);
    let app = make_files(
        &sb.work.path().join("app"),
        &[
            (
                "docker-compose.yml",
                "services:\n  order:\n    image: order:1\n",
                0o640,
            ),
            ("k8s/order-deploy.yaml", "kind: Deployment\n", 0o644),
            ("k8s/run.sh", "#!/bin/sh\nexit 0\n", 0o750),
            (".env", "ORDER_DB_PASSWORD=hunter2\n", 0o600),
            (
                "k8s/db.yaml",
                "apiVersion: v1\nkind: Secret\ndata: {}\n",
                0o644,
            ),
        ],
    );
    let extra = make_files(
        &sb.work.path().join("manifests"),
        &[
            ("a.yaml", "kind: Service\n", 0o644),
            ("b.yaml", "kind: ConfigMap\n", 0o444),
            ("c.txt", "no\n", 0o644),
        ],
    );
    // Links inside a listed directory: to a file (archived as the file),
    // to a directory (not followed).
    let linked = sb.work.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(
        app.join("k8s/order-deploy.yaml"),
        linked.join("current.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(app.join("k8s"), linked.join("k8s")).unwrap();
    let linked = std::fs::canonicalize(&linked).unwrap();
    let section = |secrets: bool| {
        format!(
            "{}\n[config_backup]\npaths = [\"app\", \"manifests/*.yaml\", \"linked\"]\n\
             commands = [[\"printf\", \"apiVersion: v1\\\\nkind: List\\\\n\"]]\n\
             include_secrets = {secrets}\n",
            sb.config_text("")
        )
    };
    std::fs::write(sb.config_path(), section(false)).unwrap();

    let r = sb.run(&["backup"]).ok();
    assert!(r.stdout.contains("config"), "{}", r.stdout);
    // The secret is left out, with one warning naming it and why.
    let env = app.join(".env").display().to_string();
    let warned: Vec<&str> = r.stderr.lines().filter(|l| l.contains(&env)).collect();
    assert_eq!(warned.len(), 1, "{}", r.stderr);
    assert!(warned[0].contains(" WARN ") && warned[0].contains("looks like a secret"));
    let db = app.join("k8s/db.yaml").display().to_string();
    let warned: Vec<&str> = r.stderr.lines().filter(|l| l.contains(&db)).collect();
    assert_eq!(warned.len(), 1, "{}", r.stderr);
    assert!(
        warned[0].contains("holds a Kubernetes Secret"),
        "{}",
        warned[0]
    );

    // The archive: 0600, its manifest's hash, listed and verified.
    let archives = config_archives(&sb);
    assert_eq!(archives.len(), 1, "{archives:?}");
    let archive = &archives[0];
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(archive), 0o600);
    let m = manifest(&std::path::PathBuf::from(
        archive.to_string_lossy().replace(".tar.gz", ".dump.gz"),
    ));
    assert_eq!(m["sha256"].as_str().unwrap(), sha256_file(archive));
    assert_eq!(
        m["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(archive).unwrap().len()
    );
    let files: Vec<&str> = m["config"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let member = |p: &std::path::Path| format!("files{}", p.display());
    assert_eq!(
        files,
        [
            member(&app.join("docker-compose.yml")),
            member(&app.join("k8s/order-deploy.yaml")),
            member(&app.join("k8s/run.sh")),
            member(&extra.join("a.yaml")),
            member(&extra.join("b.yaml")),
            member(&linked.join("current.yaml")),
            "commands/1-printf-apiversion-v1-nkind-list-n.out".into(),
        ]
    );
    let listed = sb.run(&["list", "--local"]).ok();
    assert!(listed.stdout.contains("config"), "{}", listed.stdout);
    let verified = sb.run(&["verify", "config"]).ok();
    assert!(verified.stdout.contains("7 files"), "{}", verified.stdout);

    // Restored: the same bytes and modes, the secret absent.
    let into = sb.work.path().join("restored");
    let out = sb
        .run(&["restore-config", "latest", "--into", into.to_str().unwrap()])
        .ok();
    assert!(out.stdout.contains("restored 7 file(s)"), "{}", out.stdout);
    let src = tree(&app);
    let back = tree(&into.join("files").join(app.strip_prefix("/").unwrap()));
    let secret = |p: &str| p == ".env" || p == "k8s/db.yaml";
    let secretless: Vec<_> = src.iter().filter(|(p, ..)| !secret(p)).cloned().collect();
    assert_eq!(back, secretless);
    let b = into
        .join("files")
        .join(extra.strip_prefix("/").unwrap())
        .join("b.yaml");
    assert_eq!(
        (std::fs::read(&b).unwrap(), mode(&b)),
        (b"kind: ConfigMap\n".to_vec(), 0o444)
    );
    let l = into.join("files").join(linked.strip_prefix("/").unwrap());
    let current = std::fs::symlink_metadata(l.join("current.yaml")).unwrap();
    assert!(current.is_file());
    assert_eq!(
        std::fs::read(l.join("current.yaml")).unwrap(),
        b"kind: Deployment\n"
    );
    assert!(!l.join("k8s").exists());
    let dir_link = format!(
        "{}: a symbolic link to a directory",
        linked.join("k8s").display()
    );
    assert_warned(&r, &dir_link);
    let cmd = std::fs::read(into.join("commands/1-printf-apiversion-v1-nkind-list-n.out")).unwrap();
    assert_eq!(cmd, b"apiVersion: v1\nkind: List\n");

    // A second restore into the now non-empty directory is refused, and
    // nothing in it changes.
    let before = tree(&into);
    let again = sb.run(&["restore-config", "latest", "--into", into.to_str().unwrap()]);
    again.fails_with(2, "is not empty");
    assert_eq!(tree(&into), before);

    // include_secrets = true: the .env is archived and comes back too.
    std::fs::write(sb.config_path(), section(true)).unwrap();
    let r = sb.run(&["backup", "config"]).ok();
    assert!(!r.stderr.contains("looks like a secret"), "{}", r.stderr);
    let into2 = sb.work.path().join("restored2");
    let r = sb
        .run(&[
            "restore-config",
            "latest",
            "--into",
            into2.to_str().unwrap(),
            "--json",
        ])
        .ok();
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["files"].as_array().unwrap().len(), 9, "{report}");

    // With [encryption] the secret is archived, encrypted like the dumps,
    // and comes back with the identity; without it nothing is written.
    let (key, public) = keygen(sb.work.path(), "key.txt");
    let sealed = format!(
        "{}[encryption]\nrecipients = [\"{public}\"]\n",
        section(false)
    );
    std::fs::write(sb.config_path(), sealed).unwrap();
    let r = sb.run(&["backup", "config"]).ok();
    assert!(!r.stderr.contains("looks like a secret"), "{}", r.stderr);
    let age: Vec<_> = list_dir(&sb.backup_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz.age"))
        .collect();
    assert_eq!(age.len(), 1, "{age:?}");
    let into3 = sb.work.path().join("restored3");
    let refused = sb.run(&[
        "restore-config",
        "latest",
        "--into",
        into3.to_str().unwrap(),
    ]);
    assert_ne!(refused.code, 0);
    assert!(!into3.exists());
    let mut cmd = sb.command(&[
        "restore-config",
        "latest",
        "--into",
        into3.to_str().unwrap(),
    ]);
    cmd.env("VALERIX_BACKUP_IDENTITY_FILE", &key);
    run(cmd).ok();
    assert_eq!(
        tree(&into3.join("files").join(app.strip_prefix("/").unwrap())),
        src
    );
    let partials: Vec<_> = list_dir(sb.work.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
    assert_eq!(
        tree(&into2.join("files").join(app.strip_prefix("/").unwrap())),
        src
    );
}

#[test]
fn an_unreadable_config_path_fails_the_config_set_and_the_databases_still_back_up() {
    let sb = Sandbox::with_scale(20);
    make_files(
        &sb.work.path().join("app"),
        &[("docker-compose.yml", "services: {}\n", 0o644)],
    );
    let missing = sb.work.path().join("app/gone.yml");
    let text = format!(
        "{}\n[config_backup]\npaths = [\"app/docker-compose.yml\", {missing:?}, \"nothing/*.yaml\"]\n\
         commands = [[\"kubectl-missing-here\", \"get\", \"cm\"], [\"sh\", \"-c\", \"echo denied >&2; exit 4\"]]\n",
        sb.config_text("")
    );
    std::fs::write(sb.config_path(), text).unwrap();

    let r = sb.run(&["backup"]);
    assert_eq!(r.code, 3, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    // One line for each cause, naming it.
    let lines = |needle: &str| {
        r.stderr
            .lines()
            .filter(|l| l.contains(needle) && l.contains(" WARN "))
            .count()
    };
    assert_eq!(
        lines(&format!("cannot read {}: No such file", missing.display())),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(
        lines("cannot read command 1 `kubectl-missing-here get cm`: cannot run"),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(
        lines("cannot read command 2 `sh -c echo denied >&2; exit 4`: exit status: 4: denied"),
        1,
        "{}",
        r.stderr
    );
    // A glob that matches nothing is a warning, not a failure.
    assert_eq!(
        lines("skipped nothing/*.yaml: the glob matched nothing"),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("config") && r.stdout.contains("FAILED"),
        "{}",
        r.stdout
    );

    // The databases were backed up and verify; the archive holds the rest
    // and records what it lacks.
    assert_eq!(sb.dumps().len(), 2);
    let verified = sb.run(&["verify"]).ok();
    assert!(verified.stdout.contains("order_db") && verified.stdout.contains("inventory_db"));
    let archive = &config_archives(&sb)[0];
    let m = manifest(&std::path::PathBuf::from(
        archive.to_string_lossy().replace(".tar.gz", ".dump.gz"),
    ));
    let c = &m["config"];
    assert_eq!(c["files"].as_array().unwrap().len(), 1);
    assert_eq!(c["unreadable"].as_array().unwrap().len(), 3, "{c}");
    assert_eq!(c["skipped"][0]["source"], "nothing/*.yaml");
}
