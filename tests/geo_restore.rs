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
        Geo::with_fake(FakeArm::start(state))
    }

    fn with_fake(fake: FakeArm) -> Geo {
        let g = Geo {
            fake,
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
    // The post-mortem record: source, point in time, every step, the undo.
    let r = g
        .run(&["report", "show", "latest-geo-restore", "--json"])
        .ok();
    let rec: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rec["outcome"], "succeeded", "{rec}");
    let source = arm::server_id(SOURCE_RG, SOURCE_SERVER);
    assert_eq!(rec["sources"][0]["of"], source.as_str());
    let at = body["properties"]["pointInTimeUTC"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let recorded = rec["sources"][0]["backup_time"].as_str().unwrap();
    assert_eq!(chrono::DateTime::parse_from_rfc3339(recorded).unwrap(), at);
    assert_eq!(
        rec["targets"],
        serde_json::json!([arm::server_id(SOURCE_RG, "valerix-pg-west")])
    );
    let steps = common::step_names(&rec);
    assert_eq!(
        steps,
        [
            "request accepted",
            "operation succeeded",
            "server ready",
            "services pointed at it"
        ]
    );
    assert_eq!(rec["steps"][2]["detail"], fqdn);
    let undo = rec["undo"].to_string();
    assert!(
        undo.contains("az postgres flexible-server delete")
            && undo.contains("--name valerix-pg-west"),
        "{undo}"
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
    assert!(
        e.contains("valerix-postgres already exists in resource group rg-valerix (state Ready"),
        "{e}"
    );
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
    // On record as interrupted, not failed: the restore goes on in Azure.
    let r = g.run(&["report", "show", "latest", "--json"]).ok();
    let rec: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (&rec["kind"], &rec["outcome"]),
        (&json!("geo-restore"), &json!("interrupted")),
        "{rec}"
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
fn a_wait_past_the_timeout_says_how_to_keep_watching() {
    let mut state = arm::scenario();
    state["polls"] = json!(30);
    let g = Geo::new(state);
    let cfg = g.work.path().join("vb.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("timeout_minutes = 2", "timeout_minutes = 0"),
    )
    .unwrap();
    let r = g.run(&restore_args("valerix-pg-west", &["--yes"]));
    let e = r.fails_with(1, "the operation has not finished after 0 minutes");
    assert!(
        e.contains("; keep watching with `valerix-backup geo-restore --watch '"),
        "{e}"
    );
    assert!(e.contains("--target-name valerix-pg-west"), "{e}");
    assert_eq!(g.puts().len(), 1, "the PUT is sent once");
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

/// `state` with the keys of `more` set.
fn json_merge(mut state: Value, more: Value) -> Value {
    for (k, v) in more.as_object().unwrap() {
        state[k] = v.clone();
    }
    state
}

/// The geo-restore PUTs the fake logged for `target`.
fn puts_of(g: &Geo, target: &str) -> Vec<Value> {
    g.puts()
        .into_iter()
        .filter(|p| {
            p["path"]
                .as_str()
                .unwrap()
                .split('?')
                .next()
                .unwrap()
                .ends_with(&format!("/flexibleServers/{target}"))
        })
        .collect()
}

#[test]
fn a_put_whose_answer_is_lost_is_followed_to_ready_and_never_sent_twice() {
    // The fake creates the server, then closes the connection without an
    // answer (one target) or answers 500 (the other), as a front end that
    // fails after the request was carried out.
    let mut state = arm::scenario();
    state["lose_answer"] = json!({"valerix-pg-west": "drop", "valerix-pg-five": "500"});
    let g = Geo::new(state);
    for (target, why) in [
        ("valerix-pg-west", "no answer ("),
        ("valerix-pg-five", "HTTP 500 InternalServerError"),
    ] {
        let r = g.run(&restore_args(target, &["--yes", "--json"])).ok();
        let report: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(report["state"], "Ready", "{report}");
        assert_eq!(
            report["fqdn"],
            format!("{target}.postgres.database.azure.com")
        );
        let followed = report["followed"].as_str().unwrap_or_default();
        assert!(followed.starts_with(why), "{followed}");
        assert!(
            followed.contains(&format!(
                "{target} is being created by this geo-restore of {SOURCE_SERVER}"
            )),
            "{followed}"
        );
        let said: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("following it as if the PUT had been answered"))
            .collect();
        assert_eq!(said.len(), 1, "{}", r.stderr);
        // One PUT, whose answer was lost; never a second one.
        let puts = puts_of(&g, target);
        assert_eq!(puts.len(), 1, "{puts:?}");
        if target == "valerix-pg-west" {
            assert_eq!(puts[0]["dropped"], true, "{puts:?}");
        } else {
            assert_eq!(puts[0]["status"], 500, "{puts:?}");
        }
        // The new server carries the tags that told it apart.
        let body = &puts[0]["json"];
        assert_eq!(
            body["tags"]["valerix-backup-geo-restore-of"],
            arm::server_id(SOURCE_RG, SOURCE_SERVER).to_lowercase()
        );
    }
}

#[test]
fn a_5xx_that_created_nothing_is_not_resent_and_says_to_run_again() {
    let g = Geo::new(json_merge(
        arm::scenario(),
        json!({"lose_answer": {"valerix-pg-west": "503"}}),
    ));
    g.run(&restore_args("valerix-pg-west", &["--yes"]))
        .fails_with(
            1,
            "geo-restore of valerix-pg-west failed: HTTP 503 ServiceUnavailable: The service is \
         currently unavailable. Please try again later; valerix-pg-west does not exist, so \
         nothing is being created: run the same command again",
        );
    assert_eq!(puts_of(&g, "valerix-pg-west").len(), 1);
    // As it says: the same command again creates it.
    let r = g
        .run(&restore_args("valerix-pg-west", &["--yes", "--json"]))
        .ok();
    assert!(r.stdout.contains("\"state\": \"Ready\""), "{}", r.stdout);
    assert_eq!(puts_of(&g, "valerix-pg-west").len(), 2);
}

#[test]
fn a_201_with_the_new_server_is_followed_like_a_202() {
    // As older api-versions answered: 201 with the new server's body.
    let g = Geo::new(json_merge(arm::scenario(), json!({"accept_status": 201})));
    let r = g
        .run(&restore_args("valerix-pg-west", &["--yes", "--json"]))
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["state"], "Ready", "{report}");
    assert!(report["followed"].is_null(), "{report}");
    let puts = puts_of(&g, "valerix-pg-west");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0]["status"], 201);
    assert!(r.stderr.contains("accepted (HTTP 201)"), "{}", r.stderr);
    assert!(r.stderr.contains("operation Succeeded"), "{}", r.stderr);
}

