//! Offsite copies against Azurite (the official emulator), checked with an
//! independent reader (Microsoft's Python SDK, tests/tools/blob_reader.py):
//! tiers, hashes, tags and access tiers; the audit's findings; restore from
//! Azure onto an empty machine; and the faults: tampering, deletion, wrong
//! credentials, a missing container, an emulator that dies mid-upload, a
//! file that changed after its manifest.

mod common;

use std::path::{Path, PathBuf};

use common::azurite::{Azurite, KEY};
use common::{Run, Sandbox, sha256_file};
use serde_json::Value;

const CONTAINER: &str = "database-backups";

struct Offsite {
    sb: Sandbox,
    az: Azurite,
}

impl Offsite {
    fn new() -> Offsite {
        let o = Offsite {
            sb: Sandbox::new(),
            az: Azurite::start(),
        };
        o.configure("");
        o
    }

    /// The sandbox's config plus an [azure] section; `extra` adds keys.
    fn configure(&self, extra: &str) {
        let keys = format!("max_retries = 2\nretry_max_secs = 3\n{extra}");
        self.sb.write_azure_config(CONTAINER, &keys);
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &self.az.conn_string())
    }

    fn run_with(&self, args: &[&str], conn: &str) -> Run {
        self.sb.run_with_conn(args, conn)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.sb.json_with_conn(args, &self.az.conn_string())
    }

    fn blobs(&self) -> Vec<Value> {
        self.az.list(CONTAINER, "")
    }

    fn blob(&self, name: &str) -> Value {
        self.blobs()
            .into_iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("no blob {name}"))
    }
}

/// A copy of `dbname`'s newest backup as if taken at `stamp`: same bytes
/// (so the same SHA-256), manifest rewritten for the new name and time.
fn backdate(sb: &Sandbox, dbname: &str, stamp: &str) -> PathBuf {
    let src = sb.dump_of(dbname);
    let mut m = common::manifest(&src);
    let file = format!("{dbname}_{stamp}.dump.gz");
    let dst = sb.backup_dir().join(&file);
    std::fs::copy(&src, &dst).unwrap();
    m["timestamp"] = stamp.into();
    m["file"] = file.into();
    write_manifest(&dst, &m);
    dst
}

fn write_manifest(dump: &Path, m: &Value) {
    let path = dump.to_string_lossy().replace(".dump.gz", ".manifest.json");
    std::fs::write(path, serde_json::to_string_pretty(m).unwrap()).unwrap();
}

fn stamp_days_ago(days: i64, hour: u32) -> String {
    let d = chrono::Utc::now().date_naive() - chrono::Duration::days(days);
    format!("{}_{hour:02}0000", d.format("%Y%m%d"))
}

/// The most recent `weekday` strictly before today, as a stamp at 02:00.
fn last(weekday: chrono::Weekday) -> (i64, String) {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let back = (1..=7)
        .find(|i| (today - chrono::Duration::days(*i)).weekday() == weekday)
        .unwrap();
    (back, stamp_days_ago(back, 2))
}

/// The blob name `upload` (tier auto) gives order_db's backup at `stamp`
/// when each week's Sunday backup went offsite: Sunday's is the week's
/// weekly copy, the other days' are daily.
fn order_blob(stamp: &str) -> String {
    use chrono::Datelike;
    let day = chrono::NaiveDate::parse_from_str(&stamp[..8], "%Y%m%d").unwrap();
    let tier = if day.weekday() == chrono::Weekday::Sun {
        "weekly"
    } else {
        "daily"
    };
    format!("{tier}/order_db/order_db_{stamp}.dump.gz")
}

/// A stamp `days` ago (one of `choices`) that is not a Sunday.
fn weekday_stamp(choices: &[i64], hour: u32) -> String {
    use chrono::Datelike;
    let d = choices
        .iter()
        .find(|d| {
            (chrono::Utc::now().date_naive() - chrono::Duration::days(**d)).weekday()
                != chrono::Weekday::Sun
        })
        .unwrap();
    stamp_days_ago(*d, hour)
}

