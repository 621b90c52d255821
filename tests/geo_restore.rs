//! Region failure against a local fake of Azure Resource Manager
//! (tests/tools/fake_arm.py: the published contract over HTTPS with a test
//! CA, and a token endpoint standing in for Entra ID), so that the real
//! azure_identity client-secret flow and the real bearer-token pipeline run.
//! `kubectl` is a stand-in script that records its arguments.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::arm::{self, FakeArm, PAIRED_REGION, SOURCE_RG, SOURCE_SERVER};
use common::{Run, bin};
use serde_json::{Value, json};

struct Geo {
    fake: FakeArm,
    work: tempfile::TempDir,
}

impl Geo {
    fn new(state: Value) -> Geo {
        let g = Geo {
            fake: FakeArm::start(state),
            work: tempfile::tempdir().unwrap(),
        };
        g.configure(&format!("[[azure.postgres_server]]\nname = \"{SOURCE_SERVER}\"\ndatabases = [\"order\", \"inventory\"]\n"));
        // A kubectl that records what it is asked to do.
        let bin = g.work.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = g.kubectl_log();
        let script = format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display());
        let path = bin.join("kubectl");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        g
    }

    fn configure(&self, servers: &str) {
        let text = format!(
            "backup_dir = \"backups\"\n\
             [[database]]\nname = \"order\"\ndbname = \"order_db\"\nuser = \"order_user\"\n\
             [[database]]\nname = \"inventory\"\ndbname = \"inventory_db\"\nuser = \"inventory_user\"\n\
             [azure]\ncontainer = \"database-backups\"\nmax_retries = 3\nretry_max_secs = 10\n\
             [azure.resource_manager]\nsubscription_id = \"{}\"\nresource_group = \"{SOURCE_RG}\"\n\
             endpoint = \"{}\"\nauth = \"client-secret\"\nstorage_account = \"{}\"\n\
             poll_interval_secs = 1\ntimeout_minutes = 2\n{servers}",
            arm::SUBSCRIPTION,
            self.fake.endpoint(),
            arm::STORAGE_ACCOUNT
        );
        std::fs::write(self.work.path().join("vb.toml"), text).unwrap();
    }

    fn kubectl_log(&self) -> PathBuf {
        self.work.path().join("kubectl.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(self.work.path().join("vb.toml"))
            .args(args)
            .current_dir(self.work.path())
            .envs(self.fake.env())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.work.path().join("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let r = common::run(self.command(args));
        assert!(
            !r.stdout.contains(arm::CLIENT_SECRET) && !r.stderr.contains(arm::CLIENT_SECRET),
            "the secret was printed"
        );
        r
    }

    /// The PUTs the fake logged; it logs right after answering, so the last
    /// one may land a moment after the program exits.
    fn puts(&self) -> Vec<Value> {
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.fake.requests_to("PUT", "")
    }
}

fn restore_args<'a>(target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "geo-restore",
        "--source-server",
        SOURCE_SERVER,
        "--target-name",
        target,
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn geo_restore_follows_the_operation_to_a_ready_server_and_points_the_services_at_it() {
    let g = Geo::new(arm::scenario());
    let r = g
        .run(&restore_args(
            "valerix-pg-west",
            &["--yes", "--update-k8s", "valerix", "--json"],
        ))
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let fqdn = "valerix-pg-west.postgres.database.azure.com";
    assert_eq!(report["state"], "Ready", "{report}");
    assert_eq!(report["fqdn"], fqdn);
    assert_eq!(report["k8s_applied"], true);
    assert!(report["total_secs"].as_f64().unwrap() >= 2.0, "{report}");

    // What was sent: one PUT with the published body, into the paired region.
    let puts = g.puts();
    assert_eq!(puts.len(), 1);
    let body = &puts[0]["json"];
    assert_eq!(body["location"], PAIRED_REGION);
    assert_eq!(body["properties"]["createMode"], "GeoRestore");
    assert_eq!(
        body["properties"]["sourceServerResourceId"],
        arm::server_id(SOURCE_RG, SOURCE_SERVER).as_str()
    );
    assert!(
        body["properties"]["pointInTimeUTC"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(
        puts[0]["path"]
            .as_str()
            .unwrap()
            .contains("api-version=2025-08-01")
    );
    // The operation was polled, honouring Retry-After (1 s), then the server
    // until it was Ready.
    let polls = g.fake.requests_to("GET", "");
    let ops: Vec<&Value> = polls
        .iter()
        .filter(|p| p["path"].as_str().unwrap().contains("azureAsyncOperation"))
        .collect();
    assert!(ops.len() >= 2, "{ops:?}");
    for w in ops.windows(2) {
        let gap = w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap();
        assert!(gap >= 0.9, "polled {gap:.2} s apart despite Retry-After: 1");
    }
    let target = g
        .fake
        .requests_to("GET", "/flexibleServers/valerix-pg-west");
    assert!(target.len() >= 3, "{target:?}");
    // Every Resource Manager request carried a valid token; the secret went
    // only to the token endpoint.
    assert!(g.fake.arm_requests().iter().all(|r| r["auth"] == "valid"));
    let kubectl = std::fs::read_to_string(g.kubectl_log()).unwrap();
    assert_eq!(
        kubectl,
        format!(
            "set env deployment/order-service DB_HOST={fqdn} -n valerix\n\
             set env deployment/inventory-service DB_HOST={fqdn} -n valerix\n"
        )
    );
    // The human report says each step's time and the FQDN.
    let g2 = Geo::new(arm::scenario());
    let text = g2.run(&restore_args("valerix-pg-west", &["--yes"])).ok();
    assert!(text.stdout.contains(fqdn), "{}", text.stdout);
    assert!(
        text.stdout
            .contains("kubectl set env deployment/order-service")
    );
    assert!(
        text.stderr.contains("operation Succeeded"),
        "{}",
        text.stderr
    );
    assert!(
        !g2.kubectl_log().exists(),
        "without --update-k8s nothing runs"
    );
}

#[test]
fn dry_run_prints_the_request_and_sends_nothing() {
    let g = Geo::new(arm::scenario());
    let r = g.run(&restore_args("valerix-pg-west", &["--dry-run"])).ok();
    assert!(r.stdout.contains("PUT https://127.0.0.1:"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("/flexibleServers/valerix-pg-west?api-version=2025-08-01")
    );
    assert!(r.stdout.contains("\"createMode\": \"GeoRestore\""));
    assert!(g.puts().is_empty());
    // Without --yes and without a terminal: refused before sending.
    let r = g.run(&restore_args("valerix-pg-west", &[]));
    r.fails_with(2, "pass --yes");
    assert!(g.puts().is_empty());
}

#[test]
fn refusals_and_failures_are_named_and_exit_non_zero() {
    let mut state = arm::scenario();
    state["fail_targets"] = json!(["valerix-pg-fail"]);
    state["fail_error"] =
        json!({"code": "InternalServerError", "message": "geo-backup copy failed"});
    state["forbidden_resource_groups"] = json!(["rg-locked"]);
    let g = Geo::new(state);
    // The operation fails: its error is shown.
    let r = g.run(&restore_args("valerix-pg-fail", &["--yes"]));
    r.fails_with(
        1,
        "the operation failed: Failed InternalServerError: geo-backup copy failed",
    );
    // The name exists: 409.
    let r = g.run(&restore_args(SOURCE_SERVER, &["--yes"]));
    let e = r.fails_with(1, "HTTP 409");
    assert!(e.contains("choose another --target-name"), "{e}");
    // No rights on the target resource group: 403.
    let r = g.run(&restore_args(
        "valerix-pg-west",
        &["--yes", "--target-resource-group", "rg-locked"],
    ));
    let e = r.fails_with(1, "HTTP 403 AuthorizationFailed");
    assert!(e.contains("flexibleServers/write"), "{e}");
    // A source without geo-redundant backup: the preflight says so and
    // nothing is sent.
    let before = g.puts().len();
    let r = g.run(&[
        "geo-restore",
        "--source-server",
        "valerix-nogeo",
        "--target-name",
        "valerix-pg-x",
        "--yes",
    ]);
    r.fails_with(2, "geo-redundant backup Disabled");
    assert_eq!(g.puts().len(), before);
    // Bad input.
    g.run(&restore_args("Bad_Name", &["--yes"]))
        .fails_with(2, "target server name");
    g.run(&[
        "geo-restore",
        "--source-server",
        "/subscriptions/x/nonsense",
        "--target-name",
        "valerix-pg-y",
    ])
    .fails_with(2, "source server");
    let r = g.run(&[
        "geo-restore",
        "--source-server",
        "valerix-missing",
        "--target-name",
        "valerix-pg-z",
        "--yes",
    ]);
    r.fails_with(1, "source server not found");
}

#[test]
fn throttling_is_waited_out() {
    let mut state = arm::scenario();
    state["throttle_targets"] = json!(["valerix-pg-busy"]);
    state["throttle_retry_after"] = json!(2);
    let g = Geo::new(state);
    g.run(&restore_args("valerix-pg-busy", &["--yes"])).ok();
    let puts = g.puts();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[0]["status"], 429);
    let gap = puts[1]["t"].as_f64().unwrap() - puts[0]["t"].as_f64().unwrap();
    assert!(
        gap >= 1.9,
        "retried {gap:.2} s after a 429 with Retry-After: 2"
    );
}

#[test]
fn a_refused_secret_is_named_and_never_shown() {
    let g = Geo::new(arm::scenario());
    let mut cmd = g.command(&restore_args("valerix-pg-west", &["--yes"]));
    cmd.env("AZURE_CLIENT_SECRET", "wrong-secret-value");
    let r = common::run(cmd);
    let e = r.fails_with(1, "AADSTS7000215");
    assert!(e.contains("ClientSecretCredential"), "{e}");
    assert!(!r.stderr.contains("wrong-secret-value"));
    assert!(
        g.fake.arm_requests().is_empty(),
        "nothing reached Resource Manager"
    );
}

#[test]
fn an_interrupted_wait_says_how_to_resume_and_watch_finishes_it() {
    let mut state = arm::scenario();
    state["polls"] = json!(30);
    let g = Geo::new(state);
    let child = g
        .command(&restore_args("valerix-pg-west", &["--yes"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !g
        .fake
        .requests()
        .iter()
        .any(|r| r["path"].as_str().unwrap().contains("azureAsyncOperation"))
    {
        assert!(t0.elapsed().as_secs() < 30, "never polled");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let resume = stderr
        .lines()
        .find(|l| l.contains("geo-restore --watch"))
        .unwrap_or_else(|| panic!("no resume hint in {stderr}"));
    let url = resume.split('\'').nth(1).unwrap();
    assert!(url.contains("azureAsyncOperation"), "{resume}");
    assert!(
        resume.ends_with("--target-name valerix-pg-west --target-resource-group rg-valerix"),
        "{resume}"
    );

    let r = g
        .run(&[
            "geo-restore",
            "--watch",
            url,
            "--target-name",
            "valerix-pg-west",
            "--json",
        ])
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["state"], "Ready", "{report}");
    assert_eq!(g.puts().len(), 1, "--watch sends nothing new");
    // Watching only the server works too.
    let r = g
        .run(&[
            "geo-restore",
            "--watch",
            "--target-name",
            "valerix-pg-west",
            "--json",
        ])
        .ok();
    assert!(r.stdout.contains("\"Ready\""));
}

#[test]
fn azure_check_tells_whether_a_geo_restore_would_work() {
    let mut state = arm::scenario();
    state["servers"]["rg-valerix/valerix-short"] = json!({
        "location": "westeurope", "geoRedundantBackup": "Enabled", "backupRetentionDays": 7
    });
    let g = Geo::new(state);
    let report: Value =
        serde_json::from_str(&g.run(&["azure-check", "--json"]).ok().stdout).unwrap();
    let s = &report["servers"][0];
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(s["geo_redundant_backup"], true);
    assert_eq!(s["backup_retention_days"], 30);
    assert_eq!(s["paired_region"], PAIRED_REGION);
    assert!(s["earliest_restore_date"].is_string());

    g.configure(
        "[[azure.postgres_server]]\nname = \"valerix-nogeo\"\n\
         [[azure.postgres_server]]\nname = \"valerix-short\"\n\
         [[azure.postgres_server]]\nname = \"valerix-gone\"\n",
    );
    let r = g.run(&["azure-check"]);
    let e = r.fails_with(1, "geo-restore would not be possible for valerix-nogeo");
    assert!(e.contains("valerix-gone (server not found)"), "{e}");
    assert!(
        !e.contains("valerix-short"),
        "short retention warns only: {e}"
    );
    assert!(
        r.stdout.contains("backup retention is 7 days"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("paired region northeurope"),
        "{}",
        r.stdout
    );
}

#[test]
fn lifecycle_policy_apply_puts_what_lifecycle_policy_prints() {
    let g = Geo::new(arm::scenario());
    let printed: Value = serde_json::from_str(&g.run(&["lifecycle-policy"]).ok().stdout).unwrap();
    g.run(&["lifecycle-policy", "--apply", "--yes"]).ok();
    let put = g.fake.requests_to("PUT", "/managementPolicies/default");
    assert_eq!(put.len(), 1);
    assert_eq!(put[0]["status"], 200);
    assert_eq!(put[0]["json"]["properties"]["policy"], printed);
    assert!(
        put[0]["path"]
            .as_str()
            .unwrap()
            .contains(&arm::management_policy_id(SOURCE_RG, arm::STORAGE_ACCOUNT))
    );
}

#[test]
fn audit_includes_the_server_check() {
    let g = Geo::new(arm::scenario());
    g.configure("[[azure.postgres_server]]\nname = \"valerix-nogeo\"\n");
    let az = common::azurite::Azurite::start();
    az.create_container("database-backups");
    let mut cmd = g.command(&["audit", "--json"]);
    cmd.env("AZURE_STORAGE_CONNECTION_STRING", az.conn_string());
    let r = common::run(cmd);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let geo: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "geo-restore")
        .collect();
    assert_eq!(geo.len(), 1, "{report}");
    assert_eq!(geo[0]["database"], "valerix-nogeo");
    assert!(
        geo[0]["detail"]
            .as_str()
            .unwrap()
            .contains("geo-redundant backup is disabled")
    );
    assert_eq!(report["servers"][0]["name"], "valerix-nogeo");
}

#[test]
fn no_wait_sends_and_says_how_to_watch() {
    let g = Geo::new(arm::scenario());
    let r = g
        .run(&restore_args(
            "valerix-pg-west",
            &["--yes", "--no-wait", "--location", "West US"],
        ))
        .ok();
    assert!(r.stdout.contains("not waiting"), "{}", r.stdout);
    let line = r.stdout.lines().find(|l| l.contains("--watch")).unwrap();
    let url = line.split('\'').nth(1).unwrap();
    assert_eq!(g.puts()[0]["json"]["location"], "westus");
    let r = g
        .run(&[
            "geo-restore",
            "--watch",
            url,
            "--target-name",
            "valerix-pg-west",
        ])
        .ok();
    assert!(r.stdout.contains("state Ready"), "{}", r.stdout);
}