#[test]
fn a_rerun_while_the_first_restore_runs_follows_it_and_a_409_for_another_server_names_it() {
    let mut state = arm::scenario();
    state["polls"] = json!(3);
    state["servers"]["rg-valerix/valerix-pg-taken"] = json!({
        "location": PAIRED_REGION, "state": "Stopped"
    });
    let g = Geo::new(state);
    // The first run only sends (or was killed after sending); the on-call
    // engineer runs the same command again: 409, but the server is the
    // geo-restore of the same source being created, so it is followed.
    g.run(&restore_args("valerix-pg-west", &["--yes", "--no-wait"]))
        .ok();
    let r = g
        .run(&restore_args("valerix-pg-west", &["--yes", "--json"]))
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["state"], "Ready", "{report}");
    let followed = report["followed"].as_str().unwrap();
    assert!(
        followed.starts_with("HTTP 409 ServerNameAlreadyExists"),
        "{followed}"
    );
    assert!(
        followed.contains(
            "being created by an earlier geo-restore of valerix-postgres (state Provisioning)"
        ),
        "{followed}"
    );
    let puts = puts_of(&g, "valerix-pg-west");
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[1]["status"], 409);

    // Once it is Ready, a third run is refused: the server exists (made by
    // an earlier geo-restore), and it is named with its state. So is a
    // different server of that name, which is never followed.
    for (target, named) in [
        (
            "valerix-pg-west",
            "valerix-pg-west already exists in resource group rg-valerix (state Ready, a \
             geo-restore of valerix-postgres created ",
        ),
        (
            "valerix-pg-taken",
            "valerix-pg-taken already exists in resource group rg-valerix (state Stopped, not a \
             geo-restore of valerix-postgres by valerix-backup): choose another --target-name",
        ),
    ] {
        let e = g
            .run(&restore_args(target, &["--yes"]))
            .fails_with(1, "HTTP 409 ServerNameAlreadyExists");
        assert!(e.contains(named), "{e}");
    }
    assert_eq!(puts_of(&g, "valerix-pg-taken").len(), 1);
}

#[test]
fn the_token_is_for_resource_managers_audience_never_the_endpoint_url() {
    let g = Geo::new(arm::scenario());
    // The endpoint is https://127.0.0.1:PORT; the token is asked for and
    // accepted as Resource Manager's own audience.
    g.run(&["azure-check"]).ok();
    let tokens = g.fake.token_requests();
    assert!(!tokens.is_empty());
    for t in &tokens {
        assert_eq!(
            t["form"]["scope"][0],
            "https://management.azure.com/.default"
        );
        assert_eq!(t["status"], 200);
    }
    assert!(g.fake.arm_requests().iter().all(|r| r["auth"] == "valid"));

    // The other fixed audience, configured: accepted too.
    let servers = format!("[[azure.postgres_server]]\nname = \"{SOURCE_SERVER}\"\n");
    g.configure(&format!(
        "audience = \"https://management.core.windows.net/\"\n{servers}"
    ));
    g.run(&["azure-check"]).ok();
    assert_eq!(
        g.fake.token_requests().last().unwrap()["form"]["scope"][0],
        "https://management.core.windows.net/.default"
    );

    // A token for another resource: Resource Manager's 401, on one line.
    g.configure(&format!(
        "audience = \"https://storage.azure.com\"\n{servers}"
    ));
    let e = g.run(&["azure-check"]).fails_with(
        1,
        "Resource Manager refused the token: HTTP 401 InvalidAuthenticationTokenAudience",
    );
    assert!(e.contains("azure.resource_manager.audience"), "{e}");
    let refused = g.fake.arm_requests();
    let last = refused.last().unwrap();
    assert_eq!(last["auth"], "wrong-audience");
    assert_eq!(last["error"], "InvalidAuthenticationTokenAudience");
    assert!(
        last["response_headers"]["WWW-Authenticate"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    // The endpoint's own URL is no resource Entra ID knows.
    g.configure(&format!("audience = \"{}\"\n{servers}", g.fake.endpoint()));
    g.run(&["azure-check"]).fails_with(1, "AADSTS500011");
}

#[test]
fn the_token_goes_only_to_the_configured_endpoint() {
    // A second HTTPS listener the program trusts (same CA): the operation
    // URLs of the 202 point at it, as a misconfigured proxy might.
    let other = FakeArm::start(arm::scenario());
    let mut state = arm::scenario();
    state["async_operation_base"] = json!(other.endpoint());
    state["location_base"] = json!(other.endpoint());
    let g = Geo::with_fake(FakeArm::start_sharing_ca(state, &other));
    let r = g
        .run(&restore_args("valerix-pg-west", &["--yes", "--json"]))
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    // Not followed; the server itself is watched to Ready instead.
    assert_eq!(report["state"], "Ready", "{report}");
    let refusal = format!(
        "refusing to send the Resource Manager token to {}: only the configured endpoint {} gets it",
        other.endpoint(),
        g.fake.endpoint()
    );
    for header in ["Azure-AsyncOperation", "Location"] {
        assert!(
            r.stderr.contains(&format!(
                "not following the {header} URL of the answer: {refusal}"
            )),
            "{}",
            r.stderr
        );
    }
    // --watch with a URL elsewhere (another port; plain http on the right
    // port): refused before anything is sent, even a token request.
    let tokens = g.fake.token_requests().len();
    let op = format!(
        "/subscriptions/{}/providers/Microsoft.DBforPostgreSQL/locations/westus/azureAsyncOperation/x?api-version=2025-08-01",
        arm::SUBSCRIPTION
    );
    let elsewhere = format!("{}{op}", other.endpoint());
    g.run(&[
        "geo-restore",
        "--watch",
        &elsewhere,
        "--target-name",
        "valerix-pg-west",
    ])
    .fails_with(2, &refusal);
    let plain = format!("http://127.0.0.1:{}{op}", g.fake.port);
    g.run(&[
        "geo-restore",
        "--watch",
        &plain,
        "--target-name",
        "valerix-pg-west",
    ])
    .fails_with(
        2,
        "refusing to send the Resource Manager token to http://127.0.0.1:",
    );
    assert_eq!(g.fake.token_requests().len(), tokens);
    // The other host never saw a request, let alone a token.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert!(other.failed_connections().is_empty());
}

/// Raw requests to the fake, from Python's standard library, for what the
/// program never sends: the fake must refuse them as Resource Manager does.
/// Prints one JSON object: label -> [status, error code].
const PROBE: &str = r#"
import json, os, ssl, sys, urllib.error, urllib.parse, urllib.request
base, tenant, client, sub = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
def call(method, url, body=None, headers=None):
    req = urllib.request.Request(base + url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)
def token(scope):
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client,
        "client_secret": os.environ["SECRET"], "scope": scope}).encode()
    s, b, _ = call("POST", "/%s/oauth2/v2.0/token" % tenant, form,
                   {"Content-Type": "application/x-www-form-urlencoded"})
    return b.get("access_token") if s == 200 else "AADSTS%s" % b["error_codes"][0]