fn findings(report: &Value, kind: &str) -> Vec<Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn uploads_land_in_their_tiers_with_hashes_tags_and_access_tiers() {
    let o = Offsite::new();
    o.sb.run(&["backup"]).ok();
    let (_, sunday) = last(chrono::Weekday::Sun);
    let weekly_file = backdate(&o.sb, "order_db", &sunday);
    // The container does not exist yet: the first upload creates it.
    let report = o.json(&["upload", "all"]);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{report}");
    assert!(
        results.iter().all(|r| r["status"] == "uploaded"),
        "{report}"
    );

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for dump in o.sb.dumps() {
        let file = dump.file_name().unwrap().to_string_lossy().into_owned();
        let dbname = if file.starts_with("order_db") {
            "order_db"
        } else {
            "inventory_db"
        };
        // Tier auto: the first backup of a week (from Sunday 00:00 UTC) is
        // its weekly copy: last Sunday's of order_db (and today's, on a
        // Sunday), and today's of inventory_db, its first.
        let stamp = file
            .trim_end_matches(".dump.gz")
            .rsplit('_')
            .take(2)
            .collect::<Vec<_>>();
        let stamp = format!("{}_{}", stamp[1], stamp[0]);
        let tier = if dbname == "inventory_db" {
            "weekly".to_string()
        } else {
            order_blob(&stamp).split('/').next().unwrap().to_string()
        };
        let weekly = tier == "weekly";
        let name = format!("{tier}/{dbname}/{file}");
        let b = o.blob(&name);
        let sha = sha256_file(&dump);
        // Checked by Microsoft's SDK, not by our own client.
        assert_eq!(o.az.sha256(CONTAINER, &name), sha);
        assert_eq!(b["metadata"]["sha256"], sha.as_str());
        assert_eq!(b["metadata"]["database"], dbname);
        assert_eq!(b["metadata"]["tier"], tier);
        assert_eq!(b["tags"]["tier"], tier);
        assert_eq!(b["tags"]["database"], dbname);
        let date = if dump == weekly_file {
            format!("{}-{}-{}", &sunday[..4], &sunday[4..6], &sunday[6..8])
        } else {
            today.clone()
        };
        assert_eq!(b["tags"]["date"], date.as_str());
        assert_eq!(b["access_tier"], if weekly { "Cold" } else { "Cool" });
        // No whole-file Content-MD5 (the service would store it unchecked);
        // each block was checked by its CRC-64 as it was staged, and the
        // SHA-256 above by Microsoft's SDK.
        assert!(b["content_md5"].is_null(), "{b}");
        let manifest = name.replace(".dump.gz", ".manifest.json");
        let manifest_sha = o.blob(&manifest)["metadata"]["sha256"].clone();
        assert_eq!(manifest_sha, o.az.sha256(CONTAINER, &manifest).as_str());
        assert_eq!(
            o.az.sha256(CONTAINER, &manifest),
            sha256_file(Path::new(
                &dump.to_string_lossy().replace(".dump.gz", ".manifest.json")
            ))
        );
    }

    // Idempotent: a second run finds every copy in place.
    let again = o.json(&["upload", "all"]);
    assert!(
        again["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "present"),
        "{again}"
    );
    assert_eq!(o.blobs().len(), 6);

    // `list` shows local and offsite side by side.
    let list = o.json(&["list"]);
    let tiers: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offsite"].to_string())
        .collect();
    assert!(tiers.contains(&"[\"weekly\"]".to_string()), "{list}");
    let sunday_today = chrono::Datelike::weekday(&chrono::Utc::now()) == chrono::Weekday::Sun;
    assert_eq!(
        tiers.iter().filter(|t| *t == "[\"daily\"]").count(),
        if sunday_today { 0 } else { 1 },
        "{list}"
    );
    let table = o.run(&["list"]).ok().stdout;
    assert!(
        table.contains("OFFSITE") && table.contains("weekly"),
        "{table}"
    );

    // Every copy re-hashes clean; the only problem is the days between
    // last Sunday and today, which have no copy.
    let audit = o.run(&["audit", "--deep", "--json"]);
    let audit: Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(audit["deep_checked"], 3, "{audit}");
    let findings = audit["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["kind"] == "missing-daily"),
        "{audit}"
    );
    let recheck = o.json(&["audit", "--deep", "--recheck"]);
    assert_eq!(recheck["deep_checked"], 3, "{recheck}");
    // ... and the next deep audit re-reads nothing it has proven.
    let audit = o.json(&["audit", "--deep"]);
    assert_eq!(
        (
            audit["deep_checked"].as_u64(),
            audit["deep_skipped"].as_u64()
        ),
        (Some(0), Some(3))
    );
}

#[test]
fn one_weekly_copy_per_week_and_the_weekly_job_only_catches_up() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    // Two backups of one week, Sunday's and Monday's, each uploaded as the
    // backup job does (tier auto); today's real backup is set aside.
    let (_, sunday) = last(chrono::Weekday::Sun);
    let day = chrono::NaiveDate::parse_from_str(&sunday[..8], "%Y%m%d").unwrap();
    let monday = format!("{}_020000", (day + chrono::Days::new(1)).format("%Y%m%d"));
    let real = o.sb.dump_of("order_db");
    backdate(&o.sb, "order_db", &sunday);
    backdate(&o.sb, "order_db", &monday);
    std::fs::remove_file(manifest_blob(real.to_str().unwrap())).unwrap();
    std::fs::remove_file(&real).unwrap();
    o.run(&["upload", &sunday]).ok();
    o.run(&["upload", &monday]).ok();
    // Listed by Microsoft's SDK: one weekly copy, Sunday's; Monday's daily.
    let dumps = |tier: &str| -> Vec<String> {
        let names = o.az.list(CONTAINER, &format!("{tier}/order_db/"));
        let names = names
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string());
        names.filter(|n| n.ends_with(".dump.gz")).collect()
    };
    let weekly_of = |s: &str| format!("weekly/order_db/order_db_{s}.dump.gz");
    assert_eq!(dumps("weekly"), [weekly_of(&sunday)]);
    assert_eq!(dumps("daily"), [daily(&monday)]);
    // The weekly job uploads the newest backup by the same rule: the week
    // has its copy, so Monday's stays daily (present), and no second one.
    o.run(&["agent", "--once", "weekly-upload"]).ok();
    assert_eq!(dumps("weekly"), [weekly_of(&sunday)]);
    // A week whose weekly copy is lost (Sunday's upload failed): the job
    // catches up with Monday's.
    for name in [weekly_of(&sunday), manifest_blob(&weekly_of(&sunday))] {
        o.az.py_reader(&["delete", CONTAINER, &name]);
    }
    o.run(&["agent", "--once", "weekly-upload"]).ok();
    assert_eq!(dumps("weekly"), [weekly_of(&monday)]);
    let copy = o.blob(&weekly_of(&monday));
    assert_eq!(copy["tags"]["tier"], "weekly");
    assert_eq!(copy["access_tier"], "Cold");
    assert_eq!(dumps("daily"), [daily(&monday)]);
}

