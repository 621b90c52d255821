//! Bad input and faults: each gives a one-line error naming the cause, a
//! non-zero exit status, and loses nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn bad_arguments_and_config_are_named() {
    let sb = Sandbox::new();
    sb.run(&["backup", "payments"]).fails_with(
        2,
        "unknown target 'payments' (configured: order, inventory, both)",
    );
    sb.run(&["backup", "../x"]).fails_with(2, "not a path");
    sb.run(&["restore", "latest", "order/../../etc", "--yes"])
        .fails_with(2, "not a path");
    sb.run(&["restore", "2026-01-29", "order", "--yes"])
        .fails_with(2, "invalid timestamp '2026-01-29'");
    sb.run(&["restore", "20260129_020000", "order", "--yes"])
        .fails_with(1, "no backup of order_db at 20260129_020000");
    sb.run(&["verify", "20260230_020000"])
        .fails_with(2, "invalid timestamp");
    sb.run(&["restore", "latest", "order", "--table", "orders", "--yes"])
        .fails_with(2, "--table restores part of a database");
    sb.run(&["status", "--max-age", "soon"]).fails_with_clap();

    let missing = run({
        let mut c = Command::new(bin());
        c.args(["--config", "/nonexistent/vx.toml", "list"]);
        c
    });
    missing.fails_with(2, "config /nonexistent/vx.toml: not found");

    std::fs::write(sb.config_path(), "backup_dir = [unclosed\n").unwrap();
    sb.run(&["list"]).fails_with(2, "valerix-backup.toml");
    std::fs::write(sb.config_path(), sb.config_text("retension_days = 3")).unwrap();
    sb.run(&["list"])
        .fails_with(2, "unknown field `retension_days`");
    std::fs::write(sb.config_path(), sb.config_text("compression_level = 12")).unwrap();
    sb.run(&["list"])
        .fails_with(2, "compression_level 12 is out of range");
    std::fs::write(
        sb.config_path(),
        sb.config_text("").replace("\"inventory_db\"", "\"inv/db\""),
    )
    .unwrap();
    sb.run(&["list"]).fails_with(2, "dbname 'inv/db'");
    // Nothing was created by any of these.
    assert!(!sb.backup_dir().exists());
}

trait ClapFailure {
    fn fails_with_clap(&self);
}
impl ClapFailure for Run {
    #[track_caller]
    fn fails_with_clap(&self) {
        assert_eq!(self.code, 2, "{}", self.stderr);
        assert!(
            self.stderr.contains("invalid value 'soon'"),
            "{}",
            self.stderr
        );
    }
}

#[test]
fn wrong_password_fails_that_database_only_and_is_never_printed() {
    let sb = Sandbox::new();
    let secret = "s3cret-Wrong-Pa55";
    let out = run({
        let mut c = sb.command(&["backup"]);
        c.env("ORDER_DB_PASSWORD", secret);
        c
    });
    // inventory succeeded, order failed: partial, exit 3.
    let e = out.fails_with(
        3,
        "1 of 2 failed: backup of order_db (pg_dump failed (exit status 1)",
    );
    assert!(
        e.contains("password authentication failed for user \"order_user\""),
        "{e}"
    );
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    let names = backup_files(&sb.backup_dir());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("inventory_db_")),
        "{names:?}"
    );

    let out = run({
        let mut c = sb.command(&["backup", "order"]);
        c.env_remove("ORDER_DB_PASSWORD");
        c
    });
    out.fails_with(
        1,
        "environment variable ORDER_DB_PASSWORD (password_env of database 'order') is not set",
    );
}

#[test]
fn a_server_that_is_down_is_named() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    sb.pg.stop_server();
    let e = sb
        .run(&["backup", "order"])
        .fails_with(1, "pg_dump failed (exit status 1)");
    assert!(e.contains("Connection refused"), "{e}");
    assert_eq!(
        backup_files(&sb.backup_dir()).len(),
        2,
        "only the first backup"
    );
    // Verification needs no server.
    sb.run(&["verify", "latest", "order"]).ok();
    sb.run(&["restore", "latest", "order", "--yes"])
        .fails_with(1, "Connection refused");
}