def code(b):
    return (b or {}).get("error", {}).get("code") if isinstance((b or {}).get("error"), dict) else None
out = {}
arm = {"Authorization": "Bearer " + token("https://management.azure.com/.default")}
srv = "/subscriptions/%s/resourceGroups/rg-valerix/providers/Microsoft.DBforPostgreSQL/flexibleServers/" % sub
for label, method, url, body, extra in [
    ("no api-version", "GET", srv + "valerix-postgres", None, {}),
    ("malformed api-version", "GET", srv + "valerix-postgres?api-version=latest", None, {}),
    ("unsupported api-version", "GET", srv + "valerix-postgres?api-version=2017-12-01", None, {}),
    ("no content-type", "PUT", srv + "valerix-pg-x?api-version=2025-08-01", b"{}", {}),
    ("text/plain", "PUT", srv + "valerix-pg-x?api-version=2025-08-01", b"{}", {"Content-Type": "text/plain"}),
    ("bad tag", "PUT", srv + "valerix-pg-x?api-version=2025-08-01",
     json.dumps({"location": "westus", "tags": {"a/b": "x"}, "properties": {}}).encode(),
     {"Content-Type": "application/json"}),
    ("no token", "GET", srv + "valerix-postgres?api-version=2025-08-01", None, None),
    ("promote a primary", "PATCH", srv + "valerix-postgres?api-version=2025-08-01",
     json.dumps({"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": "Planned"}}}).encode(),
     {"Content-Type": "application/json"}),
    ("unknown promoteMode", "PATCH", srv + "valerix-postgres?api-version=2025-08-01",
     json.dumps({"properties": {"replica": {"promoteMode": "Sideways"}}}).encode(),
     {"Content-Type": "application/json"}),
    ("patch text/plain", "PATCH", srv + "valerix-postgres?api-version=2025-08-01", b"{}",
     {"Content-Type": "text/plain"}),
    ("patch old api-version", "PATCH", srv + "valerix-postgres?api-version=2017-12-01", b"{}",
     {"Content-Type": "application/json"}),
]:
    headers = dict(arm, **extra) if extra is not None else {}
    s, b, h = call(method, url, body, headers)
    out[label] = [s, code(b)]
for label, scope in [("storage audience", "https://storage.azure.com/.default"),
                     ("endpoint audience", base + "/.default")]:
    t = token(scope)
    if t.startswith("AADSTS"):
        out[label] = [None, t]
        continue
    s, b, h = call("GET", srv + "valerix-postgres?api-version=2025-08-01", None, {"Authorization": "Bearer " + t})
    out[label] = [s, code(b), h.get("WWW-Authenticate", "")[:7]]
print(json.dumps(out))
"#;

#[test]
fn the_fake_refuses_what_resource_manager_refuses() {
    let probe = |fake: &FakeArm| -> Value {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(PROBE)
            .args([
                &fake.endpoint(),
                arm::TENANT,
                arm::CLIENT_ID,
                arm::SUBSCRIPTION,
            ])
            .env("SSL_CERT_FILE", &fake.ca)
            .env("SECRET", arm::CLIENT_SECRET);
        serde_json::from_str(&common::run(cmd).ok().stdout).unwrap()
    };
    let fake = FakeArm::start(arm::scenario());
    let got = probe(&fake);
    let want = json!({
        "no api-version": [400, "MissingApiVersionParameter"],
        "malformed api-version": [400, "InvalidApiVersionParameter"],
        "unsupported api-version": [400, "NoRegisteredProviderFound"],
        "no content-type": [415, "UnsupportedMediaType"],
        "text/plain": [415, "UnsupportedMediaType"],
        "bad tag": [400, "InvalidTagNameCharacters"],
        "no token": [401, "AuthenticationFailed"],
        "promote a primary": [400, "InvalidParameterValue"],
        "unknown promoteMode": [400, "InvalidParameterValue"],
        "patch text/plain": [415, "UnsupportedMediaType"],
        "patch old api-version": [400, "NoRegisteredProviderFound"],
        "storage audience": [401, "InvalidAuthenticationTokenAudience", "Bearer "],
        "endpoint audience": [null, "AADSTS500011"],
    });
    assert_eq!(got, want);
    // A token past its expiry (issued so, to reach Resource Manager's check).
    let expired = FakeArm::start(json_merge(arm::scenario(), json!({"token_lifetime": -60})));
    let got = probe(&expired);
    assert_eq!(got["no token"], json!([401, "AuthenticationFailed"]));
    assert_eq!(
        got["no api-version"],
        json!([401, "ExpiredAuthenticationToken"])
    );
}

