//! Immutable offsite copies (Azure version-level WORM) against Azurite
//! behind tests/tools/worm_proxy.py, which implements what Azurite stubs
//! (policies, legal holds, versions) after Azure's published contract, and
//! checked with Microsoft's Python SDK (tests/tools/blob_reader.py), which
//! sends and reads those headers itself. What is tested here was tested
//! against that contract only, never against Azure.

mod common;

use common::Sandbox;
use common::worm::Worm;
use serde_json::Value;

const CONTAINER: &str = "database-backups";

struct Immutable {
    sb: Sandbox,
    w: Worm,
}

impl Immutable {
    fn new() -> Immutable {
        Immutable::with(Worm::start())
    }

    fn with(w: Worm) -> Immutable {
        let i = Immutable {
            sb: Sandbox::with_scale(20),
            w,
        };
        i.configure("immutable = [\"daily\", \"weekly\"]");
        i
    }

    /// The sandbox's config plus an [azure] section; `extra` adds keys.
    fn configure(&self, extra: &str) {
        let keys = format!("max_retries = 1\nretry_max_secs = 2\n{extra}");
        self.sb.write_azure_config(CONTAINER, &keys);
    }

    fn run(&self, args: &[&str]) -> common::Run {
        self.sb.run_with_conn(args, &self.w.conn_string())
    }

    fn json(&self, args: &[&str]) -> Value {
        self.sb.json_with_conn(args, &self.w.conn_string())
    }

    /// Every version under `prefix` as the SDK lists it.
    fn versions(&self, prefix: &str) -> Vec<Value> {
        self.w
            .py_json(&["worm", CONTAINER, prefix])
            .as_array()
            .unwrap()
            .clone()
    }

    fn current(&self, name: &str) -> Value {
        self.versions(name)
            .into_iter()
            .find(|v| v["name"] == name && v["is_current_version"] == true)
            .unwrap_or_else(|| panic!("no current version of {name}"))
    }

    /// Backs up order_db and uploads it to the daily tier: the dump blob.
    fn daily_copy(&self) -> String {
        self.run(&["backup", "order"]).ok();
        let r = self.json(&["upload", "latest", "order", "--tier", "daily"]);
        assert_eq!(r["results"][0]["status"], "uploaded", "{r}");
        r["results"][0]["blob"].as_str().unwrap().to_string()
    }
}

fn manifest_of(dump: &str) -> String {
    dump.replace(".dump.gz", ".manifest.json")
}

