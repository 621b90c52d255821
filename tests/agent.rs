//! The agent against a real cluster, on an injected schedule (cron with a
//! seconds field) so that a day's jobs run in seconds: order, overlap
//! refusal, catch-up of a missed slot, SIGTERM mid-backup, /metrics, and
//! alerts delivered to a local webhook receiver.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Sandbox, list_dir, receiver, terminate};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the sandbox config plus an [agent] section and `extra`.
fn configure(sb: &Sandbox, top: &str, agent: &str, extra: &str) {
    let text = format!("{}\n[agent]\n{agent}\n{extra}\n", sb.config_text(top));
    std::fs::write(sb.config_path(), text).unwrap();
}

/// A schedule where only the given jobs ever fire (the others on 1 January
/// at midnight), and no catch-up.
fn schedule(jobs: &[(&str, &str)]) -> String {
    let mut s = String::from("catch_up_grace = \"0s\"\n[agent.schedule]\n");
    for job in ["backup", "verify", "weekly_upload", "audit", "drill"] {
        let expr = jobs
            .iter()
            .find(|(j, _)| *j == job)
            .map_or("0 0 0 1 1 *", |(_, e)| e);
        s += &format!("{job} = \"{expr}\"\n");
    }
    s
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// Starts the agent on `jobs` with its HTTP endpoint on a free port;
/// returns once /readyz answers 200.
fn start_listening(sb: &Sandbox, jobs: &[(&str, &str)]) -> (std::process::Child, u16) {
    let port = free_port();
    let agent = format!("listen = \"127.0.0.1:{port}\"\n{}", schedule(jobs));
    configure(sb, "", &agent, "");
    let child = sb.spawn(&["agent"]);
    wait_for("/readyz", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_get(port, "/readyz").0 == 200
    });
    (child, port)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed().as_secs() < secs,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of one series in Prometheus text, e.g.
/// `valerix_backup_backup_size_bytes{database="order_db"}`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Every line is a comment, `# EOF`, or `name{labels} value`.
fn assert_exposition_format(text: &str) {
    assert!(text.ends_with("# EOF\n"), "{text}");
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad value in {l}");
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {l}"
        );
        assert_eq!(name.contains('{'), name.ends_with('}'), "bad labels in {l}");
    }
}

#[test]
fn the_schedule_runs_in_order_and_metrics_follow() {
    let sb = Sandbox::new();
    let (child, port) = start_listening(
        &sb,
        &[
            ("backup", "*/6 * * * * *"),
            ("verify", "2/6 * * * * *"),
            ("drill", "4/6 * * * * *"),
        ],
    );
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/nope").0, 404);
    let before = http_get(port, "/metrics").1;
    assert_exposition_format(&before);
    let drilled = "valerix_backup_restore_drill_duration_seconds{database=\"order_db\"}";
    wait_for("a restore drill", 40, || {
        metric(&http_get(port, "/metrics").1, drilled).is_some()
    });
    let after = http_get(port, "/metrics").1;
    assert_exposition_format(&after);
    let ok = |job: &str| {
        metric(
            &after,
            &format!(
                "valerix_backup_last_success_timestamp_seconds{{job=\"{job}\",database=\"order_db\"}}"
            ),
        )
    };
    assert!(
        ok("backup").is_some() && ok("verify").is_some() && ok("drill").is_some(),
        "{after}"
    );
    let size = metric(
        &after,
        "valerix_backup_backup_size_bytes{database=\"order_db\"}",
    )
    .unwrap();
    let dump = sb.dump_of("order_db");
    let newest_size = std::fs::metadata(&dump).unwrap().len() as f64;
    assert!(
        size > 0.0 && (size - newest_size).abs() < newest_size,
        "{size}"
    );
    assert!(
        metric(
            &after,
            "valerix_backup_last_deep_verified_timestamp_seconds{database=\"inventory_db\"}"
        )
        .is_some()
    );
    assert!(metric(&before, drilled).is_none());

    let (code, stderr) = terminate(child);
    assert_eq!(code, Some(130), "{stderr}");
    // Order: from the first backup on, the jobs start in the schedule's
    // cycle (backup at :00, verify at :02, drill at :04 of every 6 s).
    let started: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split("job ").nth(1)?.strip_suffix(" started"))
        .skip_while(|j| *j != "backup")
        .collect();
    assert!(started.len() >= 3, "{stderr}");
    let cycle = ["backup", "verify", "drill"];
    for (i, job) in started.iter().enumerate() {
        assert_eq!(*job, cycle[i % 3], "out of order: {started:?}");
    }
    assert!(
        stderr.contains("schedule: drill at '4/6 * * * * *'"),
        "{stderr}"
    );
}

