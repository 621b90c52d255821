//! A private fake of Azure Resource Manager and of Microsoft Entra ID's token
//! endpoint per test: tests/tools/fake_arm.py (Python standard library only)
//! over HTTPS, with a throwaway CA from scripts/test-ca.sh that the program
//! trusts only through SSL_CERT_FILE. One process serves both, so the
//! program gets `AZURE_AUTHORITY_HOST` and its Resource Manager endpoint
//! set to the same `https://127.0.0.1:PORT`, and its real
//! azure_identity::ClientSecretCredential and azure_core bearer-token and
//! retry policies run against it.
//!
//! The scenario is a JSON state (see the docstring of `load_state` in
//! fake_arm.py for every key): the existing servers (`"rg/name": {location,
//! geoRedundantBackup, ...}`), how many polls an operation stays
//! `InProgress` (`polls`), `Retry-After` (`retry_after`), how many GETs a
//! restored server stays `Provisioning` (`ready_after`), and the faults
//! (`fail_targets`, `throttle_targets`, `forbidden_resource_groups`, ...).
//! [`FakeArm::start`] fills in [`SUBSCRIPTION`], [`TENANT`] and
//! [`CLIENT_ID`] when the state leaves them out; [`scenario`] is a ready
//! one. Every request is a JSON line in the log ([`FakeArm::requests`]):
//! method, path, headers (all but Authorization), `auth` ("valid",
//! "missing", "invalid", "expired", ...), body, status, error code, the
//! Retry-After/Location/Azure-AsyncOperation headers sent, the JSON answer,
//! and `t`, a monotonic clock in seconds, so a test can measure the gaps
//! between polls.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::repo;

/// The one subscription that exists.
pub const SUBSCRIPTION: &str = "5e2f8a91-3c4d-4b6e-9f1a-7d8c9b0a1e2f";
/// The Entra ID directory (tenant) that issues tokens.
pub const TENANT: &str = "3f9c1d2e-7a4b-4c8d-9e0f-5a6b7c8d9e0f";
/// The app registration (service principal) that logs in.
pub const CLIENT_ID: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
/// Its client secret: shaped like Entra's (`~`, which form encoding
/// escapes), and a string no other text contains, so a test can look for it.
pub const CLIENT_SECRET: &str = "Vx8Q~fakeARM.7c1e_Sec-ret~not.real";
/// The flexibleServers api-version the fake accepts by default.
pub const API_VERSION: &str = "2025-08-01";
/// The Microsoft.Storage api-version for management policies.
pub const STORAGE_API_VERSION: &str = "2023-05-01";
/// The locations api-version (Microsoft.Resources).
pub const LOCATIONS_API_VERSION: &str = "2022-12-01";

/// [`scenario`]'s source server: its resource group, name and region
/// (paired with [`PAIRED_REGION`]), geo-redundant backup enabled.
pub const SOURCE_RG: &str = "rg-valerix";
pub const SOURCE_SERVER: &str = "valerix-postgres";
pub const SOURCE_REGION: &str = "eastus";
pub const PAIRED_REGION: &str = "westus";
/// [`scenario`]'s storage account (for management policies).
pub const STORAGE_ACCOUNT: &str = "valerixbackups";

/// A ready scenario: the source server (geo-redundant backup on, 30 days),
/// a second one without geo-redundant backup (`valerix-nogeo`, same group
/// and region), the storage account, 2 polls `InProgress`, `Retry-After: 1`,
/// 2 GETs `Provisioning` after success. Change or add keys before
/// [`FakeArm::start`].
pub fn scenario() -> Value {
    json!({
        "subscription": SUBSCRIPTION,
        "tenant": TENANT,
        "client_id": CLIENT_ID,
        "servers": {
            format!("{SOURCE_RG}/{SOURCE_SERVER}"): {
                "location": SOURCE_REGION,
                "geoRedundantBackup": "Enabled",
                "backupRetentionDays": 30,
                "version": "16",
            },
            format!("{SOURCE_RG}/valerix-nogeo"): {
                "location": SOURCE_REGION,
                "geoRedundantBackup": "Disabled",
            },
        },
        "storage_accounts": [format!("{SOURCE_RG}/{STORAGE_ACCOUNT}")],
        "polls": 2,
        "retry_after": 1,
        "ready_after": 2,
    })
}

/// `/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/
/// Microsoft.DBforPostgreSQL/flexibleServers/{name}`.
pub fn server_id(rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/\
         Microsoft.DBforPostgreSQL/flexibleServers/{name}"
    )
}

/// The resource id of the storage account's (only) management policy.
pub fn management_policy_id(rg: &str, account: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/\
         Microsoft.Storage/storageAccounts/{account}/managementPolicies/default"
    )
}