#[test]
fn backup_upload_then_restore_from_azure_on_an_empty_machine() {
    let o = Offsite::new();
    let before = (
        o.sb.pg.fingerprint("order_db"),
        o.sb.pg.fingerprint("inventory_db"),
    );
    o.run(&["backup", "--upload"]).ok();
    assert_eq!(o.blobs().len(), 4);
    // A fresh inventory audits clean, deep included.
    let audit = o.run(&["audit", "--deep"]).ok();
    assert!(
        audit.stdout.contains("no problems found"),
        "{}",
        audit.stdout
    );
    // The machine is lost: no local backups, and the data is damaged.
    std::fs::remove_dir_all(o.sb.backup_dir()).unwrap();
    o.sb.pg
        .psql("order_db", "DELETE FROM order_items; DELETE FROM invoices;");
    o.sb.pg.psql("inventory_db", "DELETE FROM stock_movements;");
    // A fetch cut off after its manifest: that manifest is all that is left.
    std::fs::create_dir_all(o.sb.backup_dir()).unwrap();
    let blobs = o.blobs();
    let manifest = blobs
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .find(|n| n.contains("/order_db/") && n.ends_with(".manifest.json"))
        .unwrap();
    let file = manifest.rsplit('/').next().unwrap();
    std::fs::write(o.sb.backup_dir().join(file), b"{\"cut\": \"off\"}").unwrap();
    let r = o
        .run(&["restore", "latest", "both", "--from-azure", "--yes"])
        .ok();
    assert!(
        r.stderr.contains("offsite copy daily/") || r.stderr.contains("offsite copy weekly/"),
        "{}",
        r.stderr
    );
    assert_eq!(o.sb.pg.fingerprint("order_db"), before.0);
    assert_eq!(o.sb.pg.fingerprint("inventory_db"), before.1);
    // The fetched backups are ordinary local backups again, 0600.
    use std::os::unix::fs::PermissionsExt;
    let dumps = o.sb.dumps();
    assert_eq!(dumps.len(), 2);
    for d in dumps {
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    o.sb.run(&["verify"]).ok();
}

#[test]
fn tampered_copies_are_found_and_never_restored() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    let stamp = o.sb.dumps()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("order_db_")
        .trim_end_matches(".dump.gz")
        .to_string();
    o.run(&["upload", &stamp, "--tier", "daily"]).ok();
    o.run(&["upload", &stamp, "--tier", "weekly"]).ok();
    let file = format!("order_db_{stamp}.dump.gz");
    let (daily, weekly) = (
        format!("daily/order_db/{file}"),
        format!("weekly/order_db/{file}"),
    );
    o.az.py_reader(&["tamper", CONTAINER, &daily]);

    let audit = o.run(&["audit", "--deep", "--json"]);
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    let report: Value = serde_json::from_str(&audit.stdout).unwrap();
    let corrupt = findings(&report, "corrupt");
    assert_eq!(corrupt.len(), 1, "{report}");
    assert_eq!(corrupt[0]["blob"], daily.as_str());
    assert!(audit.error().contains("1 corrupt"), "{}", audit.error());

    // One copy of two verifies: restore uses it and says which.
    let before = o.sb.pg.fingerprint("order_db");
    std::fs::remove_dir_all(o.sb.backup_dir()).unwrap();
    o.sb.pg.psql("order_db", "DELETE FROM invoices;");
    let damaged = o.sb.pg.fingerprint("order_db");
    let r = o
        .run(&["restore", &stamp, "order", "--from-azure", "--yes"])
        .ok();
    assert!(
        r.stderr.contains("restored from the weekly offsite copy"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("SHA-256"),
        "the bad daily copy is named: {}",
        r.stderr
    );
    assert_eq!(o.sb.pg.fingerprint("order_db"), before);
    // The post-mortem record names the copy that was used.
    let rec = o.sb.json(&["report", "show", "latest-restore", "--json"]);
    assert_eq!(rec["sources"][0]["blob"], weekly.as_str(), "{rec}");
    assert_eq!(rec["sources"][0]["tier"], "weekly", "{rec}");
    // The download is a step of the restore (part of its RTO).
    assert_eq!(rec["steps"][0]["name"], "fetch from Azure", "{rec}");
    assert!(rec["steps"][0]["secs"].as_f64().unwrap() > 0.0, "{rec}");
    // The next upload copies it offsite, byte for byte, with the tag that
    // lets the weekly rule expire it; once.
    let up = o.json(&["upload", &stamp, "--tier", "weekly"]);
    let name = rec["name"].as_str().unwrap();
    let json_blob = format!("reports/{name}.json");
    assert_eq!(
        up["reports"],
        serde_json::json!([format!("reports/{name}.md"), json_blob.clone()]),
        "{up}"
    );
    assert_eq!(o.blob(&json_blob)["tags"]["superseded"], "true");
    let local = o.sb.backup_dir().join(format!("reports/{name}.json"));
    assert_eq!(
        o.az.py_reader(&["sha256", CONTAINER, &json_blob]).trim(),
        common::sha256_file(&local)
    );
    let again = o.json(&["upload", &stamp, "--tier", "weekly"]);
    assert_eq!(again["reports"], serde_json::json!([]), "{again}");

    // No copy verifies: refused, and the live database is left alone.
    o.az.py_reader(&["tamper", CONTAINER, &weekly]);
    std::fs::remove_dir_all(o.sb.backup_dir()).unwrap();
    o.sb.pg.psql("order_db", "DELETE FROM invoices;");
    let r = o.run(&["restore", "latest", "order", "--from-azure", "--yes"]);
    r.fails_with(1, "no offsite copy verifies");
    assert_eq!(o.sb.pg.fingerprint("order_db"), damaged);
    // On record too: the fetch failed, nothing was touched.
    let rec = o.sb.json(&["report", "show", "latest-restore", "--json"]);
    assert_eq!(rec["outcome"], "failed", "{rec}");
    assert_eq!(rec["steps"][0]["ok"], false, "{rec}");
    let cause = rec["steps"][0]["detail"].as_str().unwrap();
    assert!(cause.contains("no offsite copy verifies"), "{rec}");
    assert!(
        rec["undo"][0].as_str().unwrap().contains("nothing to undo"),
        "{rec}"
    );
    assert!(o.sb.dumps().is_empty(), "nothing unverified is kept");
    assert!(
        common::list_dir(&o.sb.backup_dir())
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".partial"))
    );
}

