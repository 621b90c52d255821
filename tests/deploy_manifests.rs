//! Static checks of the deployment files: `Dockerfile`, `.dockerignore`,
//! `infra/compose/`, `infra/k8s/` and `infra/systemd/`. Nothing is deployed
//! and no Docker engine or cluster is needed: the YAML is parsed, every
//! command line the files run is handed to the real binary with `--help`
//! appended (so a renamed subcommand or flag fails here, not at 2 a.m. in a
//! cluster), the example configurations are loaded by the real binary, and the
//! schedules are compared with the agent's defaults.
//!
//! At the end, the image itself: scripts/image-test.sh builds it from the
//! real Dockerfile with podman and runs it, and the Compose service is started
//! from it, as `docker compose up` and `docker compose run` would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::repo;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// The image every deployment runs (a placeholder registry).
const IMAGE: &str = "ghcr.io/valerix/valerix-backup:0.1.0";
/// Where the containers find the config (the image's VALERIX_BACKUP_CONFIG).
const CONFIG_PATH: &str = "/etc/valerix-backup/valerix-backup.toml";
const NAMESPACE: &str = "valerix";
const PORT: u64 = 9187;
const BIN: &str = "/usr/local/bin/valerix-backup";

/// The agent's jobs: the word after `agent --once`, the key in
/// `[agent.schedule]`, and the default schedule.
const JOBS: [(&str, &str, &str); 5] = [
    ("backup", "backup", "0 2 * * *"),
    ("verify", "verify", "0 3 * * *"),
    ("weekly-upload", "weekly_upload", "0 1 * * SUN"),
    ("audit", "audit", "30 3 * * *"),
    ("drill", "drill", "0 4 * * SUN#1"),
];

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every non-empty document of a YAML file.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn files_in(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {exts:?} files in {dir}");
    out
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every Kubernetes object under infra/k8s, with the name of its file.
fn k8s_objects() -> Vec<(String, Value)> {
    files_in("infra/k8s", &["yaml", "yml"])
        .into_iter()
        .flat_map(|p| {
            let file = name_of(&p);
            yaml_docs(&p).into_iter().map(move |v| (file.clone(), v))
        })
        .collect()
}

fn of_kind<'a>(objects: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|(_, v)| v["kind"].as_str() == Some(kind))
        .map(|(_, v)| v)
        .collect()
}

fn one_of_kind<'a>(objects: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind} in infra/k8s");
    found[0]
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v:?}"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items.iter().map(|i| s(i).to_string()).collect(),
        other => panic!("expected a list of strings, found {other:?}"),
    }
}

fn seq(v: &Value) -> &[Value] {
    match v {
        Value::Null => &[],
        Value::Sequence(items) => items,
        other => panic!("expected a list, found {other:?}"),
    }
}

/// The pod spec of a Deployment, Job or CronJob.
fn pod_spec(object: &Value) -> &Value {
    match s(&object["kind"]) {
        "Deployment" | "Job" => &object["spec"]["template"]["spec"],
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        other => panic!("{other} has no pod spec"),
    }
}

fn pod_labels(object: &Value) -> &Value {
    match s(&object["kind"]) {
        "Deployment" | "Job" => &object["spec"]["template"]["metadata"]["labels"],
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        other => panic!("{other} has no pod template"),
    }
}

fn workloads(objects: &[(String, Value)]) -> Vec<&Value> {
    objects
        .iter()
        .map(|(_, v)| v)
        .filter(|v| matches!(v["kind"].as_str(), Some("Deployment" | "CronJob" | "Job")))
        .collect()
}

fn containers(object: &Value) -> Vec<&Value> {
    let spec = pod_spec(object);
    seq(&spec["initContainers"])
        .iter()
        .chain(seq(&spec["containers"]))
        .collect()
}

/// The argument lists given to valerix-backup by a container's command and
/// args: `args` after the image's ENTRYPOINT (`agent` when empty, the image's
/// CMD), an explicit valerix-backup command, or the valerix-backup lines of a
/// `sh -c` script.
fn invocations(command: &[String], args: &[String]) -> Vec<Vec<String>> {
    let Some(program) = command.first() else {
        return vec![if args.is_empty() {
            vec!["agent".to_string()]
        } else {
            args.to_vec()
        }];
    };
    if program.ends_with("valerix-backup") {
        return vec![command[1..].iter().chain(args).cloned().collect()];
    }
    let shell = ["sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/bash"];
    assert!(
        shell.contains(&program.as_str()) && command.iter().any(|w| w == "-c"),
        "unexpected command {command:?}: run valerix-backup, or a shell script with -c"
    );
    let script = command
        .iter()
        .skip_while(|w| *w != "-c")
        .nth(1)
        .or(args.first())
        .expect("a script after -c");
    let found = script_invocations(script);
    assert!(
        !found.is_empty(),
        "the script runs no valerix-backup: {script}"
    );
    found
}

/// `valerix-backup ...` command lines in a shell script (plain words only).
fn script_invocations(script: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in script.lines() {
        for part in line.split([';', '&', '|']) {
            let part = part.trim();
            let part = part.strip_prefix("exec ").unwrap_or(part).trim();
            let mut words = part.split_whitespace();
            let Some(first) = words.next() else { continue };
            if first == "valerix-backup" || first == BIN {
                let words: Vec<String> = words.map(str::to_string).collect();
                assert!(
                    words
                        .iter()
                        .all(|w| !w.contains(['$', '"', '\'', '`', '\\'])),
                    "keep valerix-backup's arguments plain words in scripts: {part}"
                );
                out.push(words);
            }
        }
    }
    out
}