// Region failover by promoting a cross-region read replica (`failover`).

const REPLICA: &str = "valerix-pg-replica";

/// [`arm::scenario`] with a read replica of the source server in the
/// paired region, and a replica of `valerix-nogeo` (not the source's).
fn with_replica() -> Value {
    let mut state = arm::scenario();
    state["servers"][format!("{SOURCE_RG}/{REPLICA}")] = json!({
        "location": PAIRED_REGION, "replicaOf": format!("{SOURCE_RG}/{SOURCE_SERVER}")
    });
    state["servers"][format!("{SOURCE_RG}/valerix-nogeo-replica")] =
        json!({"location": PAIRED_REGION, "replicaOf": format!("{SOURCE_RG}/valerix-nogeo")});
    state
}

fn patches(g: &Geo) -> Vec<Value> {
    std::thread::sleep(std::time::Duration::from_millis(200));
    g.fake.requests_to("PATCH", "")
}

/// The body of the fake's last answer to a GET of `name`.
fn last_read(g: &Geo, name: &str) -> Value {
    let gets = g
        .fake
        .requests_to("GET", &format!("/flexibleServers/{name}"));
    gets.last().expect("read at least once")["response"].clone()
}

#[test]
fn failover_promotes_the_replica_follows_it_and_points_the_services_at_it() {
    let g = Geo::new(with_replica());
    // The preflight lists the replica, what Resource Manager says of it,
    // and sends nothing.
    let r = g.run(&["failover", "--dry-run"]).ok();
    assert!(
        r.stdout.contains(&format!(
            "{REPLICA:<28} GeoAsyncReplica, region westus, state Ready, replication Active, lag not reported"
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("virtual endpoints: none"), "{}", r.stdout);
    assert!(patches(&g).is_empty());

    let r = g
        .run(&["failover", "--yes", "--update-k8s", "valerix", "--json"])
        .ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let fqdn = format!("{REPLICA}.postgres.database.azure.com");
    assert_eq!(report["state"], "Ready", "{report}");
    assert_eq!(report["role"], "Primary", "{report}");
    assert_eq!(report["fqdn"], fqdn.as_str());
    assert_eq!(report["k8s_applied"], true);
    // One PATCH of the replica, with exactly the spec's body.
    let sent = patches(&g);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["json"],
        json!({"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": "Planned"}}})
    );
    assert!(
        sent[0]["path"].as_str().unwrap().starts_with(&format!(
            "{}?api-version=2025-08-01",
            arm::server_id(SOURCE_RG, REPLICA)
        )),
        "{sent:?}"
    );
    // Accepted: the fake refuses a PATCH without Content-Type
    // application/json (415), as Resource Manager does.
    assert_eq!(sent[0]["status"], 202);
    // The operation was followed, honouring Retry-After.
    let ops: Vec<Value> = g
        .fake
        .requests_to("GET", "")
        .into_iter()
        .filter(|p| p["path"].as_str().unwrap().contains("azureAsyncOperation"))
        .collect();
    assert!(ops.len() >= 2, "{ops:?}");
    assert_eq!(ops.last().unwrap()["response"]["status"], "Succeeded");
    for w in ops.windows(2) {
        let gap = w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap();
        assert!(gap >= 0.9, "polled {gap:.2} s apart despite Retry-After: 1");
    }
    let kubectl = std::fs::read_to_string(g.kubectl_log()).unwrap();
    let pointed = |db: &str| format!("set env deployment/{db}-service DB_HOST={fqdn} -n valerix\n");
    assert_eq!(kubectl, pointed("order") + &pointed("inventory"));
    // The post-mortem record: the primary it replaces, each step, the way
    // back.
    let r = g.run(&["report", "show", "latest-failover", "--json"]).ok();
    let rec: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rec["outcome"], "succeeded", "{rec}");
    assert_eq!(
        rec["sources"][0]["of"],
        arm::server_id(SOURCE_RG, SOURCE_SERVER).as_str()
    );
    assert_eq!(rec["targets"], json!([arm::server_id(SOURCE_RG, REPLICA)]));
    assert_eq!(
        common::step_names(&rec),
        [
            "preflight",
            "request accepted",
            "operation succeeded",
            "promoted server ready",
            "services pointed at it"
        ]
    );
    assert!(
        rec["undo"]
            .to_string()
            .contains("a promotion cannot be reversed"),
        "{rec}"
    );
    // Resource Manager now has the replica as a primary with no source,
    // and the old primary without replicas.
    let promoted = last_read(&g, REPLICA);
    assert_eq!(promoted["properties"]["replica"]["role"], "Primary");
    assert!(promoted["properties"]["sourceServerResourceId"].is_null());
    g.run(&["failover", "--dry-run"])
        .fails_with(2, "valerix-postgres has no read replica");
    assert!(g.fake.arm_requests().iter().all(|r| r["auth"] == "valid"));
}