fn until(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v["until"]
        .as_str()
        .unwrap_or_else(|| panic!("no policy: {v}"));
    chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn copies_are_uploaded_under_a_policy_and_survive_delete_and_overwrite() {
    let i = Immutable::new();
    i.configure("immutable = [\"daily\", \"weekly\"]\nimmutability_mode = \"locked\"");
    let before = chrono::Utc::now();
    let dump = i.daily_copy();
    // Both copies of the backup, as Microsoft's SDK reads them: until the
    // daily retention (30 days) plus the margin (1), locked.
    for name in [dump.clone(), manifest_of(&dump)] {
        let v = i.current(&name);
        let want = before + chrono::Duration::days(31);
        let got = until(&v);
        assert!(
            got >= want - chrono::Duration::seconds(1)
                && got <= want + chrono::Duration::minutes(5),
            "{name}: policy until {got}, want about {want}"
        );
        assert_eq!(v["mode"], "locked", "{v}");
        let props = i.w.py_json(&["props", CONTAINER, &name]);
        assert_eq!(props["until"], v["until"], "{props}");
    }
    let sha = i.w.py_reader(&["sha256", CONTAINER, &dump]);
    // Locked: nobody may shorten it (extending is allowed).
    let e =
        i.w.try_py_reader(&["set-policy", CONTAINER, &dump, "60", "--mode", "Locked"])
            .unwrap_err();
    assert!(e.contains("409") || e.contains("Conflict"), "{e}");
    let days40 = (40 * 86400).to_string();
    i.w.py_reader(&["set-policy", CONTAINER, &dump, &days40, "--mode", "Locked"]);

    // Someone with the key deletes: refused with Azure's code.
    let d = i.w.py_json(&["try-delete", CONTAINER, &dump]);
    assert_eq!(d["deleted"], false, "{d}");
    assert_eq!(
        (d["status"].as_u64(), d["code"].as_str()),
        (Some(409), Some("BlobImmutableDueToPolicy"))
    );
    assert_eq!(i.w.py_reader(&["sha256", CONTAINER, &dump]), sha);

    // Its metadata cannot change; its tags and access tier may (Azure
    // allows both on an immutable blob), and it reads as before.
    let e =
        i.w.try_py_reader(&["set-metadata", CONTAINER, &dump, "sha256=0"])
            .unwrap_err();
    assert!(e.contains("BlobImmutableDueToPolicy"), "{e}");
    i.w.py_reader(&["set-tags", CONTAINER, &dump, "tier=daily", "note=x"]);
    i.w.py_reader(&["set-tier", CONTAINER, &dump, "Cold"]);
    assert_eq!(i.w.py_reader(&["sha256", CONTAINER, &dump]), sha);

    // They overwrite: Azure allows it with versioning and keeps the
    // protected version as a previous one, which cannot be deleted either.
    let o = i.w.py_json(&["try-overwrite", CONTAINER, &dump]);
    assert_eq!(o["written"], true, "{o}");
    let versions: Vec<Value> = i
        .versions(&dump)
        .into_iter()
        .filter(|v| v["name"] == dump.as_str())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let old = versions
        .iter()
        .find(|v| v["is_current_version"] == false)
        .unwrap();
    assert!(
        until(old) > chrono::Utc::now() + chrono::Duration::days(30),
        "{old}"
    );
    let vid = old["version_id"].as_str().unwrap();
    let d =
        i.w.py_json(&["try-delete", CONTAINER, &dump, "--version-id", vid]);
    assert_eq!(d["code"], "BlobImmutableDueToPolicy", "{d}");

    // The program never overwrites a copy: the next upload refuses, naming it.
    let r = i.run(&["upload", "latest", "order", "--tier", "daily"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("refusing to overwrite"), "{}", r.stderr);
}

#[test]
fn a_container_without_version_level_immutability_is_refused_before_anything_is_stored() {
    let i = Immutable::with(Worm::start_without_version_level_worm());
    i.run(&["backup"]).ok();
    let r = i.run(&["upload", "all", "--tier", "daily"]);
    let e = r.fails_with(2, "refused the immutability policy");
    assert!(e.contains("version-level immutability"), "{e}");
    assert_eq!(
        r.stderr.matches("refused the immutability policy").count(),
        1,
        "{}",
        r.stderr
    );
    // No blob, no manifest: nothing committed, the second backup not tried.
    assert!(i.versions("").is_empty(), "{:?}", i.versions(""));
}

#[test]
fn an_immutability_period_shorter_than_the_retention_is_a_config_error() {
    let i = Immutable::new();
    i.configure("immutable = [\"weekly\"]\nimmutability_margin_days = -2");
    let r = i.run(&["upload", "latest"]);
    let e = r.fails_with(
        2,
        "weekly tier's immutability period (88 days) shorter than its retention (90 days",
    );
    assert!(e.contains("azure.immutability_margin_days"), "{e}");
    i.configure("immutable = [\"monthly\"]");
    i.run(&["upload", "latest"])
        .fails_with(2, "unknown tier 'monthly'");
}

/// Two backups of order_db a second apart, both uploaded to the daily
/// tier: their stamps and dump blobs, oldest first.
fn two_daily_copies(i: &Immutable) -> Vec<(String, String)> {
    i.run(&["backup", "order"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    i.run(&["backup", "order"]).ok();
    let r = i.json(&["upload", "all", "order", "--tier", "daily"]);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    results
        .iter()
        .map(|u| {
            let blob = u["blob"].as_str().unwrap().to_string();
            let stamp = blob.trim_end_matches(".dump.gz");
            let stamp = stamp[stamp.len() - 15..].to_string();
            (stamp, blob)
        })
        .collect()
}

#[test]
fn a_held_copy_is_shown_kept_by_prune_and_deletable_once_cleared() {
    let i = Immutable::new();
    i.configure("");
    let copies = two_daily_copies(&i);
    let (old_stamp, old) = &copies[0];
    // Straight to Azurite, which has no versioning: nothing is counted as a
    // previous version (its listing has no version ids).
    let mut cmd = i.sb.command(&["audit", "--db", "order", "--json"]);
    cmd.env("AZURE_STORAGE_CONNECTION_STRING", i.w.az.conn_string());
    let direct: Value = serde_json::from_str(&common::run(cmd).stdout).unwrap();
    assert!(
        direct["databases"][0].get("immutability").is_none(),
        "{direct}"
    );
    let r = i.json(&["hold", "set", old_stamp, "order"]);
    let held: Vec<&str> = r["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["blob"].as_str().unwrap())
        .collect();
    assert_eq!(held, [old.as_str(), manifest_of(old).as_str()], "{r}");
    for name in [old.clone(), manifest_of(old)] {
        assert_eq!(
            i.w.py_json(&["props", CONTAINER, &name])["legal_hold"],
            true
        );
    }
    // Someone with the key deletes it: refused, nothing lost.
    let d = i.w.py_json(&["try-delete", CONTAINER, old]);
    assert_eq!(d["code"], "BlobImmutableDueToLegalHold", "{d}");

    let list = i.json(&["list", "order"]);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["timestamp"] == old_stamp.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["protected"][0]["legal_hold"], true, "{entry}");
    assert!(i.run(&["list", "order"]).stdout.contains("daily(hold)"));
    let audit = i.json(&["audit", "--db", "order"]);
    assert_eq!(audit["databases"][0]["immutability"]["held"], 1, "{audit}");

    // Retention would delete the older copy: prune keeps it, one line, and
    // the run succeeds.
    let later = (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339();
    let r = i.run(&["prune", "--offsite", "--as-of", &later, "--json"]);
    let r = r.ok();
    assert_eq!(r.stdout.trim(), "[]", "{}", r.stdout);
    let kept: Vec<&str> = r.stderr.lines().filter(|l| l.contains("kept")).collect();
    assert_eq!(kept.len(), 1, "{}", r.stderr);
    assert!(
        kept[0].contains(old.as_str()) && kept[0].contains("legal hold"),
        "{}",
        kept[0]
    );
    assert!(i.current(old)["size"].as_u64().unwrap() > 0);

    i.json(&["hold", "clear", old_stamp, "order"]);
    assert_eq!(i.w.py_json(&["props", CONTAINER, old])["legal_hold"], false);
    let r = i.json(&["prune", "--offsite", "--as-of", &later]);
    assert_eq!(r, serde_json::json!([old]));
    // Versioning keeps the deleted copy as previous versions: the audit
    // counts them.
    let audit = i.json(&["audit", "--db", "order"]);
    let im = &audit["databases"][0]["immutability"];
    assert_eq!(im["previous_versions"], 2, "{audit}");
    assert!(
        im["previous_version_bytes"].as_u64().unwrap() > 0,
        "{audit}"
    );
}

#[test]
fn an_expired_policy_stops_protecting_and_the_audit_says_so() {
    let i = Immutable::new();
    let dump = i.daily_copy();
    let audit = i.json(&["audit", "--db", "order"]);
    assert_eq!(
        audit["databases"][0]["immutability"]["protected"], 1,
        "{audit}"
    );
    let policy_findings = |a: &Value| -> Vec<Value> {
        a["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "policy-too-short" || f["kind"] == "not-immutable")
            .cloned()
            .collect()
    };
    assert!(policy_findings(&audit).is_empty(), "{audit}");
    assert_eq!(i.current(&dump)["mode"], "unlocked", "the default mode");
    // An unlocked policy may be shortened (by whoever may set policies):
    // it ends in two seconds.
    for name in [dump.clone(), manifest_of(&dump)] {
        i.w.py_reader(&["set-policy", CONTAINER, &name, "2"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let audit = i.json(&["audit", "--db", "order"]);
    assert!(
        audit["databases"][0]["immutability"]
            .get("protected")
            .is_none_or(|p| p == 0),
        "{audit}"
    );
    let f = policy_findings(&audit);
    assert_eq!(f.len(), 1, "{audit}");
    assert_eq!(f[0]["kind"], "policy-too-short");
    assert!(
        f[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no longer protected"),
        "{f:?}"
    );
    // Its content and metadata stay write-once (an expired policy still
    // refuses Set Blob Metadata), and the copy can be deleted again.
    let e =
        i.w.try_py_reader(&["set-metadata", CONTAINER, &manifest_of(&dump), "a=b"])
            .unwrap_err();
    assert!(e.contains("BlobImmutableDueToPolicy"), "{e}");
    let d = i.w.py_json(&["try-delete", CONTAINER, &dump]);
    assert_eq!(d["deleted"], true, "{d}");

    // The next upload puts the backup back: the dump under a new policy,
    // the manifest (still there) under the policy it should have had, until
    // its upload plus the 31 days.
    let r = i.json(&["upload", "latest", "order", "--tier", "daily"]);
    assert_eq!(r["results"][0]["status"], "uploaded", "{r}");
    let month = chrono::Utc::now() + chrono::Duration::days(30);
    for name in [dump.clone(), manifest_of(&dump)] {
        let v = i.current(&name);
        assert!(until(&v) > month, "{name}: {v}");
    }
    let audit = i.json(&["audit", "--db", "order"]);
    assert!(policy_findings(&audit).is_empty(), "{audit}");
    assert_eq!(
        audit["databases"][0]["immutability"]["protected"], 1,
        "{audit}"
    );
}

/// azure-check and the upload's preflight through the fake Resource
/// Manager (tests/tools/fake_arm.py, blobServices and containers at
/// Microsoft.Storage 2025-08-01): the account without blob versioning, the
/// container without version-level immutability.
#[test]
fn azure_check_says_what_to_enable_and_the_upload_refuses_before_sending_anything() {
    use common::arm::{self, FakeArm, SOURCE_RG, STORAGE_ACCOUNT};
    let mut state = arm::scenario();
    state["blob_services"] = serde_json::json!({
        format!("{SOURCE_RG}/{STORAGE_ACCOUNT}"): {"isVersioningEnabled": false}
    });
    state["containers"] = serde_json::json!({
        format!("{SOURCE_RG}/{STORAGE_ACCOUNT}/{CONTAINER}"): {"immutableStorageWithVersioning": false}
    });
    let fake = FakeArm::start(state);
    let i = Immutable::new();
    i.configure(&format!(
        "immutable = [\"daily\"]\n[azure.resource_manager]\nsubscription_id = \"{}\"\n\
         resource_group = \"{SOURCE_RG}\"\nendpoint = \"{}\"\nauth = \"client-secret\"\n\
         storage_account = \"{STORAGE_ACCOUNT}\"\n",
        arm::SUBSCRIPTION,
        fake.endpoint()
    ));
    let run = |args: &[&str]| {
        let mut cmd = i.sb.command(args);
        cmd.env("AZURE_STORAGE_CONNECTION_STRING", i.w.conn_string())
            .envs(fake.env());
        common::run(cmd)
    };
    let r = run(&["azure-check", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let st = &report["storage"];
    assert_eq!(
        (
            st["versioning"].clone(),
            st["version_level_immutability"].clone()
        ),
        (Value::Bool(false), Value::Bool(false)),
        "{report}"
    );
    let problems: Vec<&str> = st["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("--enable-versioning true"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("no version-level immutability support"),
        "{}",
        problems[1]
    );
    for path in ["/blobServices/default", &format!("/containers/{CONTAINER}")] {
        let got = fake.requests_to("GET", path);
        assert!(!got.is_empty(), "no GET {path}");
        assert!(
            got.iter()
                .all(|g| g["api_version"] == "2025-08-01" && g["auth"] == "valid"),
            "{got:?}"
        );
    }

    i.run(&["backup", "order"]).ok();
    let r = run(&["upload", "latest", "order", "--tier", "daily"]);
    r.fails_with(2, "cannot keep immutable copies, nothing uploaded");
    // Nothing reached the container: no block, no blob.
    let log = std::fs::read_to_string(&i.w.log).unwrap_or_default();
    assert!(!log.contains("\"PUT\""), "{log}");
    let e = i.w.try_py_reader(&["worm", CONTAINER, ""]).unwrap_err();
    assert!(e.contains("ContainerNotFound"), "{e}");
}