/// The real binary accepts this command line: it prints the help of the
/// subcommand and exits 0, where an unknown subcommand or flag exits 2.
fn assert_cli_accepts(argv: &[String], origin: &str) {
    assert_eq!(
        argv.first().map(String::as_str),
        Some("agent"),
        "{origin}: runs `valerix-backup {}`, not the agent",
        argv.join(" ")
    );
    if let Some(i) = argv.iter().position(|a| a == "--once") {
        let job = argv.get(i + 1).map(String::as_str).unwrap_or_default();
        assert!(
            JOBS.iter().any(|(j, _, _)| *j == job),
            "{origin}: `--once {job}` is not one of the agent's jobs"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_valerix-backup"))
        .args(argv)
        .arg("--help")
        .env_remove("VALERIX_BACKUP_CONFIG")
        .output()
        .expect("run valerix-backup");
    assert!(
        out.status.success(),
        "{origin}: the binary refuses `valerix-backup {} --help` (exit {:?}): {}",
        argv.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn schedule_of(job: &str) -> &'static str {
    JOBS.iter()
        .find(|(j, _, _)| *j == job)
        .map(|(_, _, cron)| *cron)
        .unwrap()
}

/// The `--once JOB` of an argument list.
fn once_job(argv: &[String]) -> Option<&str> {
    let i = argv.iter().position(|a| a == "--once")?;
    argv.get(i + 1).map(String::as_str)
}

/// A cron expression of the agent's schedule as a systemd calendar event.
fn on_calendar(cron: &str) -> String {
    let f: Vec<&str> = cron.split_whitespace().collect();
    assert_eq!(f.len(), 5, "{cron}");
    assert!(f[2] == "*" && f[3] == "*", "{cron}: day and month are '*'");
    let time = format!(
        "{:02}:{:02}:00 UTC",
        f[1].parse::<u32>().unwrap(),
        f[0].parse::<u32>().unwrap()
    );
    let weekday = |d: &str| {
        let d = d.to_ascii_lowercase();
        let mut c = d.chars();
        let first = c.next().unwrap().to_ascii_uppercase();
        format!("{first}{}", c.as_str())
    };
    match f[4].split_once('#') {
        None if f[4] == "*" => format!("*-*-* {time}"),
        None => format!("{} *-*-* {time}", weekday(f[4])),
        Some((day, "1")) => format!("{} *-*-01..07 {time}", weekday(day)),
        Some(_) => panic!("{cron}: only the first weekday of the month is translated"),
    }
}

/// A systemd unit file: (section, key) -> values, in order.
fn unit(path: &Path) -> BTreeMap<(String, String), Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut section = String::new();
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not key=value: {line}", path.display()));
        out.entry((section.clone(), key.trim().to_string()))
            .or_default()
            .push(value.trim().to_string());
    }
    out
}

fn unit_value<'a>(
    u: &'a BTreeMap<(String, String), Vec<String>>,
    section: &str,
    key: &str,
) -> &'a str {
    let values = u
        .get(&(section.to_string(), key.to_string()))
        .unwrap_or_else(|| panic!("no {key}= in [{section}]"));
    values.last().unwrap()
}

/// The TOML of the ConfigMap (the agent's config in Kubernetes).
fn k8s_config_text(objects: &[(String, Value)]) -> String {
    let cm = one_of_kind(objects, "ConfigMap");
    s(&cm["data"]["valerix-backup.toml"]).to_string()
}

fn toml_table(text: &str, origin: &str) -> toml::Table {
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{origin}: {e}"))
}

/// The default of a Compose `${VAR:-default}` value, or the value itself.
fn compose_default(value: &str) -> String {
    interpolate(value, &BTreeMap::new())
}

#[test]
fn every_yaml_file_parses_and_every_object_is_named() {
    let mut files = files_in("infra/k8s", &["yaml", "yml"]);
    files.extend(files_in("infra/compose", &["yaml", "yml"]));
    for path in &files {
        assert!(
            !yaml_docs(path).is_empty(),
            "{} holds no document",
            path.display()
        );
    }
    let objects = k8s_objects();
    for (file, v) in &objects {
        assert!(v["apiVersion"].as_str().is_some(), "{file}: no apiVersion");
        let kind = v["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        if kind == "Kustomization" {
            assert_eq!(v["namespace"].as_str(), Some(NAMESPACE), "{file}");
            continue;
        }
        assert!(
            v["metadata"]["name"].as_str().is_some(),
            "{file}: a {kind} without metadata.name"
        );
        assert_eq!(
            v["metadata"]["namespace"].as_str(),
            Some(NAMESPACE),
            "{file}: {kind} {} is not in namespace {NAMESPACE}",
            s(&v["metadata"]["name"])
        );
    }
    let kinds: BTreeSet<&str> = objects
        .iter()
        .filter_map(|(_, v)| v["kind"].as_str())
        .collect();
    for kind in [
        "Deployment",
        "CronJob",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "Kustomization",
    ] {
        assert!(kinds.contains(kind), "no {kind} in infra/k8s");
    }
    // Every file the kustomization names exists, and the Secret template is
    // not among them (re-applying must never reset real passwords).
    let objects_by_file: BTreeMap<&str, Vec<&str>> =
        objects.iter().fold(BTreeMap::new(), |mut m, (f, v)| {
            m.entry(f.as_str())
                .or_default()
                .push(v["kind"].as_str().unwrap_or_default());
            m
        });
    let kustomization = one_of_kind(&objects, "Kustomization");
    for file in strings(&kustomization["resources"]) {
        let kinds = objects_by_file
            .get(file.as_str())
            .unwrap_or_else(|| panic!("kustomization.yaml names {file}, which is not there"));
        assert!(
            !kinds.contains(&"Secret"),
            "kustomization.yaml applies the Secret template {file}"
        );
    }
}

#[test]
fn k8s_workloads_run_the_image() {
    let objects = k8s_objects();
    for w in workloads(&objects) {
        for c in containers(w) {
            assert_eq!(
                c["image"].as_str(),
                Some(IMAGE),
                "{} {}: container {}",
                s(&w["kind"]),
                s(&w["metadata"]["name"]),
                s(&c["name"])
            );
        }
    }
    let kustomization = one_of_kind(&objects, "Kustomization");
    let images = seq(&kustomization["images"]);
    assert_eq!(images.len(), 1, "kustomization.yaml: one image entry");
    let (name, tag) = IMAGE.rsplit_once(':').unwrap();
    assert_eq!(images[0]["name"].as_str(), Some(name));
    assert_eq!(images[0]["newName"].as_str(), Some(name));
    assert_eq!(images[0]["newTag"].as_str(), Some(tag));
}