#[test]
fn pg_dump_killed_half_way_leaves_no_file_and_older_backups_intact() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    let first = sb.dump_of("order_db");
    let first_sha = sha256_file(&first);

    // The real pg_dump, cut off after 100 kB, then the wrapper is SIGKILLed.
    let bin = sb.wrap_tool(
        "pg_dump",
        "printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/argv\"\n\
         \"$REAL/pg_dump\" \"$@\" | head -c 100000\nkill -9 $$",
    );
    sb.run(&["backup", "order"])
        .fails_with(1, "pg_dump failed (killed by SIGKILL)");
    assert_eq!(
        backup_files(&sb.backup_dir()).len(),
        2,
        "{:?}",
        backup_files(&sb.backup_dir())
    );
    assert_eq!(sha256_file(&first), first_sha);
    // Connection settings and password went through the environment only.
    let argv = std::fs::read_to_string(bin.join("argv")).unwrap();
    assert!(
        !argv.contains(ORDER_PW) && !argv.contains("order_user"),
        "{argv}"
    );

    // Same cut, but the wrapper claims success: the archive scan catches it.
    sb.wrap_tool(
        "pg_dump",
        "\"$REAL/pg_dump\" \"$@\" | head -c 100000\nexit 0",
    );
    sb.run(&["backup", "order"])
        .fails_with(1, "although pg_dump reported success");
    assert_eq!(backup_files(&sb.backup_dir()).len(), 2);
    sb.run(&["verify", "latest", "order"]).ok();
}

#[test]
fn damaged_files_fail_verification_and_restore_leaves_the_live_database() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    let file = sb.dump_of("order_db");
    let good = std::fs::read(&file).unwrap();
    sb.pg
        .psql("order_db", "DELETE FROM order_items WHERE line = 3");
    let live = sb.pg.fingerprint("order_db");
    let dbs = sb.pg.databases();

    let check = |bytes: &[u8], needle: &str| {
        std::fs::write(&file, bytes).unwrap();
        sb.run(&["verify", "latest", "order"]).fails_with(1, needle);
        sb.run(&["restore", "latest", "order", "--yes"])
            .fails_with(1, needle);
        // The failed restore is on record, and says there is nothing to undo.
        let rec = sb.json(&["report", "show", "latest-restore", "--json"]);
        assert_eq!(rec["outcome"], "failed", "{rec}");
        let step = &rec["steps"].as_array().unwrap().last().unwrap()["detail"];
        assert!(step.as_str().unwrap().contains(needle), "{rec}");
        assert!(
            rec["undo"][0].as_str().unwrap().contains("nothing to undo"),
            "{rec}"
        );
        assert_eq!(sb.pg.fingerprint("order_db"), live, "live database changed");
        assert_eq!(sb.pg.databases(), dbs, "a restore database was left behind");
        assert_eq!(
            backup_files(&sb.backup_dir()).len(),
            2,
            "a scratch file was left behind"
        );
    };
    // Truncated: gzip notices the missing end.
    check(&good[..good.len() / 2], "gzip data is corrupt");
    // One flipped bit in the middle: the member's CRC notices.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    check(&flipped, "order_db_");
    // Valid gzip around a truncated dump (the seed's verify passes this):
    // the hash notices, and without a manifest the archive scan does.
    let plain = {
        let mut d = flate2::read::MultiGzDecoder::new(&good[..]);
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        v
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &plain[..plain.len() * 2 / 3]).unwrap();
    let short = enc.finish().unwrap();
    check(
        &short,
        "dump inside is damaged: archive ends inside a data block",
    );
    // A sound file that is not the one the manifest describes.
    std::fs::write(&file, &good).unwrap();
    let manifest_path = file.to_string_lossy().replace(".dump.gz", ".manifest.json");
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    let sha = sha256_file(&file);
    std::fs::write(&manifest_path, manifest_text.replace(&sha, &"0".repeat(64))).unwrap();
    check(&good, "does not match the manifest's 000000000000");
    // Without a manifest there is nothing to check the hash against.
    std::fs::remove_file(&manifest_path).unwrap();
    sb.run(&["verify", "latest", "order"])
        .fails_with(1, "no manifest");

    // Restored to health, the same backup verifies and restores.
    std::fs::write(&file, &good).unwrap();
    std::fs::write(&manifest_path, &manifest_text).unwrap();
    sb.run(&["verify", "latest", "order"]).ok();
}