/// scripts/test-ca.sh DIR: a throwaway CA and a server certificate for
/// 127.0.0.1 (tests/entra.rs uses it too).
pub fn make_ca(dir: &Path) {
    let out = Command::new(repo().join("scripts/test-ca.sh"))
        .arg(dir)
        .output()
        .expect("run scripts/test-ca.sh");
    assert!(
        out.status.success(),
        "scripts/test-ca.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The port a test tool prints as `listening on PORT` once it accepts
/// connections. Read in a thread (that then drains stdout to its end), so
/// a tool that hangs fails the test instead of stalling it; one that does
/// not start is killed and its stderr (the file `stderr`) shown.
pub fn listening_port(child: &mut Child, tool: &str, stderr: &Path) -> u16 {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok());
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{tool} did not start ({line:?}): {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
    };
    port
}

/// The running fake; SIGTERM and its directory removed when dropped.
pub struct FakeArm {
    pub port: u16,
    /// Under /tmp: ca.pem, server.pem/.key, state.json, arm.log,
    /// fake_arm.stderr. Outside any test's work directory (the log holds the
    /// client secret, in the token requests' bodies).
    pub dir: PathBuf,
    /// The CA certificate to trust (SSL_CERT_FILE).
    pub ca: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl FakeArm {
    /// Makes a CA, writes `state` (with the constants filled in where
    /// missing), starts tests/tools/fake_arm.py on a free port with
    /// [`CLIENT_SECRET`], and returns once it accepts connections.
    pub fn start(state: Value) -> FakeArm {
        FakeArm::start_with_secret(state, CLIENT_SECRET)
    }

    /// As [`FakeArm::start`], the app's real secret being `secret`.
    pub fn start_with_secret(state: Value, secret: &str) -> FakeArm {
        FakeArm::launch(state, secret, None)
    }

    /// As [`FakeArm::start`], with `other`'s CA and certificate, so that a
    /// program trusting one trusts both (a second host to which a token
    /// must never go).
    pub fn start_sharing_ca(state: Value, other: &FakeArm) -> FakeArm {
        FakeArm::launch(state, CLIENT_SECRET, Some(&other.dir))
    }

    fn launch(mut state: Value, secret: &str, certs_from: Option<&Path>) -> FakeArm {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/vxb-arm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        match certs_from {
            Some(from) => {
                for f in ["ca.pem", "server.pem", "server.key"] {
                    std::fs::copy(from.join(f), dir.join(f)).unwrap();
                }
            }
            None => make_ca(&dir),
        }
        let obj = state
            .as_object_mut()
            .expect("the fake's state is a JSON object");
        for (k, v) in [
            ("subscription", SUBSCRIPTION),
            ("tenant", TENANT),
            ("client_id", CLIENT_ID),
        ] {
            obj.entry(k).or_insert_with(|| json!(v));
        }
        std::fs::write(
            dir.join("state.json"),
            serde_json::to_string_pretty(&state).unwrap(),
        )
        .unwrap();
        let log = dir.join("arm.log");
        let err = std::fs::File::create(dir.join("fake_arm.stderr")).unwrap();
        let mut child = Command::new("python3")
            .arg(repo().join("tests/tools/fake_arm.py"))
            .arg("--cert")
            .arg(dir.join("server.pem"))
            .arg("--key")
            .arg(dir.join("server.key"))
            .arg("--state")
            .arg(dir.join("state.json"))
            .args(["--port", "0", "--log"])
            .arg(&log)
            .env("FAKE_ARM_CLIENT_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start tests/tools/fake_arm.py with python3");
        let port = listening_port(&mut child, "fake_arm.py", &dir.join("fake_arm.stderr"));
        FakeArm {
            port,
            ca: dir.join("ca.pem"),
            log,
            dir,
            child,
        }
    }

    /// `https://127.0.0.1:PORT`: both the Resource Manager endpoint and the
    /// authority host.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The environment of a program that logs in with the client secret:
    /// SSL_CERT_FILE, AZURE_AUTHORITY_HOST, AZURE_TENANT_ID, AZURE_CLIENT_ID,
    /// AZURE_CLIENT_SECRET.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("SSL_CERT_FILE", self.ca.display().to_string()),
            ("AZURE_AUTHORITY_HOST", self.endpoint()),
            ("AZURE_TENANT_ID", TENANT.to_string()),
            ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The log: one JSON object per request or failed connection, in order
    /// (`seq` counts from 1). A line still being written is left out.
    pub fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("fake_arm.py log line {l:?}: {e}"))
            })
            .collect()
    }

    /// Every request (token and Resource Manager), in order.
    pub fn requests(&self) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e.get("method").is_some())
            .collect()
    }

    /// The token requests.
    pub fn token_requests(&self) -> Vec<Value> {
        self.of_kind("token")
    }

    /// The Resource Manager requests.
    pub fn arm_requests(&self) -> Vec<Value> {
        self.of_kind("arm")
    }

    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect()
    }

    /// Requests with this method whose path (without the query) ends with
    /// `suffix`, compared case-insensitively, e.g.
    /// `requests_to("GET", "/flexibleServers/valerix-dr")` or
    /// `requests_to("GET", "")` for all GETs.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Value> {
        let suffix = suffix.to_lowercase();
        self.requests()
            .into_iter()
            .filter(|e| {
                let path = e["path"].as_str().unwrap_or_default();
                let path = path.split('?').next().unwrap().to_lowercase();
                e["method"] == method && path.ends_with(&suffix)
            })
            .collect()
    }

    /// Connections that failed before a request (a client that refused the
    /// certificate).
    pub fn failed_connections(&self) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e["event"] == "connection failed")
            .collect()
    }

    /// What the fake wrote to stderr (empty unless it crashed).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("fake_arm.stderr")).unwrap_or_default()
    }
}

/// SIGTERM (then SIGKILL after 5 s), and the directory removed, unless
/// VXB_KEEP_FAKE_ARM is set (to read the log after a failed test).
impl Drop for FakeArm {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::env::var_os("VXB_KEEP_FAKE_ARM").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