#[test]
fn k8s_commands_are_accepted_by_the_binary() {
    let objects = k8s_objects();
    let mut checked = 0;
    for w in workloads(&objects) {
        for c in containers(w) {
            let origin = format!(
                "infra/k8s {} {} container {}",
                s(&w["kind"]),
                s(&w["metadata"]["name"]),
                s(&c["name"])
            );
            for argv in invocations(&strings(&c["command"]), &strings(&c["args"])) {
                if let Some(i) = argv.iter().position(|a| a == "--config") {
                    assert_eq!(argv.get(i + 1).map(String::as_str), Some(CONFIG_PATH));
                }
                assert_cli_accepts(&argv, &origin);
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} command lines found");
}

#[test]
fn cronjobs_run_each_job_once_at_the_agent_default_schedule() {
    let objects = k8s_objects();
    let mut seen = BTreeSet::new();
    for cj in of_kind(&objects, "CronJob") {
        let name = s(&cj["metadata"]["name"]);
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"), "{name}");
        assert_eq!(spec["timeZone"].as_str(), Some("Etc/UTC"), "{name}");
        assert_eq!(
            pod_spec(cj)["restartPolicy"].as_str(),
            Some("Never"),
            "{name}"
        );
        let cs = containers(cj);
        assert_eq!(cs.len(), 1, "{name}: one container");
        let runs = invocations(&strings(&cs[0]["command"]), &strings(&cs[0]["args"]));
        assert_eq!(runs.len(), 1, "{name}: one valerix-backup run");
        let job = once_job(&runs[0])
            .unwrap_or_else(|| panic!("{name}: a CronJob runs `agent --once JOB`"));
        assert!(seen.insert(job.to_string()), "two CronJobs run {job}");
        let expected = schedule_of(job);
        let schedule = s(&spec["schedule"]);
        if let Some((weekly, "1")) = expected.split_once('#') {
            // Kubernetes' cron has no "first <weekday> of the month": the job
            // fires every week and its script skips days after the 7th.
            assert_eq!(schedule, weekly, "{name}");
            let script = strings(&cs[0]["command"])
                .into_iter()
                .chain(strings(&cs[0]["args"]))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                script.contains("date -u +%-d") && script.contains("-gt 7"),
                "{name}: no first-week guard in {script}"
            );
        } else {
            assert_eq!(schedule, expected, "{name}: not the agent's default");
        }
    }
    let all: BTreeSet<String> = JOBS.iter().map(|(j, _, _)| j.to_string()).collect();
    assert_eq!(seen, all, "one CronJob per job");
}

#[test]
fn the_deployment_is_one_agent_with_its_volume_probes_and_identity() {
    let objects = k8s_objects();
    let d = one_of_kind(&objects, "Deployment");
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(d["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    let pod = pod_spec(d);
    let labels = pod_labels(d);
    assert_eq!(
        labels["azure.workload.identity/use"].as_str(),
        Some("true"),
        "the pod label is a string"
    );

    // The ServiceAccount carries the managed identity's client ID.
    let sa = one_of_kind(&objects, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
            .as_str()
            .is_some()
    );

    // Non-root, read-only root filesystem, no privilege escalation.
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(psc["runAsUser"].as_u64(), Some(10001));
    let cs = containers(d);
    assert_eq!(cs.len(), 1);
    let c = cs[0];
    let csc = &c["securityContext"];
    assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(c["resources"]["requests"]["memory"].as_str(), Some("256Mi"));
    assert!(c["resources"]["limits"]["memory"].as_str().is_some());

    // Probes on the agent's port.
    let ports = seq(&c["ports"]);
    let http = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("http"))
        .expect("a port named http");
    assert_eq!(http["containerPort"].as_u64(), Some(PORT));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert!(
            get["port"].as_str() == Some("http") || get["port"].as_u64() == Some(PORT),
            "{probe} port"
        );
    }

    // Volumes: the PVC at /backups, a writable /tmp, the config read-only.
    let volumes: BTreeMap<&str, &Value> = seq(&pod["volumes"])
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let mounts: BTreeMap<&str, &Value> = seq(&c["volumeMounts"])
        .iter()
        .map(|m| (s(&m["mountPath"]), m))
        .collect();
    let volume_at = |path: &str| {
        let m = mounts
            .get(path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        *volumes
            .get(s(&m["name"]))
            .unwrap_or_else(|| panic!("no volume {}", s(&m["name"])))
    };
    let pvc = one_of_kind(&objects, "PersistentVolumeClaim");
    assert_eq!(
        volume_at("/backups")["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    assert!(
        volume_at("/tmp")["emptyDir"].is_mapping(),
        "/tmp is an emptyDir"
    );
    let cm = one_of_kind(&objects, "ConfigMap");
    let config_dir = Path::new(CONFIG_PATH).parent().unwrap().to_str().unwrap();
    assert_eq!(
        volume_at(config_dir)["configMap"]["name"],
        cm["metadata"]["name"]
    );
    assert_eq!(mounts[config_dir]["readOnly"].as_bool(), Some(true));

    // Every password_env of the config is set from the Secret, whose
    // template has that key.
    let secret = one_of_kind(&objects, "Secret");
    let config = toml_table(&k8s_config_text(&objects), "ConfigMap");
    let env: BTreeMap<&str, &Value> = seq(&c["env"]).iter().map(|e| (s(&e["name"]), e)).collect();
    for db in config["database"].as_array().unwrap() {
        let var = db["password_env"].as_str().expect("password_env");
        let from = &env
            .get(var)
            .unwrap_or_else(|| panic!("{var} is not set in the Deployment"))["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], secret["metadata"]["name"], "{var}");
        let key = s(&from["key"]);
        assert!(
            secret["stringData"][key].as_str().is_some(),
            "{var}: key {key} is not in the Secret template"
        );
    }
    for (name, e) in &env {
        assert!(
            e["value"].is_null() || !name.contains("PASSWORD"),
            "{name} is inline in the Deployment"
        );
    }

    // The Service selects the agent and is scraped on its port.
    let svc = one_of_kind(&objects, "Service");
    let selector = svc["spec"]["selector"].as_mapping().expect("a selector");
    for (k, v) in selector {
        assert_eq!(&labels[s(k)], v, "the Service's selector {k:?}");
    }
    let ann = &svc["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(ann["prometheus.io/port"].as_str(), Some("9187"));
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
}

/// The config of each deployment: its schedule is the agent's default, its
/// backup directory lies in the volume, the agent listens on 9187.
#[test]
fn the_example_configs_match_the_deployments() {
    let objects = k8s_objects();
    let configs = [
        ("the ConfigMap", k8s_config_text(&objects)),
        (
            "infra/compose/valerix-backup.toml",
            read("infra/compose/valerix-backup.toml"),
        ),
    ];
    for (origin, text) in &configs {
        let t = toml_table(text, origin);
        let backup_dir = t["backup_dir"].as_str().unwrap();
        assert!(
            backup_dir == "/backups" || backup_dir.starts_with("/backups/"),
            "{origin}: backup_dir {backup_dir} is not in the /backups volume"
        );
        let agent = t["agent"].as_table().expect("an [agent] section");
        assert_eq!(
            agent["listen"].as_str(),
            Some(format!("0.0.0.0:{PORT}").as_str()),
            "{origin}"
        );
        let schedule = agent["schedule"].as_table().expect("[agent.schedule]");
        for (_, key, cron) in JOBS {
            assert_eq!(
                schedule.get(key).and_then(|v| v.as_str()),
                Some(cron),
                "{origin}: agent.schedule.{key}"
            );
        }
        for db in t["database"].as_array().unwrap() {
            assert!(db.get("password").is_none(), "{origin}: a password inline");
            assert!(db["password_env"].as_str().is_some(), "{origin}");
        }
    }
    // Compose: the seed's servers by service name, both on 5432 inside
    // valerix-network.
    let compose = toml_table(&configs[1].1, "compose config");
    let hosts: Vec<(&str, i64)> = compose["database"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["host"].as_str().unwrap(), d["port"].as_integer().unwrap()))
        .collect();
    assert_eq!(hosts, [("order-db", 5432), ("inventory-db", 5432)]);
}

/// The real binary loads both example configs (a config error exits 2).
/// `lifecycle-policy` reads the whole config and needs no server and no
/// credential.
#[test]
fn the_example_configs_load_in_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("valerix-backup.toml");
    std::fs::write(&k8s, k8s_config_text(&k8s_objects())).unwrap();
    for config in [k8s, repo().join("infra/compose/valerix-backup.toml")] {
        let out = Command::new(env!("CARGO_BIN_EXE_valerix-backup"))
            .arg("--config")
            .arg(&config)
            .args(["lifecycle-policy", "--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: exit {:?}: {}",
            config.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

#[test]
fn compose_runs_the_agent_beside_the_seed_databases() {
    let docs = yaml_docs(&repo().join("infra/compose/docker-compose.yml"));
    assert_eq!(docs.len(), 1);
    let compose = &docs[0];
    let svc = &compose["services"]["backup-service"];
    assert!(svc.is_mapping(), "the seed's service name, backup-service");
    assert_eq!(compose_default(s(&svc["image"])), IMAGE);
    assert_eq!(svc["restart"].as_str(), Some("unless-stopped"));

    for argv in invocations(&strings(&svc["entrypoint"]), &strings(&svc["command"])) {
        assert_cli_accepts(&argv, "infra/compose backup-service");
    }

    assert!(
        strings(&svc["networks"])
            .iter()
            .any(|n| n == "valerix-network"),
        "backup-service is on valerix-network"
    );
    assert!(compose["networks"]["valerix-network"].is_mapping());

    // ./backups at /backups (as in the seed), the config read-only.
    let volumes = strings(&svc["volumes"]);
    let volume = |target: &str| {
        volumes
            .iter()
            .find_map(|v| {
                let (source, rest) = v.rsplit_once(&format!(":{target}"))?;
                Some((compose_default(source).to_string(), rest.to_string()))
            })
            .unwrap_or_else(|| panic!("nothing mounted at {target}: {volumes:?}"))
    };
    assert_eq!(volume("/backups").0, "./backups");
    let (config, mode) = volume(CONFIG_PATH);
    assert_eq!(mode, ":ro", "the config is mounted read-only");
    assert_eq!(config, "./infra/compose/valerix-backup.toml");
    assert!(repo().join(&config).is_file());

    // Secrets only from the env file: git-ignored, with an example that sets
    // every password_env of the config.
    let env_files = strings(&svc["env_file"]);
    assert_eq!(env_files.len(), 1);
    let env_file = compose_default(&env_files[0]).to_string();
    let env_name = name_of(Path::new(&env_file));
    let ignored = read("infra/compose/.gitignore");
    assert!(
        ignored.lines().any(|l| l.trim() == env_name),
        "{env_name} is not git-ignored"
    );
    let example = read(&format!("{}.example", env_file.trim_start_matches("./")));
    let config = toml_table(&read("infra/compose/valerix-backup.toml"), "compose config");
    for db in config["database"].as_array().unwrap() {
        let var = db["password_env"].as_str().unwrap();
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{var}="))),
            "{var} is not in {env_file}.example"
        );
    }
    if let Some(env) = svc["environment"].as_mapping() {
        for (k, v) in env {
            let k = s(k);
            let secret = ["PASSWORD", "CONNECTION_STRING", "SECRET", "TOKEN", "KEY"]
                .iter()
                .any(|w| k.contains(w));
            assert!(
                !secret || v.as_str().is_some_and(|v| v.starts_with("${")),
                "{k} is inline in docker-compose.yml"
            );
        }
    }

    let test = strings(&svc["healthcheck"]["test"]).join(" ");
    assert!(
        test.contains("/healthz") && test.contains(&PORT.to_string()),
        "the healthcheck asks /healthz: {test}"
    );
}

/// A Dockerfile as instructions: continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

fn arg_default<'a>(instructions: &'a [(String, String)], name: &str) -> Option<&'a str> {
    instructions.iter().find_map(|(op, rest)| {
        (op == "ARG")
            .then(|| rest.strip_prefix(name)?.strip_prefix('='))
            .flatten()
    })
}

fn expand(text: &str, instructions: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for name in ["RUST_VERSION", "PG_MAJOR"] {
        if let Some(value) = arg_default(instructions, name) {
            out = out
                .replace(&format!("${{{name}}}"), value)
                .replace(&format!("${name}"), value);
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_a_release_and_runs_the_agent_unprivileged() {
    let all = dockerfile();
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "a multi-stage build");
    let builder = &all[stages[0]..stages[1]];
    let runtime = &all[*stages.last().unwrap()..];

    // Builder: the Rust of Cargo.toml's rust-version or newer, bookworm.
    let from = expand(&builder[0].1, &all);
    let image = from.split_whitespace().next().unwrap();
    let version = image
        .strip_prefix("rust:")
        .and_then(|v| v.strip_suffix("-bookworm"))
        .unwrap_or_else(|| panic!("builder is {image}, not rust:<version>-bookworm"));
    let cargo = toml_table(&read("Cargo.toml"), "Cargo.toml");
    let rust_version = cargo["package"]["rust-version"].as_str().unwrap();
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        parse(version)[..2] >= parse(rust_version)[..2],
        "builder Rust {version} is older than rust-version {rust_version}"
    );
    assert!(
        builder
            .iter()
            .any(|(op, r)| op == "RUN" && r.contains("cargo build --release --locked")),
        "the builder runs cargo build --release --locked"
    );

    // Runtime: Debian bookworm slim with PostgreSQL 15's client tools.
    assert_eq!(
        runtime[0].1.split_whitespace().next(),
        Some("debian:bookworm-slim")
    );
    let runs = runtime
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, r)| expand(r, &all))
        .collect::<Vec<_>>()
        .join("\n");
    for package in ["postgresql-client-15", "ca-certificates"] {
        assert!(runs.contains(package), "the runtime installs {package}");
    }

    let last = |op: &str| {
        runtime
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("no {op} in the runtime stage"))
    };
    let user = last("USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "root" && uid != "0",
        "the runtime runs as {user}, not as root"
    );
    assert_eq!(uid, "10001");
    assert_eq!(last("ENTRYPOINT"), r#"["valerix-backup"]"#);
    assert_eq!(last("CMD"), r#"["agent"]"#);
    assert!(
        last("EXPOSE")
            .split_whitespace()
            .any(|p| p == PORT.to_string() || p == format!("{PORT}/tcp"))
    );
    let health = last("HEALTHCHECK");
    assert!(
        health.contains("/healthz") && health.contains(&PORT.to_string()),
        "{health}"
    );
    assert!(last("VOLUME").contains("/backups"));
    assert!(
        runtime
            .iter()
            .any(|(op, r)| op == "ENV"
                && r.contains(&format!("VALERIX_BACKUP_CONFIG={CONFIG_PATH}"))),
        "ENV VALERIX_BACKUP_CONFIG={CONFIG_PATH}"
    );

    // The image's default command is one the binary accepts.
    let cmd: Vec<String> = serde_json::from_str(last("CMD")).unwrap();
    assert_cli_accepts(&cmd, "Dockerfile CMD");

    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .collect();
    for dir in ["target", ".tools", "backups"] {
        assert!(
            ignored.iter().any(|l| l == dir),
            ".dockerignore does not skip {dir}/"
        );
    }
}

#[test]
fn systemd_units_run_the_agent_and_its_schedule() {
    let dir = repo().join("infra/systemd");
    let units: BTreeMap<String, _> = files_in("infra/systemd", &["service", "timer"])
        .into_iter()
        .map(|p| (name_of(&p), unit(&p)))
        .collect();

    for (name, u) in units.iter().filter(|(n, _)| n.ends_with(".service")) {
        let exec = unit_value(u, "Service", "ExecStart");
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some(BIN), "{name}: ExecStart runs {BIN}");
        let argv: Vec<String> = words.map(str::to_string).collect();
        assert_eq!(argv.first().map(String::as_str), Some("agent"), "{name}");
        assert_eq!(unit_value(u, "Service", "User"), "valerix-backup", "{name}");
        assert_eq!(
            unit_value(u, "Service", "EnvironmentFile"),
            "/etc/valerix-backup/env",
            "{name}"
        );
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ReadWritePaths", "/var/lib/valerix-backup"),
        ] {
            assert_eq!(unit_value(u, "Service", key), value, "{name}: {key}");
        }
        if argv.iter().any(|a| a == "%i") {
            for (job, _, _) in JOBS {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| {
                        if a == "%i" {
                            job.to_string()
                        } else {
                            a.clone()
                        }
                    })
                    .collect();
                assert_cli_accepts(&argv, &format!("infra/systemd/{name} ({job})"));
            }
        } else {
            assert_cli_accepts(&argv, &format!("infra/systemd/{name}"));
        }
    }

    let agent = &units["valerix-backup-agent.service"];
    assert_eq!(unit_value(agent, "Service", "Restart"), "on-failure");
    let template = &units["valerix-backup@.service"];
    assert!(unit_value(template, "Service", "ExecStart").contains("agent --once %i"));
    assert_eq!(unit_value(template, "Service", "Type"), "oneshot");

    // One timer per job, at the agent's schedule, catching up missed slots.
    for (job, _, cron) in JOBS {
        let name = format!("valerix-backup-{job}.timer");
        let timer = units
            .get(&name)
            .unwrap_or_else(|| panic!("no {}", dir.join(&name).display()));
        assert_eq!(
            unit_value(timer, "Timer", "Unit"),
            format!("valerix-backup@{job}.service")
        );
        assert_eq!(unit_value(timer, "Timer", "Persistent"), "true", "{name}");
        assert_eq!(
            unit_value(timer, "Timer", "OnCalendar"),
            on_calendar(cron),
            "{name}: not the agent's \"{cron}\""
        );
        assert_eq!(unit_value(timer, "Install", "WantedBy"), "timers.target");
    }
    let timers = units.keys().filter(|n| n.ends_with(".timer")).count();
    assert_eq!(timers, JOBS.len(), "a timer for each job and no other");
}

#[test]
fn the_cron_translation_is_right() {
    assert_eq!(on_calendar("0 2 * * *"), "*-*-* 02:00:00 UTC");
    assert_eq!(on_calendar("30 3 * * *"), "*-*-* 03:30:00 UTC");
    assert_eq!(on_calendar("0 1 * * SUN"), "Sun *-*-* 01:00:00 UTC");
    assert_eq!(on_calendar("0 4 * * SUN#1"), "Sun *-*-01..07 04:00:00 UTC");
    assert_eq!(
        script_invocations("if x; then exit 0; fi\nexec valerix-backup agent --once drill"),
        [vec!["agent", "--once", "drill"]]
    );
    assert_eq!(compose_default("${X:-./backups}"), "./backups");
    assert_eq!(compose_default("./backups"), "./backups");
}

// Immutable copies: infra/bicep/storage.bicep and infra/terraform/storage.tf
// enable blob versioning and version-level immutability, and ship the same
// two data-plane roles: the agent's without any delete, the pruner's with.

const BLOBS: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs";

/// The text of the block that starts at `head`, up to the next top-level
/// `resource` (or the end).
fn block<'a>(text: &'a str, head: &str) -> &'a str {
    let start = text
        .find(head)
        .unwrap_or_else(|| panic!("no {head:?} in the file"));
    let rest = &text[start + head.len()..];
    let end = rest.find("\nresource ").unwrap_or(rest.len());
    &text[start..start + head.len() + end]
}