#[test]
fn failover_refuses_a_server_that_is_not_a_replica_of_the_primary() {
    let g = Geo::new(with_replica());
    g.run(&["failover", "--replica", "valerix-nogeo", "--yes"])
        .fails_with(
            2,
            "valerix-nogeo is not a read replica (role Primary): there is nothing to promote; \
             nothing was sent",
        );
    let e = g
        .run(&["failover", "--replica", "valerix-nogeo-replica", "--yes"])
        .fails_with(2, "valerix-nogeo-replica is a replica of ");
    assert!(
        e.ends_with(
            "valerix-nogeo, not of valerix-postgres: name the right --server; nothing was sent"
        ),
        "{e}"
    );
    g.run(&["failover", "--replica", "valerix-gone", "--yes"])
        .fails_with(
            1,
            "replica valerix-gone not found: HTTP 404 ResourceNotFound",
        );
    // The replica as --server: it is no primary.
    g.run(&["failover", "--server", REPLICA, "--yes"])
        .fails_with(2, "valerix-pg-replica is itself a read replica");
    // A switchover without virtual endpoints: Azure would refuse it.
    g.run(&["failover", "--mode", "switchover", "--yes"])
        .fails_with(
            2,
            "a Switchover of valerix-pg-replica needs a pair of virtual endpoints",
        );
    assert!(patches(&g).is_empty(), "nothing was sent");
}

#[test]
fn a_forced_promotion_needs_yes_and_a_switchover_keeps_the_writer_endpoint() {
    let mut state = with_replica();
    state["virtual_endpoints"] = json!({ format!("{SOURCE_RG}/{SOURCE_SERVER}"): "valerix" });
    let g = Geo::new(state);
    let args = ["failover", "--mode", "switchover", "--option", "forced"];
    let e = g
        .run(&args)
        .fails_with(2, "a Forced promotion of valerix-pg-replica");
    assert!(
        e.contains("the writes not yet replicated (the replication lag) are lost; pass --yes"),
        "{e}"
    );
    assert!(patches(&g).is_empty(), "nothing was sent");

    let mut with_yes = args.to_vec();
    with_yes.extend(["--yes", "--update-k8s", "valerix", "--json"]);
    let r = g.run(&with_yes).ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["role"], "Primary", "{report}");
    let sent = patches(&g);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["json"],
        json!({"properties": {"replica": {"promoteMode": "Switchover", "promoteOption": "Forced"}}})
    );
    // The writer endpoint follows the switchover: nothing to repoint.
    assert_eq!(
        report["repoint"],
        "nothing to repoint: the writer endpoint valerix.writer.postgres.database.azure.com now \
         points at valerix-pg-replica (services that connect to it follow the switchover)"
    );
    assert!(report["k8s_commands"].as_array().unwrap().is_empty());
    assert!(!g.kubectl_log().exists(), "kubectl was not run");
    // Roles swapped: the old primary is now the promoted server's replica.
    let r = g
        .run(&["failover", "--server", REPLICA, "--dry-run", "--json"])
        .ok();
    let plan: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(plan["replica"]["name"], SOURCE_SERVER, "{plan}");
    assert_eq!(plan["replica"]["role"], "GeoAsyncReplica");
}