#[test]
fn a_slot_that_comes_while_the_job_runs_is_skipped() {
    let sb = Sandbox::new();
    // pg_dump that takes 3 s: every-second slots overlap it.
    let dir = common::fake_bin_dir(
        sb.work.path(),
        "pg_dump",
        "sleep 3; exec \"$REAL/pg_dump\" \"$@\"",
    );
    configure(
        &sb,
        &format!("pg_bin_dir = \"{}\"", dir.display()),
        &schedule(&[("backup", "* * * * * *")]),
        "",
    );
    let child = sb.spawn(&["agent"]);
    std::thread::sleep(Duration::from_secs(5));
    let (_, stderr) = terminate(child);
    assert!(
        stderr.contains("backup: its slot came while it is still running or queued; skipped"),
        "{stderr}"
    );
    assert!(
        list_dir(&sb.backup_dir())
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(".partial"))
    );
}

#[test]
fn a_missed_slot_runs_once_at_start_up() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.backup_dir()).unwrap();
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    std::fs::write(
        sb.backup_dir().join(".agent-state.json"),
        format!("{{\"last_run\": {{\"backup\": \"{long_ago}\"}}}}"),
    )
    .unwrap();
    // Every hour on the hour: the last slot is at most an hour old, inside
    // a 2 h grace; the next one is too far for this test to wait for.
    let sched = schedule(&[("backup", "0 0 * * * *")])
        .replace("catch_up_grace = \"0s\"", "catch_up_grace = \"2h\"");
    configure(&sb, "", &sched, "");
    let child = sb.spawn(&["agent"]);
    wait_for("the caught-up backup", 30, || sb.dumps().len() == 2);
    let (_, stderr) = terminate(child);
    assert_eq!(
        stderr.matches("backup: queued (missed slot").count(),
        1,
        "{stderr}"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(sb.backup_dir().join(".agent-state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["last_run"]["backup"].as_str().unwrap() > long_ago.as_str());

    // Started again: the slot is done, nothing is caught up.
    let child = sb.spawn(&["agent"]);
    std::thread::sleep(Duration::from_secs(3));
    let (_, stderr) = terminate(child);
    assert!(!stderr.contains("missed slot"), "{stderr}");
}

#[test]
fn sigterm_mid_backup_leaves_no_partial_file() {
    let sb = Sandbox::new();
    let dir = common::fake_bin_dir(
        sb.work.path(),
        "pg_dump",
        "\"$REAL/pg_dump\" \"$@\" | (sleep 2; cat; sleep 30)",
    );
    configure(
        &sb,
        &format!("pg_bin_dir = \"{}\"", dir.display()),
        &schedule(&[("backup", "*/2 * * * * *")]),
        "",
    );
    let child = sb.spawn(&["agent"]);
    wait_for("a partial file", 20, || {
        list_dir(&sb.backup_dir())
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".partial"))
    });
    let t0 = Instant::now();
    let (code, stderr) = terminate(child);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "exit took {:?}",
        t0.elapsed()
    );
    assert_eq!(code, Some(130), "{stderr}");
    let left = list_dir(&sb.backup_dir());
    assert!(
        left.iter()
            .all(|p| !p.to_string_lossy().ends_with(".partial")),
        "{left:?}"
    );
    assert!(sb.dumps().is_empty(), "{left:?}");
}