/// The Microsoft.Storage action strings of a role block, the shared names
/// (`blobs`, the read actions) expanded.
fn storage_actions(block: &str, blobs_var: &str, read_var: &str) -> BTreeSet<String> {
    let text = block.replace(blobs_var, BLOBS);
    let mut out: BTreeSet<String> = text
        .split(['\'', '"'])
        .filter(|s| s.starts_with("Microsoft.Storage/"))
        .map(str::to_string)
        .collect();
    if text.contains(read_var) {
        out.insert(format!("{BLOBS}/read"));
        out.insert(format!("{BLOBS}/tags/read"));
    }
    out
}

#[test]
fn infra_enables_immutable_copies_and_ships_a_role_without_delete() {
    let bicep = read("infra/bicep/storage.bicep");
    let tf = read("infra/terraform/storage.tf");
    assert!(bicep.contains("isVersioningEnabled: true"));
    let container = block(&bicep, "resource container ");
    assert!(
        container
            .contains("immutableStorageWithVersioning: {\n      enabled: versionLevelImmutability"),
        "{container}"
    );
    assert!(bicep.contains("param versionLevelImmutability bool = true"));
    assert!(tf.contains("versioning_enabled = true"));
    let account = block(&tf, "resource \"azurerm_storage_account\" \"backups\"");
    assert!(
        account.contains("dynamic \"immutability_policy\""),
        "{account}"
    );
    assert!(
        account.contains("state                         = \"Disabled\""),
        "{account}"
    );
    assert!(
        read("infra/terraform/variables.tf").contains("variable \"version_level_immutability\"")
    );

    let actions = |bicep_head: &str, tf_head: &str| {
        let b = storage_actions(block(&bicep, bicep_head), "${blobs}", "readActions");
        let t = storage_actions(
            block(&tf, tf_head),
            "${local.blobs}",
            "local.blob_read_actions",
        );
        assert_eq!(b, t, "{bicep_head} and {tf_head} differ");
        b
    };
    let agent = actions(
        "resource agentRole ",
        "resource \"azurerm_role_definition\" \"blob_agent\"",
    );
    let pruner = actions(
        "resource prunerRole ",
        "resource \"azurerm_role_definition\" \"blob_pruner\"",
    );
    let container_read =
        "Microsoft.Storage/storageAccounts/blobServices/containers/read".to_string();
    let want_agent: BTreeSet<String> = [
        "read",
        "tags/read",
        "write",
        "add/action",
        "tags/write",
        "immutableStorage/runAsSuperUser/action",
    ]
    .iter()
    .map(|a| format!("{BLOBS}/{a}"))
    .chain([container_read.clone()])
    .collect();
    let want_pruner: BTreeSet<String> = ["read", "tags/read", "tags/write", "delete"]
        .iter()
        .map(|a| format!("{BLOBS}/{a}"))
        .chain([container_read])
        .collect();
    assert_eq!(agent, want_agent);
    assert_eq!(pruner, want_pruner);
    // Nothing that deletes, in any form, for the agent.
    assert!(
        agent.iter().all(|a| !a.to_lowercase().contains("delete")),
        "{agent:?}"
    );
    // The agent is assigned the custom role, no longer Storage Blob Data Owner.
    let owner = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
    assert!(!bicep.contains(owner) && !tf.contains(owner));
    assert!(block(&bicep, "resource agentBlobAccess ").contains("roleDefinitionId: agentRole.id"));
    assert!(
        block(
            &tf,
            "resource \"azurerm_role_assignment\" \"agent_blob_access\""
        )
        .contains("azurerm_role_definition.blob_agent.role_definition_resource_id")
    );
}