#[test]
fn azure_check_names_the_cross_region_replica_and_the_rpo_of_each_path() {
    let g = Geo::new(with_replica());
    let report: Value =
        serde_json::from_str(&g.run(&["azure-check", "--json"]).ok().stdout).unwrap();
    let s = &report["servers"][0];
    assert_eq!(s["cross_region_replica"], true, "{report}");
    assert_eq!(s["replicas"][0]["name"], REPLICA);
    assert_eq!(s["replicas"][0]["role"], "GeoAsyncReplica");
    assert_eq!(s["replicas"][0]["replication_lag"], "not reported");
    let paths = s["recovery_paths"].as_array().unwrap();
    assert_eq!(paths[0]["path"], "geo-restore");
    assert!(
        paths[0]["rpo"]
            .as_str()
            .unwrap()
            .starts_with("up to 1 hour")
    );
    assert_eq!(paths[1]["available"], true);
    assert!(paths[1]["rpo"].as_str().unwrap().starts_with("seconds"));
    let r = g.run(&["azure-check"]).ok();
    assert!(
        r.stdout.contains(&format!(
            "  cross-region replica {REPLICA}: GeoAsyncReplica, region westus, state Ready, replication Active, lag not reported\n"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  RPO of geo-restore: up to 1 hour (the geo-backup's copy delay)\n"),
        "{}",
        r.stdout
    );
    // A server without one says so; promotion is then not available.
    g.configure("[[azure.postgres_server]]\nname = \"valerix-pg-replica\"\n");
    let r = g.run(&["azure-check"]);
    assert!(
        r.stdout
            .contains("no cross-region read replica: a region failure means a geo-restore"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("RPO of failover (replica promotion): seconds (the replication lag; 0 with --option planned), not available"),
        "{}",
        r.stdout
    );
}

#[test]
fn with_the_primary_region_down_the_named_replica_is_promoted_from_its_own_record() {
    let mut state = with_replica();
    state["down_servers"] = json!([format!("{SOURCE_RG}/{SOURCE_SERVER}")]);
    let g = Geo::new(state);
    // The SDK's retries of each 503 would only make the test slower.
    let cfg = g.work.path().join("vb.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("max_retries = 3", "max_retries = 0")).unwrap();
    // Unnamed, the replica cannot be found: the command says what to do.
    g.run(&["failover", "--option", "forced", "--yes"])
        .fails_with(
            1,
            "cannot read the primary valerix-postgres (HTTP 503 ServiceUnavailable",
        );
    let r = g
        .run(&[
            "failover",
            "--replica",
            REPLICA,
            "--option",
            "forced",
            "--yes",
            "--json",
        ])
        .ok();
    assert!(
        r.stderr
            .contains("cannot read the primary (HTTP 503 ServiceUnavailable"),
        "{}",
        r.stderr
    );
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["role"], "Primary", "{report}");
    assert_eq!(
        patches(&g)[0]["json"]["properties"]["replica"]["promoteOption"],
        "Forced"
    );
}

#[test]
fn a_promotion_not_waited_for_says_how_to_follow_it_never_geo_restore_watch() {
    let g = Geo::new(with_replica());
    let r = g.run(&["failover", "--yes", "--no-wait"]).ok();
    assert!(
        r.stdout.contains("az postgres flexible-server show --ids ")
            && r.stdout.contains(&format!("/flexibleServers/{REPLICA}")),
        "{}",
        r.stdout
    );
    // geo-restore --watch waits for Ready only and would record a
    // geo-restore whose undo deletes the promoted server.
    assert!(!r.stdout.contains("geo-restore --watch"), "{}", r.stdout);
    assert_eq!(patches(&g).len(), 1);
}

// ---- drill region: a geo-restore into a throwaway server, smoke-checked
// over a real connection, then deleted ----

/// The drill server's name today and its FQDN: the fake names servers
/// `<name>.drill.invalid` (`fqdn_suffix`), a name that never resolves, so
/// only `[drill] resolve` reaches it.
fn drill_name() -> (String, String) {
    let name = format!(
        "{SOURCE_SERVER}-drill-{}",
        chrono::Utc::now().format("%Y%m%d")
    );
    let fqdn = format!("{name}.drill.invalid");
    (name, fqdn)
}

/// The sandbox's config with [azure], the fake Resource Manager, the
/// source server and `[drill]` (sslmode disable: the local clusters have
/// no TLS) resolving the drill server's FQDN to 127.0.0.1:`port`.
fn write_drill_config(sb: &common::Sandbox, fake: &FakeArm, top: &str, port: u16, more: &str) {
    let (_, fqdn) = drill_name();
    let text = format!(
        "{}\n[azure]\ncontainer = \"database-backups\"\nmax_retries = 3\nretry_max_secs = 10\n\
         [azure.resource_manager]\nsubscription_id = \"{}\"\nresource_group = \"{SOURCE_RG}\"\n\
         endpoint = \"{}\"\nauth = \"client-secret\"\npoll_interval_secs = 1\ntimeout_minutes = 2\n\
         [[azure.postgres_server]]\nname = \"{SOURCE_SERVER}\"\ndatabases = [\"order\", \"inventory\"]\n\
         [drill]\nsslmode = \"disable\"\nresolve = {{ \"{fqdn}\" = \"127.0.0.1:{port}\" }}\n{more}",
        sb.config_text(top),
        arm::SUBSCRIPTION,
        fake.endpoint()
    );
    std::fs::write(sb.config_path(), text).unwrap();
}

/// The fake with drill FQDNs and short operations: one poll InProgress,
/// Retry-After 1, Ready at once.
fn drill_state() -> Value {
    json_merge(
        arm::scenario(),
        json!({ "fqdn_suffix": "drill.invalid", "polls": 1, "ready_after": 0 }),
    )
}

fn drill_fake() -> FakeArm {
    FakeArm::start(drill_state())
}

fn drill_run(sb: &common::Sandbox, fake: &FakeArm, args: &[&str]) -> common::Run {
    let mut cmd = sb.command(args);
    cmd.envs(fake.env());
    common::run(cmd)
}

/// The requests with `method` to the drill server, after the program
/// exited (the fake logs right after answering).
fn to_drill_server(fake: &FakeArm, method: &str) -> Vec<Value> {
    std::thread::sleep(std::time::Duration::from_millis(200));
    fake.requests_to(method, &format!("/flexibleServers/{}", drill_name().0))
}

/// What DELETE answered: 202 with the operation's URLs and Retry-After, as
/// Servers_Delete (2025-08-01) documents; then GETs until 404.
#[track_caller]
fn assert_deleted(fake: &FakeArm, deletes: usize) {
    let d = to_drill_server(fake, "DELETE");
    assert_eq!(d.len(), deletes, "{d:?}");
    for del in &d {
        assert_eq!(del["status"], 202, "{del}");
        for h in ["Azure-AsyncOperation", "Location", "Retry-After"] {
            assert!(del["response_headers"][h].is_string(), "{h} in {del}");
        }
    }
    let gets = to_drill_server(fake, "GET");
    let last = gets.last().unwrap();
    assert_eq!(last["status"], 404, "{last}");
    assert_eq!(last["error"], "ResourceNotFound");
}

#[test]
fn drill_region_restores_checks_the_rows_and_deletes_and_a_short_table_fails_it_and_alerts() {
    let sb = common::Sandbox::with_scale(20);
    sb.run(&["backup"]).ok();
    // The "restored" server: a second cluster loaded from that backup.
    let standin = common::Pg::start(1);
    let load = sb.work.path().join("standin.toml");
    std::fs::write(
        &load,
        sb.config_text("").replace(
            &format!("port = {}", sb.pg.port),
            &format!("port = {}", standin.port),
        ),
    )
    .unwrap();
    let mut restore = std::process::Command::new(common::bin());
    restore
        .args([
            "--config",
            load.to_str().unwrap(),
            "restore",
            "latest",
            "--yes",
        ])
        .current_dir(sb.work.path())
        .env("ORDER_DB_PASSWORD", common::ORDER_PW)
        .env("INVENTORY_DB_PASSWORD", common::INVENTORY_PW);
    common::run(restore).ok();
    assert_eq!(
        standin.fingerprint("order_db"),
        sb.pg.fingerprint("order_db")
    );

    let fake = drill_fake();
    write_drill_config(&sb, &fake, "", standin.port, "");
    let (name, _) = drill_name();
    let r = drill_run(&sb, &fake, &["drill", "region", "--yes", "--json"]).ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    for step in [
        "preflight",
        "accepted",
        "operation",
        "ready",
        "connect",
        "smoke",
        "delete",
    ] {
        let secs = report["steps"][step].as_f64();
        assert!(secs.is_some_and(|s| s >= 0.0), "{step}: {report}");
    }
    let total = report["steps"]["total"].as_f64().unwrap();
    assert!(total >= 2.0, "{report}");
    let rto = report["rto_secs"].as_f64().unwrap();
    assert!(rto > 0.0 && rto < total, "{report}");
    assert_eq!(report["deleted"], true);
    assert_eq!(report["error"], Value::Null);
    // Every table of both manifests, counted on the stand-in.
    let tables = report["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 8, "{report}");
    for t in tables {
        assert!(
            t["found"].as_u64().unwrap() >= t["expected"].as_u64().unwrap(),
            "{t}"
        );
    }
    let items = tables
        .iter()
        .find(|t| t["table"] == "public.order_items")
        .unwrap();
    let rows: u64 = standin
        .psql("order_db", "SELECT count(*) FROM order_items")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(items["found"], rows);

    // Its post-mortem record: the backups it was checked against, the steps.
    let records: Vec<_> = common::list_dir(&sb.backup_dir().join("reports"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-drill.json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&records[0]).unwrap()).unwrap();
    assert_eq!(rec["outcome"], "succeeded", "{rec}");
    let steps = common::step_names(&rec);
    assert_eq!(
        steps,
        [
            "preflight",
            "accepted",
            "operation",
            "ready",
            "connect",
            "smoke",
            "delete"
        ]
    );
    assert_eq!(rec["sources"].as_array().unwrap().len(), 3, "{rec}");

    // One PUT: a geo-restore into the paired region, tagged as a drill.
    let puts = to_drill_server(&fake, "PUT");
    assert_eq!(puts.len(), 1);
    let body = &puts[0]["json"];
    assert_eq!(body["properties"]["createMode"], "GeoRestore");
    assert_eq!(body["location"], PAIRED_REGION);
    assert_eq!(
        body["tags"]["valerix-backup-drill-of"],
        arm::server_id(SOURCE_RG, SOURCE_SERVER).to_lowercase()
    );
    assert_deleted(&fake, 1);

    // A short table on the drill server: the drill fails naming it, the
    // server is deleted all the same, and the agent's job alerts.
    standin.psql("order_db", "DELETE FROM order_items WHERE line % 2 = 0");
    let (port, got) = common::receiver();
    write_drill_config(
        &sb,
        &fake,
        "",
        standin.port,
        &format!("[[alert.webhook]]\nurl = \"http://127.0.0.1:{port}/hook\"\n"),
    );
    let r = drill_run(&sb, &fake, &["agent", "--once", "drill-region"]);
    let e = r.fails_with(1, "public.order_items has");
    assert!(e.contains(&name), "{e}");
    assert_deleted(&fake, 2);
    let alerts = got.lock().unwrap().clone();
    let alert = alerts
        .iter()
        .find(|a| a["kind"] == "drill-failed")
        .unwrap_or_else(|| panic!("{alerts:?}"));
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains("public.order_items"),
        "{alert}"
    );
    // Its record says which step failed, and that the delete still ran.
    let r = drill_run(&sb, &fake, &["report", "show", "latest-drill", "--json"]).ok();
    let rec: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rec["outcome"], "failed", "{rec}");
    let step = |name: &str| {
        rec["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no step {name} in {rec}"))
    };
    assert_eq!(step("smoke")["ok"], false, "{rec}");
    assert!(
        step("smoke")["detail"]
            .as_str()
            .unwrap()
            .contains("public.order_items")
    );
    assert_eq!(step("connect")["ok"], true, "{rec}");
    assert_eq!(step("delete")["ok"], true, "{rec}");
}

#[test]
fn an_interrupted_drill_deletes_its_server_a_killed_one_is_deleted_by_the_next_and_an_untagged_look_alike_never()
 {
    let sb = common::Sandbox::with_scale(5);
    sb.run(&["backup"]).ok();
    let fake = drill_fake();
    // Interrupted (SIGTERM) while the geo-restore runs: the drill server
    // is deleted before the program exits (130).
    write_drill_config(&sb, &fake, "", sb.pg.port, "");
    let mut cmd = sb.command(&["drill", "region", "--yes", "--json"]);
    cmd.envs(fake.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while fake.requests_to("PUT", "").is_empty() {
        assert!(t0.elapsed().as_secs() < 60, "the drill never sent its PUT");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (code, stderr) = common::terminate(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert_deleted(&fake, 1);

    // A psql that records its pid and hangs: the drill is SIGKILLed during
    // its smoke check, its server created and Ready.
    let mark = sb.work.path().join("psql.pid");
    let hang = format!("echo $$ > '{}'\nexec sleep 60", mark.display());
    let dir = common::fake_bin_dir(sb.work.path(), "psql", &hang);
    let top = format!("pg_bin_dir = \"{}\"", dir.display());
    write_drill_config(&sb, &fake, &top, sb.pg.port, "");
    let mut cmd = sb.command(&["drill", "region", "--yes"]);
    cmd.envs(fake.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    let pid = loop {
        let text = std::fs::read_to_string(&mark).unwrap_or_default();
        if let Ok(pid) = text.trim().parse::<i32>() {
            break pid;
        }
        assert!(t0.elapsed().as_secs() < 60, "the drill never reached psql");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // SAFETY: kill(2) of the hanging stand-in psql this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (name, _) = drill_name();
    assert_eq!(to_drill_server(&fake, "PUT").len(), 2);
    assert_eq!(to_drill_server(&fake, "DELETE").len(), 1);

    // The next drill deletes the one left behind before it creates its own.
    write_drill_config(&sb, &fake, "", sb.pg.port, "");
    let r = drill_run(&sb, &fake, &["drill", "region", "--yes", "--json"]).ok();
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["left_behind"][0]["name"], name.as_str(), "{report}");
    assert_eq!(report["deleted"], true);
    assert_deleted(&fake, 3);
    let puts = to_drill_server(&fake, "PUT");
    let deletes = to_drill_server(&fake, "DELETE");
    assert_eq!(puts.len(), 3);
    assert!(deletes[1]["seq"].as_u64() < puts[2]["seq"].as_u64());

    // A server named like a drill server but without the tag is not ours:
    // refused in one line, nothing deleted, nothing created.
    let lookalike = format!("{SOURCE_SERVER}-drill-20250301");
    let mut state = drill_state();
    state["servers"][format!("{SOURCE_RG}/{lookalike}")] = json!({ "location": PAIRED_REGION });
    let other = FakeArm::start(state);
    write_drill_config(&sb, &other, "", sb.pg.port, "");
    let r = drill_run(&sb, &other, &["drill", "region", "--yes"]);
    let e = r.fails_with(2, &format!("refusing to delete {lookalike}"));
    assert!(e.contains("valerix-backup-drill-of"), "{e}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(other.requests_to("DELETE", "").is_empty());
    assert!(other.requests_to("PUT", "").is_empty());

    // A smoke check that could never run is found before anything is
    // created, not after an hour-long geo-restore.
    let fresh = drill_fake();
    let bad = "smoke_query = \"select true\"\nsmoke_database = \"nope\"\n";
    write_drill_config(&sb, &fresh, "", sb.pg.port, bad);
    let r = drill_run(&sb, &fresh, &["drill", "region", "--yes"]);
    r.fails_with(2, "drill.smoke_database \"nope\"");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(fresh.requests_to("PUT", "").is_empty());
    assert!(fresh.requests_to("DELETE", "").is_empty());

    // Two drills at once (the agent's and one by hand): the second finds
    // the first's server still being created and leaves it alone; the
    // first finishes and deletes its own server.
    let mut state = drill_state();
    state["polls"] = json!(6);
    let busy = FakeArm::start(state);
    write_drill_config(&sb, &busy, "", sb.pg.port, "");
    let mut cmd = sb.command(&["drill", "region", "--yes", "--json"]);
    cmd.envs(busy.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let first = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while busy.requests_to("PUT", "").is_empty() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the first drill never sent its PUT"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = drill_run(&sb, &busy, &["drill", "region", "--yes"]);
    r.fails_with(2, "still being created");
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        to_drill_server(&busy, "PUT").len(),
        1,
        "the second drill created nothing"
    );
    assert_eq!(
        to_drill_server(&busy, "DELETE").len(),
        1,
        "only the first drill's own delete"
    );
}

/// Servers_Delete as the fake serves it (2025-08-01 openapi.json: 202 with
/// Azure-AsyncOperation, Location and Retry-After; 204 "Resource does not
/// exist"), refused as before without an api-version or a token, 403 where
/// the identity may not delete; Servers_ListByResourceGroup lists.
#[test]
fn the_fake_deletes_servers_as_servers_delete_documents() {
    let helpers = &PROBE[..PROBE.find("out = {}").unwrap()];
    let script = format!(
        "{helpers}{}",
        r#"
out = {}
arm = {"Authorization": "Bearer " + token("https://management.azure.com/.default")}
def srv(rg, name, api="?api-version=2025-08-01"):
    return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.DBforPostgreSQL/flexibleServers/%s%s" % (sub, rg, name, api)
s, b, h = call("GET", srv("rg-valerix", ""), None, arm)
out["list"] = [s, sorted(x["name"] for x in b["value"])]
out["no api-version"] = [call("DELETE", srv("rg-valerix", "valerix-nogeo", ""), None, arm)[0]]
out["no token"] = [call("DELETE", srv("rg-valerix", "valerix-nogeo"), None, {})[0]]
s, b, h = call("DELETE", srv("rg-locked", "valerix-x"), None, arm)
out["forbidden"] = [s, code(b)]
out["absent"] = [call("DELETE", srv("rg-valerix", "valerix-none"), None, arm)[0]]
s, b, h = call("DELETE", srv("rg-valerix", "valerix-nogeo"), None, arm)
out["accepted"] = [s, sorted(k for k in h if k in ("Azure-AsyncOperation", "Location", "Retry-After"))]
op = h["Azure-AsyncOperation"][len(base):]
out["dropping"] = [call("GET", srv("rg-valerix", "valerix-nogeo"), None, arm)[1]["properties"]["state"]]
states = []
while not states or states[-1] == "InProgress":
    states.append(call("GET", op, None, arm)[1]["status"])
out["operation"] = states
s, b, h = call("GET", srv("rg-valerix", "valerix-nogeo"), None, arm)
out["after"] = [s, code(b)]
out["again"] = [call("DELETE", srv("rg-valerix", "valerix-nogeo"), None, arm)[0]]
print(json.dumps(out))
"#
    );
    let fake = FakeArm::start(json_merge(
        arm::scenario(),
        json!({ "polls": 2, "retry_after": 0, "forbidden_resource_groups": ["rg-locked"] }),
    ));
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .args([
            &fake.endpoint(),
            arm::TENANT,
            arm::CLIENT_ID,
            arm::SUBSCRIPTION,
        ])
        .env("SSL_CERT_FILE", &fake.ca)
        .env("SECRET", arm::CLIENT_SECRET);
    let got: Value = serde_json::from_str(&common::run(cmd).ok().stdout).unwrap();
    let want = json!({
        "list": [200, ["valerix-nogeo", "valerix-postgres"]],
        "no api-version": [400],
        "no token": [401],
        "forbidden": [403, "AuthorizationFailed"],
        "absent": [204],
        "accepted": [202, ["Azure-AsyncOperation", "Location", "Retry-After"]],
        "dropping": ["Dropping"],
        "operation": ["InProgress", "Succeeded"],
        "after": [404, "ResourceNotFound"],
        "again": [204],
    });
    assert_eq!(got, want);
}