#[test]
fn a_failing_database_is_alerted_and_so_is_its_recovery() {
    let sb = Sandbox::new();
    let (port, got) = receiver();
    // inventory_db's pg_dump fails while the file `fail` exists.
    let fail = sb.work.path().join("fail");
    std::fs::write(&fail, "").unwrap();
    let dir = common::fake_bin_dir(
        sb.work.path(),
        "pg_dump",
        &format!(
            "if [ -f '{}' ] && [ \"$PGDATABASE\" = inventory_db ]; then echo 'pg_dump: error: disk on fire' >&2; exit 1; fi\nexec \"$REAL/pg_dump\" \"$@\"",
            fail.display()
        ),
    );
    configure(
        &sb,
        &format!("pg_bin_dir = \"{}\"", dir.display()),
        &schedule(&[("backup", "*/3 * * * * *")]),
        &format!(
            "[[alert.webhook]]\nurl_env = \"VX_ALERT_URL\"\nkind = \"json\"\n\
             [[alert.webhook]]\nurl = \"http://127.0.0.1:{port}/slack\"\nkind = \"slack\"\n"
        ),
    );
    let child = sb
        .command(&["agent"])
        .env(
            "VX_ALERT_URL",
            format!("http://127.0.0.1:{port}/hook/secret-path"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the failure alerts", 30, || got.lock().unwrap().len() >= 2);
    std::fs::remove_file(&fail).unwrap();
    wait_for("the recovery alert", 30, || {
        got.lock().unwrap().iter().any(|a| a["kind"] == "recovered")
    });
    let (_, stderr) = terminate(child);
    let alerts = got.lock().unwrap().clone();
    let failed = alerts.iter().find(|a| a["kind"] == "job-failed").unwrap();
    assert_eq!(failed["database"], "inventory_db", "{alerts:?}");
    assert_eq!(failed["severity"], "critical");
    assert!(
        failed["summary"].as_str().unwrap().contains("disk on fire"),
        "{failed}"
    );
    let slack = alerts.iter().find(|a| a.get("text").is_some()).unwrap();
    assert!(
        slack["text"].as_str().unwrap().contains("inventory_db"),
        "{slack}"
    );
    let recovered = alerts.iter().find(|a| a["kind"] == "recovered").unwrap();
    assert_eq!(recovered["database"], "inventory_db");
    assert!(
        !stderr.contains("secret-path"),
        "webhook paths are never logged"
    );
    // order_db never failed: no alert names it.
    assert!(
        alerts.iter().all(|a| a["database"] != "order_db"),
        "{alerts:?}"
    );
}

#[test]
fn once_config_check_completions_and_man() {
    let sb = Sandbox::new();
    let r = sb.run(&["agent", "--once", "backup"]).ok();
    assert!(r.stderr.contains("job backup succeeded"), "{}", r.stderr);
    assert_eq!(sb.dumps().len(), 2);
    let r = sb.run(&["agent", "--once", "nightly"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown job (one of backup, verify"),
        "{}",
        r.stderr
    );
    let check = sb.run(&["config", "check", "--json"]).ok();
    let report: Value = serde_json::from_str(&check.stdout).unwrap();
    let items = report["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["ok"] == true), "{report}");
    assert!(
        items
            .iter()
            .any(|i| i["what"].as_str().unwrap().starts_with("database order_db"))
    );
    // A database that cannot be reached fails the check, and names it.
    sb.pg.stop_server();
    let r = sb.run(&["config", "check"]);
    r.fails_with(1, "database order_db");
    assert!(r.stdout.contains("FAIL"), "{}", r.stdout);
    let bash = sb.run(&["completions", "bash"]).ok().stdout;
    assert!(bash.contains("valerix-backup") && bash.contains("geo-restore"));
    let man = sb.run(&["man"]).ok().stdout;
    assert!(
        man.contains(".TH valerix-backup"),
        "{}",
        &man[..200.min(man.len())]
    );
    // JSON log lines for log shipping.
    configure(&sb, "", "log_format = \"json\"", "");
    let r = sb.run(&["verify"]).ok();
    let line = r.stderr.lines().next().expect("a log line");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        v["level"].is_string() && v["fields"]["message"].is_string(),
        "{v}"
    );
    // A bad schedule is a config error.
    configure(&sb, "", "[agent.schedule]\nverify = \"61 3 * * *\"", "");
    sb.run(&["agent"]).fails_with(2, "agent.schedule.verify");
}

/// How many file descriptors the process `pid` holds.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn idle_and_slow_connections_starve_neither_healthz_nor_the_schedule() {
    use std::net::TcpStream;
    let sb = Sandbox::new();
    let (child, port) = start_listening(&sb, &[("backup", "*/4 * * * * *")]);
    let fds_at_start = open_fds(child.id());
    // 500 connections that never send a byte, and 5 slowloris requests:
    // half a request head, then one more header line a second.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let dumps_before = sb.dumps().len();
    let t0 = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut most_fds = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        for s in &mut slow {
            let _ = s.write_all(b"X-Slow: 1\r\n");
        }
        let t = Instant::now();
        assert_eq!(http_get(port, "/healthz").0, 200);
        slowest = slowest.max(t.elapsed());
        most_fds = most_fds.max(open_fds(child.id()));
        std::thread::sleep(Duration::from_millis(500));
    }
    // /healthz answered at once every time, and the agent did not keep a
    // descriptor per connection.
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );
    assert!(
        most_fds < fds_at_start + 100,
        "{most_fds} descriptors open, {fds_at_start} before the 505 connections"
    );
    // The slow requests were cut off by the server, not answered.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut text = String::new();
        match s.read_to_string(&mut text) {
            Ok(_) => assert!(!text.contains("200 OK"), "{text}"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a slowloris request is still open after 10 s"
            ),
        }
    }
    // Scheduled backups ran all along.
    wait_for("a backup during the flood", 30, || {
        sb.dumps().len() >= dumps_before + 2
    });
    drop(idle);
    let (code, stderr) = terminate(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("job backup succeeded"), "{stderr}");
}