// The optional cross-region read replica of infra/bicep/postgres.bicep and
// infra/terraform/postgres.tf (for `valerix-backup failover`): off by
// default, and when on, a replica (createMode Replica) of the server.

/// `text` with every run of spaces made one space (Terraform aligns `=`).
fn squeezed(text: &str) -> String {
    let mut out = String::new();
    for part in text.split(' ').filter(|p| !p.is_empty()) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

#[test]
fn infra_can_create_a_cross_region_replica_off_by_default() {
    let bicep = read("infra/bicep/postgres.bicep");
    assert!(
        bicep.contains("param replicaLocation string = ''"),
        "off by default"
    );
    let replica = block(&bicep, "resource replica ");
    for want in [
        "= if (!empty(replicaLocation)) {",
        "location: replicaLocation",
        "createMode: 'Replica'",
        "sourceServerResourceId: server.id",
    ] {
        assert!(replica.contains(want), "{want:?} not in {replica}");
    }
    // The primary itself stays a plain new server with geo-redundant backup.
    let server = block(&bicep, "resource server ");
    assert!(
        server.contains("createMode: 'Default'")
            && server.contains("geoRedundantBackup: 'Enabled'")
    );

    let tf = squeezed(&read("infra/terraform/postgres.tf"));
    let replica = block(
        &tf,
        "resource \"azurerm_postgresql_flexible_server\" \"replica\"",
    );
    for want in [
        "count = var.postgres_replica_location == null ? 0 : 1",
        "location = var.postgres_replica_location",
        "create_mode = \"Replica\"",
        "source_server_id = azurerm_postgresql_flexible_server.valerix.id",
        "prevent_destroy = true",
    ] {
        assert!(replica.contains(want), "{want:?} not in {replica}");
    }
    let vars = squeezed(&read("infra/terraform/variables.tf"));
    let var = block(&vars, "variable \"postgres_replica_location\"");
    let var = &var[..var.find("\n}").unwrap()];
    assert!(var.contains("default = null"), "off by default: {var}");
}

// drill region deletes the servers it creates; the geo-restore role never
// deletes anything. Only the drill role carries the delete right, and it is
// assigned on the drill's own resource group, off unless that group is named.

#[test]
fn only_the_drill_role_deletes_servers_and_only_on_the_drill_group() {
    const DELETE: &str = "Microsoft.DBforPostgreSQL/flexibleServers/delete";
    let bicep = read("infra/bicep/roles.bicep");
    assert_eq!(bicep.matches(DELETE).count(), 1, "one role deletes servers");
    assert!(!block(&bicep, "resource geoRestorer ").contains(DELETE));
    let role = block(&bicep, "resource driller ");
    assert!(role.contains(DELETE) && role.contains("if (!empty(drillResourceGroup))"));
    let assign = block(&bicep, "module drillInDrillGroup ");
    assert!(
        assign.contains("if (!empty(drillResourceGroup))"),
        "{assign}"
    );
    assert!(
        assign.contains(": drillResourceGroup)") && assign.contains("roleDefinitionId: drillerId")
    );
    assert!(bicep.contains("param drillResourceGroup string = ''"));

    let tf = read("infra/terraform/roles.tf");
    assert_eq!(tf.matches(DELETE).count(), 1, "one role deletes servers");
    assert!(!block(&tf, "resource \"azurerm_role_definition\" \"geo_restore\"").contains(DELETE));
    let role = block(&tf, "resource \"azurerm_role_definition\" \"drill\"");
    assert!(
        role.contains(DELETE)
            && role.contains("count       = var.drill_resource_group_name == \"\" ? 0 : 1")
    );
    let assign = block(&tf, "resource \"azurerm_role_assignment\" \"drill\"");
    assert!(
        assign.contains("resourceGroups/${var.drill_resource_group_name}\""),
        "{assign}"
    );
    assert!(assign.contains("azurerm_role_definition.drill[0]"));
    let vars = read("infra/terraform/variables.tf");
    let var = &vars[vars.find("variable \"drill_resource_group_name\"").unwrap()..];
    assert!(var[..var.find("\n}").unwrap()].contains("default     = \"\""));
}

/// `failover` PATCHes the replica: the geo-restore role is assigned on the
/// replica server alone, and only when there is one.
#[test]
fn the_failover_right_is_on_the_replica_alone() {
    let bicep = read("infra/bicep/roles.bicep");
    let m = block(&bicep, "module promoteReplica ");
    assert!(m.contains("if (!empty(replicaServerId))"), "{m}");
    assert!(m.contains("modules/server-role-assignment.bicep") && m.contains("geoRestorer.id"));
    assert!(bicep.contains("param replicaServerId string = ''"));
    let module = read("infra/bicep/modules/server-role-assignment.bicep");
    assert!(module.contains("scope: server") && module.contains("flexibleServers@"));
    let tf = read("infra/terraform/roles.tf");
    let a = block(&tf, "resource \"azurerm_role_assignment\" \"failover\"");
    assert!(a.contains("count              = var.postgres_replica_location == null ? 0 : 1"));
    assert!(a.contains("scope              = azurerm_postgresql_flexible_server.replica[0].id"));
    assert!(a.contains("azurerm_role_definition.geo_restore.role_definition_resource_id"));
}

// ---------------------------------------------------------------------------
// The image, built and run. Slow (minutes cold, about one warm): the release
// build inside the image is most of it.

/// The tag scripts/image-test.sh builds.
const TEST_IMAGE: &str = "localhost/valerix-backup:test";

/// scripts/image-test.sh, run once for this binary: its JSON summary, or
/// None when podman cannot run here at all (the script's exit 77).
fn image_test() -> Option<&'static serde_json::Value> {
    static RESULT: std::sync::OnceLock<Result<Option<serde_json::Value>, String>> =
        std::sync::OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let summary = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new(repo().join("scripts/image-test.sh"))
            .env("IMAGE_TEST_SUMMARY", summary.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{log}");
        match out.status.code() {
            Some(0) => {
                let text = std::fs::read_to_string(summary.path()).unwrap();
                Ok(Some(
                    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?,
                ))
            }
            Some(77) => Ok(None),
            code => Err(format!("scripts/image-test.sh exited {code:?}:\n{log}")),
        }
    });
    match result {
        Ok(summary) => {
            if summary.is_none() {
                eprintln!("SKIPPED: podman cannot run here (see the script's line above)");
            }
            summary.as_ref()
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_image_builds_from_the_dockerfile_and_backs_up_as_uid_10001() {
    let Some(summary) = image_test() else { return };
    // The script checked the run by content (dumps restored and compared,
    // blobs hashed); what it measured must also be what the issue asked.
    let mb = |key: &str| summary[key].as_f64().unwrap() / 1e6;
    assert!(
        mb("binary_bytes") < 40.0,
        "the binary is not stripped: {summary}"
    );
    assert!(mb("image_bytes") < 400.0, "the image grew: {summary}");
    assert!(
        summary["commit"].as_str().is_some_and(|c| c.len() >= 12),
        "{summary}"
    );
}

/// The `backup-service` of infra/compose/docker-compose.yml as Compose
/// resolves it: `${VAR:-default}` and `$$` interpolated from `vars`, paths
/// relative to the project directory (the repository).
struct Service {
    image: String,
    command: Vec<String>,
    /// The image's, then env_file's, then `environment:`'s, later ones winning.
    env: BTreeMap<String, String>,
    /// SOURCE:TARGET[:ro]
    volumes: Vec<String>,
    read_only: bool,
    tmpfs: Vec<String>,
    healthcheck: Vec<String>,
}

fn interpolate(text: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').expect("unclosed ${");
            let (name, default) = r[..end].split_once(":-").unwrap_or((&r[..end], ""));
            out.push_str(vars.get(name).map_or(default, |v| v.as_str()));
            rest = &r[end + 1..];
        } else {
            panic!("a bare $ in {text:?}: Compose needs $$ or ${{...}}");
        }
    }
    out + rest
}