#[test]
fn audit_finds_gaps_retention_sizes_tiers_and_missing_hashes() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    // Twelve days of daily backups; then the inventory is damaged in every
    // way the audit knows.
    for days in 1..=12 {
        backdate(&o.sb, "order_db", &stamp_days_ago(days, 2));
    }
    o.json(&["upload", "all"]);
    let gone = weekday_stamp(&[5, 6], 2);
    o.az.py_reader(&["delete", CONTAINER, &order_blob(&gone)]);
    let (days, sunday) = last(chrono::Weekday::Sun);
    let sunday_blob = format!("weekly/order_db/order_db_{sunday}.dump.gz");
    assert!(days <= 7);
    o.az.py_reader(&["delete", CONTAINER, &sunday_blob]);
    let hot = order_blob(&weekday_stamp(&[3, 4], 2));
    o.az.py_reader(&["set-tier", CONTAINER, &hot, "Hot"]);
    let no_manifest = order_blob(&weekday_stamp(&[9, 10], 2));
    let manifest_blob = no_manifest.replace(".dump.gz", ".manifest.json");
    o.az.py_reader(&["delete", CONTAINER, &manifest_blob]);
    // The local manifest of one backup now disagrees with its copy.
    let disagree = weekday_stamp(&[7, 8], 2);
    let path =
        o.sb.backup_dir()
            .join(format!("order_db_{disagree}.dump.gz"));
    let mut m = common::manifest(&path);
    m["sha256"] = "0".repeat(64).into();
    write_manifest(&path, &m);
    // A local backup that never went offsite.
    let missed = stamp_days_ago(2, 14);
    backdate(&o.sb, "order_db", &missed);
    // A copy far smaller than the others, with a consistent manifest.
    let tiny = backdate(&o.sb, "order_db", &stamp_days_ago(4, 14));
    std::fs::write(&tiny, b"tiny").unwrap();
    let mut m = common::manifest(&tiny);
    m["sha256"] = sha256_file(&tiny).into();
    m["size_bytes"] = 4.into();
    write_manifest(&tiny, &m);
    o.run(&["upload", &stamp_days_ago(4, 14)]).ok();
    // Someone else's uploads: one without our metadata, one not ours at all.
    let nohash = format!("daily/order_db/order_db_{}.dump.gz", stamp_days_ago(6, 14));
    let tiny_path = tiny.to_str().unwrap();
    o.az.py_reader(&["upload", CONTAINER, &nohash, tiny_path]);
    let manifest_of_nohash = nohash.replace(".dump.gz", ".manifest.json");
    o.az.py_reader(&["upload", CONTAINER, &manifest_of_nohash, tiny_path]);
    o.az.py_reader(&["upload", CONTAINER, "daily/order_db/notes.txt", tiny_path]);

    let r = o.run(&["audit", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let one = |kind: &str| {
        let f = findings(&report, kind);
        assert!(!f.is_empty(), "no {kind} finding in {report}");
        f
    };
    let detail = |f: &Value| f["detail"].as_str().unwrap().to_string();
    let daily = one("missing-daily");
    let day = |s: &str| format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..8]);
    assert!(detail(&daily[0]).contains(&day(&gone)), "{daily:?}");
    assert!(
        !detail(&daily[0]).contains(&day(&weekday_stamp(&[3, 4], 2))),
        "{daily:?}"
    );
    let weekly = one("missing-weekly");
    assert!(detail(&weekly[0]).contains(&day(&sunday)), "{weekly:?}");
    let missed_f = one("not-offsite");
    assert!(
        missed_f.iter().any(|f| detail(f).contains(&missed)),
        "{missed_f:?}"
    );
    let tier = one("wrong-tier");
    let hot_f = tier.iter().find(|f| f["blob"] == hot.as_str());
    assert!(
        detail(hot_f.expect("the Hot copy is named")).contains("Hot"),
        "{tier:?}"
    );
    let small = one("size-anomaly");
    assert!(
        small
            .iter()
            .any(|f| f["blob"].as_str().unwrap().contains(&stamp_days_ago(4, 14)))
    );
    assert_eq!(one("no-hash")[0]["blob"], nohash.as_str());
    assert_eq!(one("missing-manifest")[0]["blob"], no_manifest.as_str());
    assert_eq!(
        one("hash-mismatch")[0]["blob"],
        order_blob(&disagree).as_str()
    );
    assert_eq!(one("unknown-blob")[0]["blob"], "daily/order_db/notes.txt");
    assert!(findings(&report, "past-retention").is_empty(), "{report}");
    // The human report names each problem on its own line.
    let text = o.run(&["audit"]).stdout;
    for kind in [
        "missing-daily",
        "missing-weekly",
        "not-offsite",
        "wrong-tier",
        "hash-mismatch",
    ] {
        assert!(text.contains(kind), "{kind} missing from:\n{text}");
    }
    // --db narrows the audit to one database.
    let inv = o.run(&["audit", "--db", "inventory", "--json"]);
    let inv: Value = serde_json::from_str(&inv.stdout).unwrap();
    assert_eq!(inv["databases"].as_array().unwrap().len(), 1, "{inv}");
    assert_eq!(inv["databases"][0]["dbname"], "inventory_db");
    assert!(findings(&inv, "unknown-blob").is_empty(), "{inv}");

    // Forty days on, the daily copies are past their 30 days (the lifecycle
    // policy counts from upload) and the weekly ones are not.
    let later = (chrono::Utc::now() + chrono::Duration::days(40)).to_rfc3339();
    let report = o.json(&["audit", "--as-of", &later]);
    let past = findings(&report, "past-retention");
    assert!(!past.is_empty(), "{report}");
    assert!(
        past.iter()
            .all(|f| f["blob"].as_str().unwrap().starts_with("daily/")),
        "{past:?}"
    );
    // prune --offsite deletes them, dump and manifest, but never the newest
    // copy of a database.
    let dry = o
        .run(&["prune", "--offsite", "--dry-run", "--as-of", &later])
        .ok()
        .stdout;
    assert!(dry.contains(&order_blob(&stamp_days_ago(1, 2))), "{dry}");
    o.run(&["prune", "--offsite", "--as-of", &later]).ok();
    let names: Vec<String> = o
        .blobs()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("daily/order_db/order_db_")
                && n.ends_with(".dump.gz")
                && !n.contains(&stamp_days_ago(0, 0)[..8])),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("weekly/")), "{names:?}");
    let newest = o.sb.dump_of("order_db");
    let newest = newest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        names.iter().any(|n| n.ends_with(&newest)),
        "the newest copy stays: {names:?}"
    );
    let today = o.json(&["audit"]);
    assert!(findings(&today, "past-retention").is_empty());
}

#[test]
fn offsite_faults_are_named_and_lose_nothing() {
    let o = Offsite::new();
    o.sb.run(&["backup"]).ok();

    // Wrong key: one line, non-zero, the key never printed.
    let bad_key = "QmFkS2V5QmFkS2V5QmFkS2V5QmFkS2V5";
    let conn = o.az.conn_string().replace(KEY, bad_key);
    let r = o.run_with(&["upload"], &conn);
    let e = r.fails_with(1, "403");
    assert!(e.contains("credential was refused"), "{e}");
    assert!(!r.stderr.contains(bad_key), "{}", r.stderr);
    assert!(
        !r.stderr.replace("sig=REDACTED", "").contains("sig="),
        "{}",
        r.stderr
    );
    // A SAS that may not create containers, while the container is missing.
    let sas_conn = |sas: &str| {
        format!(
            "BlobEndpoint={};SharedAccessSignature={}",
            o.az.blob_endpoint(),
            sas.trim()
        )
    };
    let objects_only = o.az.py_reader(&["sas", "racwl", "--resource-types", "o"]);
    let r = o.run_with(&["upload"], &sas_conn(&objects_only));
    r.fails_with(1, "creating container database-backups: HTTP 403");
    let listed = o.az.try_py_reader(&["list", CONTAINER]);
    assert!(
        listed.unwrap_err().contains("ContainerNotFound"),
        "nothing was created"
    );
    // An expired SAS: refused, and its signature never printed.
    let expired = o.az.py_reader(&["sas", "racwdl", "--hours", "-1"]);
    let r = o.run_with(&["upload"], &sas_conn(&expired));
    r.fails_with(1, "credential was refused");
    assert!(
        !r.stderr.replace("sig=REDACTED", "").contains("sig="),
        "{}",
        r.stderr
    );
    let sig = expired.split("sig=").nth(1).unwrap().trim();
    assert!(!r.stderr.contains(sig), "{}", r.stderr);
    let listed = o.az.try_py_reader(&["list", CONTAINER]);
    assert!(
        listed.unwrap_err().contains("ContainerNotFound"),
        "nothing was created"
    );
    // No connection string at all.
    let mut cmd = o.sb.command(&["upload"]);
    cmd.env_remove("AZURE_STORAGE_CONNECTION_STRING");
    common::run(cmd).fails_with(2, "AZURE_STORAGE_CONNECTION_STRING");
    // No [azure] section.
    o.sb.write_config("");
    o.sb.run(&["audit"]).fails_with(2, "no [azure] section");
    o.configure("");

    // A local file changed after its manifest: refused, nothing committed.
    let dump = o.sb.dump_of("order_db");
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, &bytes).unwrap();
    let r = o.run(&["upload"]);
    r.fails_with(3, "changed after the backup");
    let names: Vec<String> = o
        .blobs()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.contains("order_db")), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains("inventory_db")),
        "the other database still went up"
    );
}