#[test]
fn a_second_run_is_refused_by_the_lock() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.backup_dir()).unwrap();
    let lock =
        valerix_backup::catalog::Lock::acquire(&sb.backup_dir().join(".valerix-backup.lock"))
            .unwrap();
    let e = sb
        .run(&["backup"])
        .fails_with(11, "is locked by another valerix-backup run (pid ");
    assert!(e.contains(&std::process::id().to_string()), "{e}");
    sb.run(&["restore", "latest", "order", "--yes"])
        .fails_with(1, "no backup");
    drop(lock);
    sb.run(&["backup"]).ok();

    // And for real: a slow backup holds the lock while a second one starts.
    sb.wrap_tool("pg_dump", "sleep 3\nexec \"$REAL/pg_dump\" \"$@\"");
    let mut slow = sb
        .command(&["backup", "order"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    sb.run(&["backup", "inventory"]).fails_with(11, "locked");
    assert!(slow.wait().unwrap().success());
    assert_eq!(sb.dumps().len(), 3);
}

#[test]
fn sigterm_stops_a_backup_cleanly() {
    let sb = Sandbox::new();
    // pg_dump that stalls after its first 64 KiB, like one waiting on a lock.
    sb.wrap_tool(
        "pg_dump",
        "\"$REAL/pg_dump\" \"$@\" | { head -c 65536; sleep 20; cat; }",
    );
    let child = sb.spawn(&["backup", "order"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let t = std::time::Instant::now();
    let (code, stderr) = terminate(child);
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("valerix-backup: error: interrupted"),
        "{stderr}"
    );
    assert!(
        backup_files(&sb.backup_dir()).is_empty(),
        "{:?}",
        backup_files(&sb.backup_dir())
    );
}

#[test]
fn a_full_disk_fails_the_backup_and_keeps_the_older_one() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.backup_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    if !mounted.success() {
        eprintln!("skipped: cannot mount tmpfs here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&dir);

    sb.run(&["backup", "order"]).ok();
    let first = sb.dump_of("order_db");
    let sha = sha256_file(&first);
    // Leave 32 KiB free: far less than a backup.
    let free = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        let c = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).unwrap();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail as u64 * st.f_frsize as u64
    };
    std::fs::write(dir.join("filler"), vec![1u8; (free - 32 * 1024) as usize]).unwrap();

    let e = sb
        .run(&["backup", "order"])
        .fails_with(1, "No space left on device");
    assert!(e.contains(".partial"), "names the file it was writing: {e}");
    assert_eq!(sha256_file(&first), sha);
    let mut left = backup_files(&dir);
    left.sort();
    assert_eq!(
        left.len(),
        3,
        "old backup, its manifest and the filler: {left:?}"
    );

    std::fs::remove_file(dir.join("filler")).unwrap();
    sb.run(&["backup", "order"]).ok();
}

#[test]
fn sigterm_during_restore_drops_the_half_loaded_database() {
    let sb = Sandbox::new();
    sb.run(&["backup", "order"]).ok();
    sb.pg
        .psql("order_db", "UPDATE customers SET country = 'XX'");
    let live = sb.pg.fingerprint("order_db");
    // pg_restore that takes its time (but answers --list at once).
    sb.wrap_tool(
        "pg_restore",
        "[ \"$1\" = --list ] || sleep 20\nexec \"$REAL/pg_restore\" \"$@\"",
    );
    let child = sb.spawn(&["restore", "latest", "order", "--yes"]);
    // Wait until the fresh database exists, then interrupt.
    let t = std::time::Instant::now();
    while !sb
        .pg
        .databases()
        .iter()
        .any(|d| d.starts_with("order_db__restore_"))
    {
        assert!(t.elapsed().as_secs() < 30, "restore never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, stderr) = terminate(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(t.elapsed().as_secs() < 15);
    assert_eq!(sb.pg.databases(), ["inventory_db", "order_db", "postgres"]);
    assert_eq!(sb.pg.fingerprint("order_db"), live);
    assert_eq!(
        backup_files(&sb.backup_dir()).len(),
        2,
        "{:?}",
        backup_files(&sb.backup_dir())
    );
}

#[test]
fn a_local_manifest_whose_hash_is_not_one_is_named_never_a_panic() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup", "inventory"]).ok();
    let dump = sb.dump_of("inventory_db");
    let bytes = std::fs::read(&dump).unwrap();
    let path = dump.to_string_lossy().replace(".dump.gz", ".manifest.json");
    for bad in ["abc", "é", &"z".repeat(64)] {
        let mut m = manifest(&dump);
        m["sha256"] = bad.into();
        std::fs::write(&path, m.to_string()).unwrap();
        let list = sb.run(&["list", "--local"]).ok();
        assert!(list.stdout.contains("bad-manifest"), "{}", list.stdout);
        let verify = sb.run(&["verify", "latest", "inventory"]);
        verify.fails_with(1, "its sha256 is not a SHA-256 (64 hex digits)");
        for run in [&list, &verify] {
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        }
    }
    assert_eq!(std::fs::read(&dump).unwrap(), bytes);
}