fn env_file(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l:?}"));
            let v = v.trim_matches('\'').trim_matches('"');
            (k.to_string(), v.to_string())
        })
        .collect()
}

impl Service {
    fn resolve(image_config: &serde_json::Value, vars: &BTreeMap<&str, String>) -> Service {
        let docs = yaml_docs(&repo().join("infra/compose/docker-compose.yml"));
        let svc = &docs[0]["services"]["backup-service"];
        let i = |v: &Value| interpolate(s(v), vars);
        let project_path = |p: String| match p.strip_prefix("./") {
            Some(rel) => repo().join(rel).display().to_string(),
            None => p,
        };
        let mut env = BTreeMap::new();
        for kv in image_config["Env"].as_array().unwrap() {
            let (k, v) = kv.as_str().unwrap().split_once('=').unwrap();
            env.insert(k.to_string(), v.to_string());
        }
        for file in seq(&svc["env_file"]) {
            env.extend(env_file(Path::new(&project_path(i(file)))));
        }
        for (k, v) in svc["environment"].as_mapping().into_iter().flatten() {
            env.insert(s(k).to_string(), i(v));
        }
        let volumes = seq(&svc["volumes"])
            .iter()
            .map(|v| {
                let v = i(v);
                let (src, target) = v.split_once(':').unwrap();
                format!("{}:{target}", project_path(src.to_string()))
            })
            .collect();
        let mut entry: Vec<String> = image_config["Entrypoint"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| s_json(v).to_string())
            .collect();
        entry.extend(seq(&svc["command"]).iter().map(i));
        Service {
            image: i(&svc["image"]),
            command: entry,
            env,
            volumes,
            read_only: svc["read_only"].as_bool() == Some(true),
            tmpfs: seq(&svc["tmpfs"]).iter().map(i).collect(),
            healthcheck: seq(&svc["healthcheck"]["test"]).iter().map(i).collect(),
        }
    }
}