#[test]
fn an_upload_cut_off_by_the_emulator_dying_leaves_no_blob_and_resumes() {
    let o = Offsite::new();
    o.configure("block_size_mib = 1\nupload_concurrency = 2");
    std::fs::create_dir_all(o.sb.backup_dir()).unwrap();
    // A large, sound backup: random bytes with a manifest that matches.
    o.sb.run(&["backup", "order"]).ok();
    let stamp = stamp_days_ago(1, 2);
    let big = backdate(&o.sb, "order_db", &stamp);
    let mut f = std::fs::File::create(&big).unwrap();
    std::io::copy(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 256 << 20),
        &mut f,
    )
    .unwrap();
    drop(f);
    let mut m = common::manifest(&big);
    m["sha256"] = sha256_file(&big).into();
    m["size_bytes"] = (256u64 << 20).into();
    write_manifest(&big, &m);
    let blob = format!("daily/order_db/order_db_{stamp}.dump.gz");
    o.az.create_container(CONTAINER);

    let mut cmd =
        o.sb.command(&["upload", &stamp, "--tier", "daily", "--json"]);
    cmd.env("AZURE_STORAGE_CONNECTION_STRING", o.az.conn_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Stop the emulator once blocks have started to arrive.
    let data = o.az.dir.join("data");
    let t0 = std::time::Instant::now();
    while dir_bytes(&data) < 8 << 20 {
        assert!(t0.elapsed().as_secs() < 60, "no blocks arrived");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    o.az.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let e = stderr
        .lines()
        .rfind(|l| l.starts_with("valerix-backup: error:"))
        .unwrap();
    assert!(e.contains("cannot reach the storage service"), "{e}");

    o.az.restart();
    assert!(
        o.blobs().iter().all(|b| b["name"] != blob.as_str()),
        "no committed partial blob"
    );
    let staged: Value =
        serde_json::from_str(&o.az.py_reader(&["blocks", CONTAINER, &blob])).unwrap();
    assert!(staged["uncommitted"].as_u64().unwrap() > 0, "{staged}");

    let report = o.json(&["upload", &stamp, "--tier", "daily"]);
    let r = &report["results"][0];
    assert_eq!(r["status"], "uploaded", "{report}");
    assert!(r["resumed_blocks"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(o.az.sha256(CONTAINER, &blob), sha256_file(&big));
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[test]
fn lifecycle_policy_matches_the_configured_tiers() {
    let o = Offsite::new();
    o.configure("prefix = \"prod/\"\ndaily_retention_days = 35");
    let json: Value = serde_json::from_str(&o.sb.run(&["lifecycle-policy"]).ok().stdout).unwrap();
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    let text = json.to_string();
    assert!(
        text.contains("database-backups/prod/daily/")
            && text.contains("database-backups/prod/weekly/")
    );
    assert!(text.contains("35") && text.contains("90"));
    let tf =
        o.sb.run(&["lifecycle-policy", "--format", "terraform"])
            .ok()
            .stdout;
    assert!(tf.contains("azurerm_storage_management_policy") && tf.contains("35"));
    let bicep =
        o.sb.run(&["lifecycle-policy", "--format", "bicep"])
            .ok()
            .stdout;
    assert!(bicep.contains("managementPolicies") && bicep.contains("prod/weekly/"));
}

/// The per-block check the upload relies on: the emulator, like the
/// service, refuses a block whose `x-ms-content-crc64` does not match its
/// bytes (400 `Crc64Mismatch`) and takes one whose CRC-64 does, computed as
/// the upload computes it (CRC-64/NVME, little-endian). Sent with Microsoft's
/// Rust SDK directly, since the program never sends a wrong one.
#[test]
fn a_block_whose_crc64_does_not_match_is_refused() {
    use azure_storage_blob::BlockBlobClient;
    use azure_storage_blob::models::BlockBlobClientStageBlockOptions;
    let az = Azurite::start();
    az.create_container(CONTAINER);
    let sas = az.py_reader(&["sas", "racwdl"]);
    let url = format!("{}/{CONTAINER}/crc.bin?{}", az.blob_endpoint(), sas.trim());
    let client = BlockBlobClient::new(url.parse().unwrap(), None, None).unwrap();
    let block = b"Hello World".to_vec();
    let good = crc_fast::crc64_nvme(&block).to_le_bytes();
    let mut bad = good;
    bad[0] ^= 1;
    let stage = |id: &[u8], crc: [u8; 8]| {
        let opts = BlockBlobClientStageBlockOptions {
            transactional_content_crc64: Some(crc.to_vec()),
            ..Default::default()
        };
        let body = azure_core::http::RequestContent::from(block.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client.stage_block(id, block.len() as u64, body, Some(opts)))
    };
    let e = stage(b"000000", bad).expect_err("a wrong CRC-64 was accepted");
    assert_eq!(
        e.http_status(),
        Some(azure_core::http::StatusCode::BadRequest),
        "{e}"
    );
    assert!(format!("{e:?}").contains("Crc64Mismatch"), "{e:?}");
    stage(b"000001", good).expect("the right CRC-64 was refused");
}

#[test]
fn a_sas_token_with_an_account_url_works() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    o.az.create_container(CONTAINER);
    let account_url = o.az.blob_endpoint();
    o.configure(&format!("account_url = \"{account_url}\"\nauth = \"sas\""));
    let sas = o.az.py_reader(&["sas", "racwdl"]);
    let with_sas = |args: &[&str]| {
        let mut cmd = o.sb.command(args);
        cmd.env_remove("AZURE_STORAGE_CONNECTION_STRING")
            .env("AZURE_STORAGE_SAS_TOKEN", sas.trim());
        common::run(cmd)
    };
    let r = with_sas(&["upload"]).ok();
    assert!(r.stdout.contains("uploaded"), "{}", r.stdout);
    let dump = o.sb.dump_of("order_db");
    let tier = if r.stdout.contains("weekly") {
        "weekly"
    } else {
        "daily"
    };
    let name = format!(
        "{tier}/order_db/{}",
        dump.file_name().unwrap().to_string_lossy()
    );
    assert_eq!(o.az.sha256(CONTAINER, &name), sha256_file(&dump));
    // This SAS may not write tags (no `t`): an older copy uploaded now is
    // superseded but cannot be tagged. The upload still succeeds and says
    // so; the audit reports it once for the database.
    let older = weekday_stamp(&[2, 3], 2);
    backdate(&o.sb, "order_db", &older);
    let older_blob = format!("{tier}/order_db/order_db_{older}.dump.gz");
    let r = with_sas(&["upload", &older, "--tier", tier]).ok();
    assert!(r.stderr.contains("not tagged"), "{}", r.stderr);
    assert!(!o.superseded(&older_blob));
    let r = with_sas(&["audit", "--json"]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let f = findings(&report, "tag-repair");
    assert_eq!(f.len(), 1, "{report}");
    assert_eq!(f[0]["database"], "order_db");
    assert!(
        f[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("2 blob(s) not tagged"),
        "{f:?}"
    );
    // With a credential that may, the audit repairs it.
    o.configure("");
    o.run(&["audit"]);
    assert!(o.superseded(&older_blob));
    o.configure(&format!("account_url = \"{account_url}\"\nauth = \"sas\""));
    // The variable unset: named, exit 2.
    let mut cmd = o.sb.command(&["upload"]);
    cmd.env_remove("AZURE_STORAGE_SAS_TOKEN");
    common::run(cmd).fails_with(2, "AZURE_STORAGE_SAS_TOKEN");
}

/// The timestamp in a dump file's name (`order_db_20261201_020000.dump.gz`).
fn stamp_of(dump: &Path) -> String {
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    let stem = name.trim_end_matches(".dump.gz");
    stem[stem.len() - 15..].to_string()
}

fn daily(stamp: &str) -> String {
    format!("daily/order_db/order_db_{stamp}.dump.gz")
}

fn manifest_blob(dump_blob: &str) -> String {
    dump_blob.replace(".dump.gz", ".manifest.json")
}

impl Offsite {
    fn names(&self) -> Vec<String> {
        self.blobs()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Whether the blob carries the tag the lifecycle policy deletes by.
    fn superseded(&self, name: &str) -> bool {
        self.blob(name)["tags"]["superseded"] == "true"
    }

    /// Replaces one metadata key of a blob, keeping the others.
    fn set_metadata(&self, name: &str, key: &str, value: &str) {
        let meta = self.blob(name)["metadata"].clone();
        let mut pairs: Vec<String> = meta
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        pairs.push(format!("{key}={value}"));
        let mut args = vec!["set-metadata", CONTAINER, name];
        args.extend(pairs.iter().map(String::as_str));
        self.az.py_reader(&args);
    }
}

// Defect 4: an inventory with nothing in it, or nothing recent, is a finding.
#[test]
fn audit_of_an_empty_or_stale_inventory_fails_naming_each_database() {
    let o = Offsite::new();
    o.az.create_container(CONTAINER);
    let r = o.run(&["audit", "--json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let dbs = |report: &Value, kind: &str| {
        let mut d: Vec<String> = findings(report, kind)
            .iter()
            .map(|f| f["database"].as_str().unwrap().to_string())
            .collect();
        d.sort();
        d
    };
    assert_eq!(
        dbs(&report, "no-offsite-copy"),
        ["inventory_db", "order_db"],
        "{report}"
    );
    assert!(r.error().contains("2 no-offsite-copy"), "{}", r.error());
    let text = o.run(&["audit"]).stdout;
    for db in ["order_db", "inventory_db"] {
        assert!(
            text.lines()
                .any(|l| l.contains("no-offsite-copy") && l.contains(db)),
            "{db} not named:\n{text}"
        );
    }

    // Fresh copies of both: nothing of the kind.
    o.sb.run(&["backup"]).ok();
    o.run(&["upload"]).ok();
    let fresh = o.json(&["audit"]);
    assert!(dbs(&fresh, "no-offsite-copy").is_empty(), "{fresh}");
    assert!(dbs(&fresh, "uploads-stopped").is_empty(), "{fresh}");

    // A wrong prefix hides them all again, and the finding says where it looked.
    o.configure("prefix = \"prod/\"");
    let wrong = o.json(&["audit"]);
    let none = findings(&wrong, "no-offsite-copy");
    assert_eq!(none.len(), 2, "{wrong}");
    assert!(
        none[0]["detail"].as_str().unwrap().contains("\"prod/\""),
        "{none:?}"
    );

    // Three days without an upload: the newest copy is too old.
    o.configure("");
    let later = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let r = o.run(&["audit", "--as-of", &later, "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let stale: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        dbs(&stale, "uploads-stopped"),
        ["inventory_db", "order_db"],
        "{stale}"
    );
    let f = &findings(&stale, "uploads-stopped")[0];
    assert!(f["detail"].as_str().unwrap().contains("limit 36 h"), "{f}");
    // The limit is a setting.
    o.configure("max_offsite_age_hours = 96");
    let relaxed = o.json(&["audit", "--as-of", &later]);
    assert!(dbs(&relaxed, "uploads-stopped").is_empty(), "{relaxed}");
}

// Defect 6: prune keeps the newest SOUND copy, and never leaves none.
#[test]
fn prune_offsite_keeps_the_newest_sound_copy_not_just_the_newest_name() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    let today = stamp_of(&o.sb.dump_of("order_db"));
    let old: Vec<String> = [2, 3, 4].iter().map(|d| stamp_days_ago(*d, 2)).collect();
    for s in &old {
        backdate(&o.sb, "order_db", s);
    }
    o.json(&["upload", "all", "--tier", "daily"]);
    // The newest copy lost its metadata (re-uploaded by hand); the next one
    // changed after upload, and a deep audit finds it.
    o.az.py_reader(&["set-metadata", CONTAINER, &daily(&today)]);
    o.az.py_reader(&["tamper", CONTAINER, &daily(&old[0])]);
    let audit = o.run(&["audit", "--deep", "--json"]);
    assert_eq!(audit.code, 1, "{}", audit.stderr);
    let report: Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(
        findings(&report, "corrupt")[0]["blob"],
        daily(&old[0]).as_str()
    );
    assert_eq!(
        findings(&report, "no-hash")[0]["blob"],
        daily(&today).as_str()
    );

    // Forty days on, every copy is past the daily tier's 30 days.
    let later = (chrono::Utc::now() + chrono::Duration::days(40)).to_rfc3339();
    let dry = o
        .run(&["prune", "--offsite", "--dry-run", "--as-of", &later])
        .ok()
        .stdout;
    assert!(dry.contains(&daily(&old[2])), "{dry}");
    assert!(!dry.contains(&daily(&old[1])), "{dry}");
    o.run(&["prune", "--offsite", "--as-of", &later]).ok();
    let names = o.names();
    // The newest sound copy stays, and so do the broken ones newer than it
    // (a person decides about those); only the older sound one goes.
    for kept in [&today, &old[0], &old[1]] {
        assert!(names.contains(&daily(kept)), "{kept}: {names:?}");
        assert!(names.contains(&manifest_blob(&daily(kept))), "{names:?}");
    }
    assert!(!names.contains(&daily(&old[2])), "{names:?}");
    assert!(
        !names.contains(&manifest_blob(&daily(&old[2]))),
        "{names:?}"
    );
    // ... with its content intact, checked by Microsoft's SDK.
    let local =
        o.sb.backup_dir()
            .join(format!("order_db_{}.dump.gz", old[1]));
    assert_eq!(o.az.sha256(CONTAINER, &daily(&old[1])), sha256_file(&local));
    // The lifecycle policy agrees: nothing kept carries its delete tag.
    for kept in [&today, &old[0], &old[1]] {
        assert!(!o.superseded(&daily(kept)), "{kept}");
    }
}

// Defect 5: the newest sound copy never carries the tag the policy deletes by.
#[test]
fn only_superseded_copies_carry_the_tag_the_lifecycle_policy_deletes_by() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    let today = stamp_of(&o.sb.dump_of("order_db"));
    let (d3, d2) = (stamp_days_ago(3, 2), stamp_days_ago(2, 2));
    backdate(&o.sb, "order_db", &d3);
    backdate(&o.sb, "order_db", &d2);
    o.run(&["upload", &d3, "--tier", "daily"]).ok();
    assert!(!o.superseded(&daily(&d3)), "the only copy");
    o.run(&["upload", &d2, "--tier", "daily"]).ok();
    for name in [daily(&d3), manifest_blob(&daily(&d3))] {
        assert!(o.superseded(&name), "{name}: {}", o.blob(&name));
        // Its other tags stay.
        assert_eq!(o.blob(&name)["tags"]["database"], "order_db");
    }
    assert!(!o.superseded(&daily(&d2)));
    assert!(!o.superseded(&manifest_blob(&daily(&d2))));
    o.run(&["upload", &today, "--tier", "daily"]).ok();
    assert!(o.superseded(&daily(&d2)));
    assert!(!o.superseded(&daily(&today)));
    // Tiers are apart: the only weekly copy is the newest of its tier.
    o.run(&["upload", &d2, "--tier", "weekly"]).ok();
    let weekly = format!("weekly/order_db/order_db_{d2}.dump.gz");
    assert!(!o.superseded(&weekly));

    // A lost tag and a wrong one (copies from an older version, a hand
    // edit): the audit repairs both.
    o.az.py_reader(&[
        "set-tags",
        CONTAINER,
        &daily(&d3),
        "tier=daily",
        "database=order_db",
    ]);
    o.az.py_reader(&[
        "set-tags",
        CONTAINER,
        &daily(&today),
        "tier=daily",
        "superseded=true",
    ]);
    o.run(&["audit"]);
    assert!(o.superseded(&daily(&d3)));
    assert!(!o.superseded(&daily(&today)));
    assert_eq!(o.blob(&daily(&today))["tags"]["tier"], "daily");

    // And the policy deletes only what carries the tag.
    let policy: Value = serde_json::from_str(&o.sb.run(&["lifecycle-policy"]).ok().stdout).unwrap();
    for rule in policy["rules"].as_array().unwrap() {
        assert_eq!(
            rule["definition"]["filters"]["blobIndexMatch"],
            serde_json::json!([{ "name": "superseded", "op": "==", "value": "true" }]),
            "{rule}"
        );
    }
}

// Defect 11: whatever the service holds, one line naming the blob, no panic.
#[test]
fn malformed_hashes_and_manifests_from_azure_are_one_line_errors() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    let dump_path = o.sb.dump_of("order_db");
    let stamp = stamp_of(&dump_path);
    o.run(&["upload", &stamp, "--tier", "daily"]).ok();
    let dump = daily(&stamp);
    let manifest = manifest_blob(&dump);
    let good_sha = sha256_file(&dump_path);
    let saved = o.sb.work.path().join("saved.manifest.json");
    std::fs::copy(
        dump_path
            .to_string_lossy()
            .replace(".dump.gz", ".manifest.json"),
        &saved,
    )
    .unwrap();
    let good = o.sb.pg.fingerprint("order_db");
    o.sb.pg.psql("order_db", "DELETE FROM invoices;");
    let damaged = o.sb.pg.fingerprint("order_db");
    let restore = || {
        let _ = std::fs::remove_dir_all(o.sb.backup_dir());
        o.run(&["restore", &stamp, "order", "--from-azure", "--yes"])
    };
    let no_panic = |r: &Run| {
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    };

    // The dump blob's sha256 metadata: short, not hex, too long.
    for bad in ["abc", &"z".repeat(64), &"a".repeat(65)] {
        o.set_metadata(&dump, "sha256", bad);
        let r = restore();
        no_panic(&r);
        let e = r.fails_with(1, &dump);
        assert!(e.contains("not a SHA-256"), "{e}");
        assert_eq!(o.sb.pg.fingerprint("order_db"), damaged);
        // `list` shows the offsite-only copy, without its unusable hash.
        let l = o.run(&["list", "--json"]);
        no_panic(&l);
        let l: Value = serde_json::from_str(&l.ok().stdout).unwrap();
        assert_eq!(l[0]["state"], "offsite-only", "{l}");
        assert_eq!(l[0]["sha256"], Value::Null, "{l}");
        o.run(&["list"]).ok();
        let a = o.run(&["audit", "--deep", "--json"]);
        no_panic(&a);
        assert_eq!(a.code, 1, "{}", a.stderr);
        let report: Value = serde_json::from_str(&a.stdout).unwrap();
        let f = findings(&report, "no-hash");
        assert_eq!(f[0]["blob"], dump.as_str(), "{report}");
        assert!(f[0]["detail"].as_str().unwrap().contains("not a SHA-256"));
    }
    o.set_metadata(&dump, "sha256", &good_sha);

    // The manifest blob: not JSON, huge, a short hash inside valid JSON.
    let garbage = o.sb.work.path().join("garbage");
    std::fs::write(&garbage, b"\x00not json at all{").unwrap();
    let huge = o.sb.work.path().join("huge");
    std::fs::write(&huge, vec![b' '; 3 << 20]).unwrap();
    let short = o.sb.work.path().join("short");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    m["sha256"] = "abc".into();
    std::fs::write(&short, serde_json::to_vec(&m).unwrap()).unwrap();
    for (file, why) in [
        (&garbage, "not a valerix-backup manifest"),
        (&huge, "too large for a manifest"),
        (&short, "its sha256 is not a SHA-256"),
    ] {
        o.az.py_reader(&["upload", CONTAINER, &manifest, file.to_str().unwrap()]);
        let r = restore();
        no_panic(&r);
        let e = r.fails_with(1, &manifest);
        assert!(e.contains(why), "{e}");
        assert_eq!(o.sb.pg.fingerprint("order_db"), damaged);
        let a = o.run(&["audit", "--deep", "--recheck", "--json"]);
        no_panic(&a);
        let report: Value = serde_json::from_str(&a.stdout).unwrap();
        let f = findings(&report, "bad-manifest");
        assert_eq!(f.len(), 1, "{report}");
        assert_eq!(f[0]["blob"], dump.as_str());
        assert!(f[0]["detail"].as_str().unwrap().contains(why), "{f:?}");
    }

    // Put right, the same copy restores.
    o.az.py_reader(&["upload", CONTAINER, &manifest, saved.to_str().unwrap()]);
    restore().ok();
    assert_eq!(o.sb.pg.fingerprint("order_db"), good);
}

// Defect 10: a SAS only over https, except to this machine (Azurite).
#[test]
fn a_sas_never_travels_over_plain_http_to_another_host() {
    let o = Offsite::new();
    o.sb.run(&["backup", "order"]).ok();
    let sas = o.az.py_reader(&["sas", "racwdl"]);
    let sas = sas.trim();
    let sig = sas.split("sig=").nth(1).unwrap();
    let remote = "http://backups.invalid:10000/devstoreaccount1";
    o.configure(&format!("account_url = \"{remote}\"\nauth = \"sas\""));
    let mut cmd = o.sb.command(&["upload"]);
    cmd.env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env("AZURE_STORAGE_SAS_TOKEN", sas);
    let r = common::run(cmd);
    let e = r.fails_with(2, "only over https");
    assert!(
        e.contains("azure.account_url is http://backups.invalid"),
        "{e}"
    );
    assert!(!r.stderr.contains(sig), "{}", r.stderr);

    // The same through a connection string: its own SAS, or the one signed
    // from its account key.
    o.configure("");
    for conn in [
        format!("BlobEndpoint={remote};SharedAccessSignature={sas}"),
        format!("AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint={remote};"),
        format!("DefaultEndpointsProtocol=http;AccountName=vxbackups;AccountKey={KEY}"),
    ] {
        let r = o.run_with(&["upload"], &conn);
        let e = r.fails_with(2, "only over https");
        assert!(e.contains("AZURE_STORAGE_CONNECTION_STRING"), "{e}");
        assert!(
            !r.stderr.contains(sig) && !r.stderr.contains(KEY),
            "{}",
            r.stderr
        );
    }
    // Azurite on 127.0.0.1 over http is still fine.
    o.run(&["upload"]).ok();
}

// Defect 5: --apply merges with rules that are not ours, shows, and asks.
#[test]
fn lifecycle_policy_apply_merges_with_other_rules_shows_and_asks() {
    use common::arm::{self, FakeArm, SOURCE_RG, STORAGE_ACCOUNT};
    let logs = serde_json::json!({
        "name": "logsExpire", "enabled": true, "type": "Lifecycle",
        "definition": {
            "filters": { "blobTypes": ["blockBlob"], "prefixMatch": ["logs/"] },
            "actions": { "baseBlob": { "delete": { "daysAfterModificationGreaterThan": 7 } } }
        }
    });
    // Ours as an older version wrote it: by age alone.
    let old_daily = serde_json::json!({
        "name": "valerixDailyDelete", "enabled": true, "type": "Lifecycle",
        "definition": {
            "filters": { "blobTypes": ["blockBlob"], "prefixMatch": ["database-backups/daily/"] },
            "actions": { "baseBlob": { "delete": { "daysAfterCreationGreaterThan": 30 } } }
        }
    });
    let mut state = arm::scenario();
    state["management_policies"] = serde_json::json!({
        format!("{SOURCE_RG}/{STORAGE_ACCOUNT}"): { "rules": [logs.clone(), old_daily] }
    });
    let fake = FakeArm::start(state);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("vb.toml");
    std::fs::write(
        &config,
        format!(
            "backup_dir = \"backups\"\n\
             [[database]]\nname = \"order\"\ndbname = \"order_db\"\nuser = \"order_user\"\n\
             [azure]\ncontainer = \"database-backups\"\nmax_retries = 2\nretry_max_secs = 5\n\
             [azure.resource_manager]\nsubscription_id = \"{}\"\nresource_group = \"{SOURCE_RG}\"\n\
             endpoint = \"{}\"\nauth = \"client-secret\"\nstorage_account = \"{STORAGE_ACCOUNT}\"\n",
            arm::SUBSCRIPTION,
            fake.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(work.path())
            .envs(fake.env())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        common::run(cmd)
    };
    let puts = || fake.requests_to("PUT", "/managementPolicies/default");

    // No terminal, no --yes: the changes are shown, nothing is sent.
    let r = run(&["lifecycle-policy", "--apply"]);
    r.fails_with(2, "pass --yes");
    let replace = r
        .stdout
        .lines()
        .find(|l| l.contains("replace rule valerixDailyDelete: "))
        .unwrap_or_else(|| panic!("no replace line in {}", r.stdout));
    assert!(
        replace.contains("definition.filters.blobIndexMatch: (none) -> [{\"name\":\"superseded\""),
        "{replace}"
    );
    for want in [
        "add rule valerixWeeklyDelete",
        "keep rule logsExpire (not ours)",
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing: {}", r.stdout);
    }
    assert!(puts().is_empty());

    let printed: Value = serde_json::from_str(&run(&["lifecycle-policy"]).ok().stdout).unwrap();
    run(&["lifecycle-policy", "--apply", "--yes"]).ok();
    let put = puts();
    assert_eq!(put.len(), 1);
    assert_eq!(put[0]["status"], 200, "{}", put[0]);
    let rules = put[0]["json"]["properties"]["policy"]["rules"].clone();
    assert_eq!(
        rules,
        serde_json::json!([logs, printed["rules"][0], printed["rules"][1]]),
        "{rules:#}"
    );

    // Applied again: nothing to change, nothing sent.
    let again = run(&["lifecycle-policy", "--apply"]).ok();
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    assert_eq!(puts().len(), 1);
}

#[test]
fn the_config_archive_goes_offsite_audits_clean_and_restores_from_azure() {
    let o = Offsite {
        sb: Sandbox::with_scale(20),
        az: Azurite::start(),
    };
    let app = o.sb.work.path().join("app");
    std::fs::create_dir_all(app.join("k8s")).unwrap();
    std::fs::write(app.join("docker-compose.yml"), "services: {}\n").unwrap();
    std::fs::write(app.join("k8s/deploy.yaml"), "kind: Deployment\n").unwrap();
    o.configure("\n[config_backup]\npaths = [\"app\"]\n");
    o.run(&["backup", "--upload"]).ok();
    // Beside the dumps, in its own folder, with the SHA-256 of the file.
    let archive = std::fs::read_dir(o.sb.backup_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("a configuration archive");
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let blob = o
        .blobs()
        .into_iter()
        .find(|b| {
            b["name"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/config/{name}"))
        })
        .unwrap_or_else(|| panic!("no blob of {name}: {:?}", o.blobs()));
    assert_eq!(blob["metadata"]["sha256"], sha256_file(&archive).as_str());
    assert_eq!(o.blobs().len(), 6);
    let audit = o.json(&["audit", "--deep"]);
    assert_eq!(audit["findings"], serde_json::json!([]), "{audit}");
    assert_eq!(audit["deep_checked"], 3, "{audit}");

    // The machine is lost: the archive comes back from Azure, proven.
    std::fs::remove_dir_all(o.sb.backup_dir()).unwrap();
    let into = o.sb.work.path().join("restored");
    let r = o
        .run(&[
            "restore-config",
            "latest",
            "--into",
            into.to_str().unwrap(),
            "--from-azure",
        ])
        .ok();
    assert!(r.stdout.contains("restored 2 file(s)"), "{}", r.stdout);
    let real = std::fs::canonicalize(&app).unwrap();
    let back = into.join("files").join(real.strip_prefix("/").unwrap());
    for f in ["docker-compose.yml", "k8s/deploy.yaml"] {
        assert_eq!(
            std::fs::read(back.join(f)).unwrap(),
            std::fs::read(app.join(f)).unwrap()
        );
    }
}
