//! Recovery paths under faults: a restore killed inside its swap, kept
//! databases across later restores, a deep verify beside a backup, a server
//! too old for the swap. Each test injects the fault where it happens (a
//! wrapper around the real psql or pg_restore that kills valerix-backup
//! mid-step) and compares database content, not only exit codes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Hidden files the tool keeps beside the backups (journals, partials).
fn hidden(dir: &Path, suffix: &str) -> Vec<String> {
    list_dir(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(suffix))
        .collect()
}

fn dbs_like(sb: &Sandbox, prefix: &str) -> Vec<String> {
    sb.pg
        .databases()
        .into_iter()
        .filter(|d| d.starts_with(prefix))
        .collect()
}

/// Whether a fresh session may connect to `db` (as its owner would).
fn accepts(sb: &Sandbox, db: &str) -> bool {
    sb.pg
        .psql(
            "postgres",
            &format!("SELECT datallowconn FROM pg_database WHERE datname = '{db}'"),
        )
        .trim()
        == "t"
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A psql that runs the real one, except for a script matching the bash
/// pattern `when`: that one runs `then` (with the script in `$sql`).
fn wrap_psql(sb: &Sandbox, when: &str, then: &str) {
    sb.wrap_tool(
        "psql",
        &format!(
            "sql=$(cat)\n\
             if [[ \"$sql\" == {when} ]]; then\n{then}\nfi\n\
             printf '%s\\n' \"$sql\" | exec \"$REAL/psql\" \"$@\""
        ),
    );
}

/// A psql that SIGKILLs valerix-backup inside the swap, after the part of
/// its script that `cut` lets through has run.
fn kill_in_swap(sb: &Sandbox, cut: &str) {
    wrap_psql(
        sb,
        "*'ALLOW_CONNECTIONS false'*",
        &format!("{cut} | \"$REAL/psql\" \"$@\" >/dev/null\nkill -9 $PPID; exit 1"),
    );
}

/// A backup of order_db, then writes that make the live database differ
/// from it (so a wrongly finished swap shows); the live fingerprint.
fn backup_then_diverge(sb: &Sandbox) -> Vec<String> {
    sb.run(&["backup", "order"]).ok();
    sb.pg.psql(
        "order_db",
        "UPDATE customers SET country = 'ZZ' WHERE id < 50",
    );
    sb.pg.fingerprint("order_db")
}

#[test]
fn a_restore_killed_inside_its_swap_is_rolled_back_by_the_next_run() {
    let sb = Sandbox::new();
    let live = backup_then_diverge(&sb);
    let name = sb.dump_of("order_db");
    let name = name.file_name().unwrap().to_string_lossy();
    let stamp = name["order_db_".len()..]
        .trim_end_matches(".dump.gz")
        .to_string();

    // Killed after `ALLOW_CONNECTIONS false` committed, before the renames.
    kill_in_swap(&sb, "printf '%s\\n' \"$sql\" | head -n 1");
    let run = sb.run(&["restore", &stamp, "order", "--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(!accepts(&sb, "order_db"), "the fault did not hit the swap");
    assert_eq!(dbs_like(&sb, "order_db__restore_").len(), 1);
    assert_eq!(hidden(&sb.backup_dir(), ".journal").len(), 1);

    // status names both the locked-out database and the interrupted run.
    sb.write_config("");
    let st = sb.run(&["status"]);
    assert_eq!(st.code, 1, "{}", st.stdout);
    assert!(
        st.stdout.contains("order_db") && st.stdout.contains("LOCKED"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("INTERRUPTED"), "{}", st.stdout);
    st.fails_with(1, "order_db refuses connections");

    // The next locked run (the agent's backup job, as a CronJob runs it)
    // settles it before its own work.
    let next = sb.run(&["agent", "--once", "backup"]).ok();
    assert!(
        next.stderr
            .contains("interrupted before its swap completed")
            && next.stderr.contains("run the restore again"),
        "{}",
        next.stderr
    );
    assert!(accepts(&sb, "order_db"));
    assert_eq!(sb.pg.fingerprint("order_db"), live);
    assert_eq!(dbs_like(&sb, "order_db__"), Vec::<String>::new());
    assert_eq!(hidden(&sb.backup_dir(), ".journal"), Vec::<String>::new());
    sb.run(&["status"]).ok();

    // And the restore, run again, works.
    sb.run(&["restore", &stamp, "order", "--yes"]).ok();
    assert_ne!(sb.pg.fingerprint("order_db"), live);
}

#[test]
fn a_restore_killed_after_its_swap_committed_keeps_both_databases() {
    let sb = Sandbox::new();
    let live = backup_then_diverge(&sb);
    let backup = sb.dump_of("order_db");

    // The whole swap script commits, then the process dies before it drops
    // the old database.
    kill_in_swap(&sb, "printf '%s\\n' \"$sql\"");
    let run = sb.run(&["restore", "latest", "order", "--yes"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let old = dbs_like(&sb, "order_db__old_");
    assert_eq!(old.len(), 1, "{:?}", sb.pg.databases());
    assert!(!accepts(&sb, &old[0]));

    sb.write_config("");
    let verify = sb.run(&["verify", "--deep", "latest", "order"]).ok();
    assert!(
        verify.stderr.contains("interrupted after its swap")
            && verify.stderr.contains(&format!("kept as {}", old[0])),
        "{}",
        verify.stderr
    );
    // Nothing dropped: the previous data is kept, reachable, unchanged.
    assert!(accepts(&sb, &old[0]));
    assert_eq!(sb.pg.fingerprint(&old[0]), live);
    assert!(accepts(&sb, "order_db"));
    sb.run(&["restore", "latest", "order", "--into", "check_db", "--yes"])
        .ok();
    assert_eq!(sb.pg.fingerprint("order_db"), sb.pg.fingerprint("check_db"));
    assert!(backup.exists());
    assert_eq!(hidden(&sb.backup_dir(), ".journal"), Vec::<String>::new());
}

#[test]
fn kept_databases_survive_any_number_of_later_restores() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup", "inventory"]).ok();
    let out = sb
        .run(&["restore", "latest", "inventory", "--yes", "--keep-old"])
        .ok();
    let first = dbs_like(&sb, "inventory_db__old_");
    assert_eq!(first.len(), 1, "{}", out.stderr);
    // The post-mortem copy may hold the only copy of late writes.
    sb.pg
        .psql(&first[0], "CREATE TABLE late_writes AS SELECT 42 AS answer");
    let kept = sb.pg.fingerprint(&first[0]);

    // The same backup again, kept again: a second, distinct copy.
    sb.run(&["restore", "latest", "inventory", "--yes", "--keep-old"])
        .ok();
    let both = dbs_like(&sb, "inventory_db__old_");
    assert_eq!(both.len(), 2, "{both:?}");
    // And once more without --keep-old: only this run's old copy goes.
    sb.run(&["restore", "latest", "inventory", "--yes"]).ok();
    assert_eq!(dbs_like(&sb, "inventory_db__old_"), both);
    assert_eq!(sb.pg.fingerprint(&first[0]), kept);
    assert_eq!(
        sb.pg
            .psql(&first[0], "SELECT answer FROM late_writes")
            .trim(),
        "42"
    );
}

#[test]
fn a_swap_whose_clean_up_fails_does_not_claim_the_live_database_untouched() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup", "inventory"]).ok();
    sb.pg
        .psql("inventory_db", "DELETE FROM stock WHERE product_id % 2 = 0");
    let live = sb.pg.fingerprint("inventory_db");
    // The swap works; dropping the old database afterwards fails.
    wrap_psql(
        &sb,
        "*'DROP DATABASE'*'__old_'*",
        "echo 'ERROR:  disk on fire' >&2; exit 3",
    );
    let run = sb.run(&["restore", "latest", "inventory", "--yes"]);
    run.fails_with(1, "restored, but finishing failed");
    assert!(!run.stderr.contains("untouched"), "{}", run.stderr);
    assert_ne!(sb.pg.fingerprint("inventory_db"), live);

    // The old database was not lost: the next run keeps it, reachable.
    sb.write_config("");
    sb.run(&["backup", "order"]).ok();
    let old = dbs_like(&sb, "inventory_db__old_");
    assert_eq!(old.len(), 1);
    assert!(accepts(&sb, &old[0]));
    assert_eq!(sb.pg.fingerprint(&old[0]), live);
}

/// pg_restore that waits `secs` before working (answering --list at once),
/// so that a test can act while a restore or deep verify is under way.
fn slow_pg_restore(sb: &Sandbox, secs: u32) {
    sb.wrap_tool(
        "pg_restore",
        &format!("[ \"$1\" = --list ] || sleep {secs}\nexec \"$REAL/pg_restore\" \"$@\""),
    );
}

#[test]
fn a_deep_verify_beside_a_backup_keeps_its_scratch_file() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup"]).ok();
    // A partial file left by a run that died: no owner holds it.
    let stale = sb
        .backup_dir()
        .join(".order_db_20200101_000000.dump.gz.1.partial");
    std::fs::write(&stale, b"left over").unwrap();

    slow_pg_restore(&sb, 4);
    let verify = sb.spawn(&["verify", "--deep", "latest", "inventory"]);
    wait_for("the scratch database", || {
        !dbs_like(&sb, "inventory_db__verify_").is_empty()
    });
    // A locked run beside it tidies partial files, but only those whose
    // owner is gone.
    sb.run(&["backup", "order"]).ok();
    assert!(!stale.exists());
    assert_eq!(hidden(&sb.backup_dir(), ".partial").len(), 1);
    let out = verify.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(dbs_like(&sb, "inventory_db__"), Vec::<String>::new());
    assert_eq!(hidden(&sb.backup_dir(), ".partial"), Vec::<String>::new());
    assert_eq!(hidden(&sb.backup_dir(), ".journal"), Vec::<String>::new());
}

#[test]
fn two_deep_verifies_of_one_backup_at_once_both_succeed() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup", "inventory"]).ok();
    slow_pg_restore(&sb, 3);
    let first = sb.spawn(&["verify", "--deep", "latest", "inventory"]);
    let second = sb.spawn(&["verify", "--deep", "latest", "inventory"]);
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
    }
    assert_eq!(dbs_like(&sb, "inventory_db__"), Vec::<String>::new());
    assert_eq!(hidden(&sb.backup_dir(), ".journal"), Vec::<String>::new());
}

#[test]
fn a_deep_verify_killed_half_way_leaves_nothing_after_the_next_run() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup", "inventory"]).ok();
    slow_pg_restore(&sb, 30);
    let mut child = sb.spawn(&["verify", "--deep", "latest", "inventory"]);
    wait_for("the scratch database", || {
        !dbs_like(&sb, "inventory_db__verify_").is_empty()
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Its pg_restore is still sleeping in its own process group.
    assert_eq!(dbs_like(&sb, "inventory_db__verify_").len(), 1);

    sb.write_config("");
    let next = sb.run(&["backup", "inventory"]).ok();
    assert!(
        next.stderr.contains("dropped its scratch database"),
        "{}",
        next.stderr
    );
    assert_eq!(dbs_like(&sb, "inventory_db__"), Vec::<String>::new());
    assert_eq!(hidden(&sb.backup_dir(), ".journal"), Vec::<String>::new());
    assert_eq!(hidden(&sb.backup_dir(), ".partial"), Vec::<String>::new());
}

#[test]
fn a_server_older_than_14_is_refused_before_anything_changes() {
    let sb = Sandbox::with_scale(20);
    sb.run(&["backup", "inventory"]).ok();
    let live = sb.pg.fingerprint("inventory_db");
    let before = sb.pg.databases();
    // The real server, reporting itself as PostgreSQL 13.
    wrap_psql(
        &sb,
        "*server_version_num*",
        "printf '130011\\x1f13.11\\n'; exit 0",
    );
    sb.run(&["restore", "latest", "inventory", "--yes"])
        .fails_with(
            2,
            "runs PostgreSQL 13.11; restore and verify --deep need 14 or newer",
        );
    sb.run(&["verify", "--deep", "latest", "inventory"])
        .fails_with(1, "need 14 or newer");
    // config check says so months before.
    let check = sb.run(&["config", "check"]);
    assert_ne!(check.code, 0);
    assert!(
        check
            .stdout
            .contains("backups work, but restore and verify --deep need 14 or newer"),
        "{}",
        check.stdout
    );
    assert_eq!(sb.pg.databases(), before);
    assert_eq!(sb.pg.fingerprint("inventory_db"), live);
    assert_eq!(hidden(&sb.backup_dir(), ".journal"), Vec::<String>::new());
}