/// A working container of an image (`buildah from`), its filesystem mounted;
/// removed on drop.
struct Container {
    id: String,
    root: PathBuf,
    config: serde_json::Value,
}

/// `cmd`'s stdout, trimmed; panics unless it succeeds.
fn output_of(cmd: &mut Command) -> String {
    common::sh(cmd).trim().to_string()
}

/// An image's config: User, Env, WorkingDir, Entrypoint, Healthcheck, ...
fn image_config(image: &str) -> serde_json::Value {
    let inspect = output_of(Command::new("podman").args([
        "image",
        "inspect",
        image,
        "--format",
        "{{json .Config}}",
    ]));
    serde_json::from_str(&inspect).unwrap()
}

impl Container {
    fn from(image: &str) -> Container {
        let id = output_of(Command::new("buildah").args(["from", "--pull=never", "-q", image]));
        let root = PathBuf::from(output_of(Command::new("buildah").args(["mount", &id])));
        Container {
            id,
            root,
            config: image_config(image),
        }
    }

    /// `argv` in the container as `svc` runs it (tests/tools/container-run.sh).
    fn command(&self, svc: &Service, argv: &[String]) -> Command {
        let mut cmd = Command::new(repo().join("tests/tools/container-run.sh"));
        cmd.arg(&self.root)
            .arg(s_json(&self.config["User"]))
            .arg(s_json(&self.config["WorkingDir"]));
        if svc.read_only {
            cmd.arg("--read-only");
        }
        for t in &svc.tmpfs {
            cmd.args(["--tmpfs", t]);
        }
        for v in &svc.volumes {
            cmd.args(["--volume", v]);
        }
        cmd.arg("--").args(argv).env_clear().envs(&svc.env);
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    /// The service's healthcheck (`["CMD", ...]`) in the container.
    fn healthy(&self, svc: &Service) -> bool {
        assert_eq!(svc.healthcheck[0], "CMD");
        let mut cmd = self.command(svc, &svc.healthcheck[1..]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.status().unwrap().success()
    }
}

fn s_json(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["umount", &self.id]).output();
        let _ = Command::new("buildah").args(["rm", &self.id]).output();
    }
}

/// A child killed if the test fails while it runs (the agent would hold
/// port 9187 for every later run).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_compose_service_starts_from_the_image_and_its_backups_restore() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if image_test().is_none() {
        return;
    }
    // The image and port 9187 are the machine's: one user at a time (the
    // lock scripts/image-test.sh takes).
    let lock = std::fs::File::create("/tmp/valerix-image-test.lock").unwrap();
    lock.lock().unwrap();
    let sb = common::Sandbox::with_scale(20);
    let az = common::azurite::Azurite::start();
    az.create_container("database-backups");
    let work = sb.work.path();

    // The Compose stack's own config and env file, the hosts on
    // valerix-network pointed at the sandbox (the network is the host's),
    // as scripts/image-test.sh runs the image.
    let config = read("infra/compose/valerix-backup.toml")
        .replace("host = \"order-db\"", "host = \"127.0.0.1\"")
        .replace("host = \"inventory-db\"", "host = \"127.0.0.1\"")
        .replace("port = 5432", &format!("port = {}", sb.pg.port));
    std::fs::write(work.join("compose.toml"), config).unwrap();
    let mut secrets = String::new();
    for line in read("infra/compose/valerix-backup.env.example").lines() {
        let line = match line.split_once('=') {
            Some(("ORDER_DB_PASSWORD", _)) => format!("ORDER_DB_PASSWORD={}", common::ORDER_PW),
            Some(("INVENTORY_DB_PASSWORD", _)) => {
                format!("INVENTORY_DB_PASSWORD={}", common::INVENTORY_PW)
            }
            Some(("AZURE_STORAGE_CONNECTION_STRING", _)) => {
                format!("AZURE_STORAGE_CONNECTION_STRING={}", az.conn_string())
            }
            _ => line.to_string(),
        };
        secrets.push_str(&line);
        secrets.push('\n');
    }
    std::fs::write(work.join("compose.env"), secrets).unwrap();
    std::fs::set_permissions(work.join("compose.env"), PermissionsExt::from_mode(0o600)).unwrap();
    // The README's `install -d -m 0700 -o 10001 -g 10001 backups`.
    let backups = sb.backup_dir();
    std::fs::create_dir(&backups).unwrap();
    std::fs::set_permissions(&backups, PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&backups, Some(10001), Some(10001)).unwrap();
    // The container's uid reaches the bind-mounted config through the work dir.
    std::fs::set_permissions(work, PermissionsExt::from_mode(0o755)).unwrap();

    let vars = BTreeMap::from([
        ("VALERIX_BACKUP_IMAGE", TEST_IMAGE.to_string()),
        (
            "VALERIX_BACKUP_ENV_FILE",
            work.join("compose.env").display().to_string(),
        ),
        ("VALERIX_BACKUP_DIR", backups.display().to_string()),
        (
            "VALERIX_BACKUP_CONFIG_FILE",
            work.join("compose.toml").display().to_string(),
        ),
    ]);
    let svc = Service::resolve(&image_config(TEST_IMAGE), &vars);
    assert_eq!(svc.image, TEST_IMAGE);
    assert!(svc.read_only, "the service runs on a read-only root");
    let ctr = Container::from(&svc.image);

    // `docker compose up`: the agent on a read-only root, healthy by the
    // service's own healthcheck within its start period.
    assert!(!ctr.healthy(&svc), "healthy with no agent running");
    let agent_log = std::fs::File::create(work.join("agent.log")).unwrap();
    let mut agent = KillOnDrop(
        ctr.command(&svc, &svc.command)
            .stdout(agent_log.try_clone().unwrap())
            .stderr(agent_log)
            .spawn()
            .unwrap(),
    );
    let agent = &mut agent.0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ctr.healthy(&svc) {
        let log = || std::fs::read_to_string(work.join("agent.log")).unwrap();
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the agent ended: {}",
            log()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never healthy: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // `docker compose stop`: SIGTERM, a clean stop within stop_grace_period.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(
        matches!(status.code(), Some(0 | 130)),
        "{status}: {}",
        std::fs::read_to_string(work.join("agent.log")).unwrap()
    );
    assert!(!ctr.healthy(&svc), "still healthy after the agent stopped");

    // `docker compose run --rm backup-service agent --once backup`.
    let mut once = svc.command[..1].to_vec();
    once.extend(["agent", "--once", "backup"].map(String::from));
    let out = ctr.command(&svc, &once).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // By content: 0600 files of uid 10001, which the host's binary verifies
    // and restores to the source's data, and the same bytes in Azurite.
    let dumps = sb.dumps();
    assert_eq!(dumps.len(), 2, "{dumps:?}");
    for dump in &dumps {
        let meta = std::fs::metadata(dump).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid()),
            (0o600, 10001),
            "{}",
            dump.display()
        );
        let name = dump.file_name().unwrap().to_str().unwrap();
        let blob = az
            .list("database-backups", "")
            .into_iter()
            .find(|b| b["name"].as_str().unwrap().ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("{name} is not in Azurite"));
        let remote = az.py_reader(&["sha256", "database-backups", blob["name"].as_str().unwrap()]);
        assert_eq!(remote.trim(), common::sha256_file(dump), "{name}");
    }
    sb.run(&["verify"]).ok();
    sb.run(&["restore", "latest", "order", "--into", "order_from_image"])
        .ok();
    assert_eq!(
        sb.pg.fingerprint("order_from_image"),
        sb.pg.fingerprint("order_db")
    );
}
