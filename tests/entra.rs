//! The Entra ID path end to end, with real parts and no mocks in the program:
//! `[azure] auth = "client-secret"` makes valerix-backup build
//! azure_identity's ClientSecretCredential from the standard AZURE_TENANT_ID,
//! AZURE_CLIENT_ID and AZURE_CLIENT_SECRET; AZURE_AUTHORITY_HOST points it at
//! tests/tools/fake_entra.py, a stand-in for Entra ID's token endpoint over
//! HTTPS; the token it gets goes as a Bearer token to Azurite running over
//! HTTPS with `--oauth basic`. TLS is real too: a throwaway CA from
//! scripts/test-ca.sh, which the program trusts only through SSL_CERT_FILE
//! (rustls loads its roots from there) and Python's reader through
//! REQUESTS_CA_BUNDLE.
//!
//! What the program stored is checked with Microsoft's Python SDK
//! (tests/tools/blob_reader.py, account key over HTTPS), never our client.
//! The faults: a wrong client secret (Entra's AADSTS7000215) and a CA the
//! program does not trust; in every case the secret travels only in the
//! token request's body and never reaches the program's output.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::arm::make_ca;
use common::azurite::Azurite;
use common::{Run, Sandbox, sha256_file};
use serde_json::Value;

const CONTAINER: &str = "database-backups";
const TENANT: &str = "3f9c1d2e-7a4b-4c8d-9e0f-5a6b7c8d9e0f";
const CLIENT_ID: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

/// A client secret that looks like Entra's (`~` included, which form
/// encoding escapes) and that no other text contains.
fn secret() -> String {
    format!("Vx8Q~entra.{}_Sec-ret~not.real", std::process::id())
}

/// The fake token endpoint: tests/tools/fake_entra.py on a free port, with
/// its request log. Stopped (SIGTERM) when dropped.
struct FakeEntra {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl FakeEntra {
    fn start(tls: &Path, secret: &str) -> FakeEntra {
        let log = tls.join("entra.log");
        let err = std::fs::File::create(tls.join("entra.stderr")).unwrap();
        let mut child = Command::new(common::repo().join(".tools/py/bin/python"))
            .arg(common::repo().join("tests/tools/fake_entra.py"))
            .arg("--cert")
            .arg(tls.join("server.pem"))
            .arg("--key")
            .arg(tls.join("server.key"))
            .args(["--tenant", TENANT, "--client-id", CLIENT_ID, "--port", "0"])
            .arg("--log")
            .arg(&log)
            .env("FAKE_ENTRA_CLIENT_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start tests/tools/fake_entra.py");
        // It prints `listening on PORT` once it accepts connections.
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fake_entra.py did not start ({line:?}): {}",
                    std::fs::read_to_string(tls.join("entra.stderr")).unwrap_or_default()
                )
            });
        FakeEntra { child, port, log }
    }

    fn authority(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The log: one JSON object per request (or failed connection).
    fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn requests(&self) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e.get("method").is_some())
            .collect()
    }
}

impl Drop for FakeEntra {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL sandbox, the CA and certificate, the fake Entra ID and
/// Azurite over HTTPS with OAuth, and a config that logs in with a client
/// secret.
struct Entra {
    sb: Sandbox,
    /// ca.pem, server.pem/.key, the token endpoint's log: outside the
    /// sandbox's work directory, which must never hold the secret.
    tls: tempfile::TempDir,
    entra: FakeEntra,
    az: Azurite,
}

impl Entra {
    fn new(scale: u32) -> Entra {
        Entra::with_storage_ca(scale, false)
    }

    /// With `other_ca`, Azurite's certificate comes from a second CA, one
    /// the program is not told to trust (the token endpoint's still is).
    fn with_storage_ca(scale: u32, other_ca: bool) -> Entra {
        let sb = Sandbox::with_scale(scale);
        let tls = tempfile::tempdir().unwrap();
        make_ca(tls.path());
        let entra = FakeEntra::start(tls.path(), &secret());
        let storage_tls = if other_ca {
            let other = tls.path().join("other-ca");
            make_ca(&other);
            other
        } else {
            tls.path().to_path_buf()
        };
        let az = Azurite::start_https(
            &storage_tls.join("server.pem"),
            &storage_tls.join("server.key"),
        );
        let e = Entra { sb, tls, entra, az };
        // Few, short retries: a failure shows in seconds, not minutes.
        let text = format!(
            "{}\n[azure]\ncontainer = \"{CONTAINER}\"\naccount_url = \"{}\"\n\
             auth = \"client-secret\"\nmax_retries = 1\nretry_max_secs = 3\n",
            e.sb.config_text(""),
            e.az.https_endpoint()
        );
        std::fs::write(e.sb.config_path(), text).unwrap();
        e
    }

    fn ca(&self) -> PathBuf {
        self.tls.path().join("ca.pem")
    }

    /// The binary with the client-secret variables, the authority host and
    /// the CA; no connection string, SAS or other login in reach.
    fn command(&self, args: &[&str], secret: &str) -> Command {
        let mut cmd = self.sb.command(args);
        for var in [
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_SAS",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "IDENTITY_ENDPOINT",
            "MSI_ENDPOINT",
            "SSL_CERT_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", secret)
            .env("AZURE_AUTHORITY_HOST", self.entra.authority())
            .env("SSL_CERT_FILE", self.ca());
        cmd
    }

    /// Runs it; also how long it took.
    fn run(&self, cmd: Command) -> (Run, Duration) {
        let t = Instant::now();
        let r = common::run(cmd);
        (r, t.elapsed())
    }

    fn blobs(&self) -> Vec<Value> {
        let out = self
            .az
            .py_reader_https(&self.ca(), &["list", CONTAINER, ""]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON list ({e}): {out}"))
    }
}

/// The secret is nowhere in the program's output.
#[track_caller]
fn no_secret_in(r: &Run, secret: &str) {
    let enc: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(
            !text.contains(secret) && !text.contains(&enc),
            "the client secret is in {name}:\n{text}"
        );
    }
}

/// Every token request carried `secret` in its form body only: not in the
/// request target (path or query), not in a header.
#[track_caller]
fn secret_only_in_bodies(entra: &FakeEntra, secret: &str) {
    let enc: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    for req in entra.requests() {
        let path = req["path"].as_str().unwrap();
        assert_eq!(
            path,
            format!("/{TENANT}/oauth2/v2.0/token"),
            "token request to an unexpected URL: {req}"
        );
        assert_eq!(req["method"], "POST", "{req}");
        let headers = req["headers"].to_string();
        assert!(
            !headers.contains(secret) && !headers.contains(&enc),
            "the secret is in a header: {req}"
        );
        assert_eq!(req["form"]["client_secret"][0], secret, "{req}");
        assert_eq!(req["form"]["grant_type"][0], "client_credentials", "{req}");
        assert_eq!(req["form"]["client_id"][0], CLIENT_ID, "{req}");
        assert_eq!(
            req["form"]["scope"][0], "https://storage.azure.com/.default",
            "{req}"
        );
    }
}

/// No file the program wrote (backups, manifests, state, logs) holds it.
#[track_caller]
fn no_secret_in_files(dir: &Path, secret: &str) {
    let needle = secret.as_bytes();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the client secret is in {}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn client_secret_backup_upload_and_restore_over_https() {
    let e = Entra::new(200);
    let secret = secret();
    let before = e.sb.pg.fingerprint("order_db");

    let (r, took) = e.run(e.command(&["backup", "--upload"], &secret));
    let r = r.ok();
    eprintln!("backup --upload (client secret, HTTPS): {took:?}");
    no_secret_in(&r, &secret);

    // The credential really was used: it asked for a token and got one.
    let reqs = e.entra.requests();
    assert!(
        reqs.iter().any(|q| q["status"] == 200),
        "no token was issued: {reqs:?}"
    );
    secret_only_in_bodies(&e.entra, &secret);

    // What landed in Azure, as Microsoft's SDK sees it (account key, HTTPS).
    let blobs = e.blobs();
    let dump = e.sb.dump_of("order_db");
    let file = dump.file_name().unwrap().to_string_lossy().into_owned();
    let sha = sha256_file(&dump);
    let blob = blobs
        .iter()
        .find(|b| {
            b["name"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/order_db/{file}"))
        })
        .unwrap_or_else(|| panic!("no copy of {file} in {blobs:#?}"));
    let name = blob["name"].as_str().unwrap();
    assert_eq!(blob["metadata"]["sha256"], sha.as_str(), "{blob}");
    assert_eq!(blob["metadata"]["database"], "order_db", "{blob}");
    assert_eq!(
        e.az.py_reader_https(&e.ca(), &["sha256", CONTAINER, name])
            .trim(),
        sha
    );
    // Both databases, each with its manifest.
    assert_eq!(blobs.len(), 4, "{blobs:#?}");

    // The machine is lost: no local backups, and the data is damaged.
    std::fs::remove_dir_all(e.sb.backup_dir()).unwrap();
    e.sb.pg
        .psql("order_db", "DELETE FROM order_items; DELETE FROM invoices;");
    assert_ne!(e.sb.pg.fingerprint("order_db"), before);
    let (r, took) = e.run(e.command(
        &["restore", "latest", "order", "--from-azure", "--yes"],
        &secret,
    ));
    let r = r.ok();
    eprintln!("restore --from-azure (client secret, HTTPS): {took:?}");
    assert!(
        r.stderr.contains("restored from the"),
        "restore does not say it used the offsite copy:\n{}",
        r.stderr
    );
    no_secret_in(&r, &secret);
    assert_eq!(e.sb.pg.fingerprint("order_db"), before);
    assert_eq!(sha256_file(&e.sb.dump_of("order_db")), sha);
    secret_only_in_bodies(&e.entra, &secret);
    no_secret_in_files(e.sb.work.path(), &secret);
}

#[test]
fn a_wrong_client_secret_fails_with_entras_error_and_never_shows_the_secret() {
    let e = Entra::new(20);
    let wrong = format!("Wr0ng~{}", secret());
    let (r, took) = e.run(e.command(&["backup", "--upload"], &wrong));
    eprintln!("backup --upload, wrong secret: exit {} in {took:?}", r.code);
    eprintln!("{}", r.stderr);
    assert_ne!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let line = r.error();
    assert!(
        line.contains("AADSTS7000215"),
        "error line {line:?} lacks Entra's code"
    );
    assert!(
        line.to_lowercase().contains("client secret"),
        "error line {line:?} does not name the credential"
    );
    // One line: nothing of the error (Entra's description, the SDK's
    // troubleshooting link) spills onto lines of its own.
    assert!(
        !r.stderr
            .lines()
            .any(|l| l.starts_with("To troubleshoot") || l.starts_with("AADSTS")),
        "the error spans several lines:\n{}",
        r.stderr
    );
    no_secret_in(&r, &wrong);
    no_secret_in(&r, &secret());
    // Refused once per attempt, not retried into a storm, and the secret
    // went only in the bodies.
    let reqs = e.entra.requests();
    assert!(!reqs.is_empty(), "the token endpoint was never asked");
    assert!(reqs.len() <= 4, "{} token requests: {reqs:#?}", reqs.len());
    assert!(
        reqs.iter()
            .all(|q| q["status"] == 401 && q["error"] == 7000215),
        "{reqs:#?}"
    );
    secret_only_in_bodies(&e.entra, &wrong);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // Nothing was uploaded: the container was never even created.
    match e
        .az
        .try_py_reader_https(&e.ca(), &["list-count", CONTAINER, ""])
    {
        Ok(n) => panic!(
            "the container exists after a refused login ({} blobs)",
            n.trim()
        ),
        Err(why) => assert!(why.contains("ContainerNotFound"), "{why}"),
    }
    no_secret_in_files(e.sb.work.path(), &wrong);
}

#[test]
fn an_untrusted_storage_certificate_fails_fast_naming_it() {
    let e = Entra::with_storage_ca(20, true);
    let secret = secret();
    // A local backup to upload: the failure is the upload's.
    e.sb.run(&["backup"]).ok();
    let (r, took) = e.run(e.command(&["upload", "latest"], &secret));
    eprintln!(
        "upload, storage certificate from an untrusted CA: exit {} in {took:?}",
        r.code
    );
    eprintln!("{}", r.stderr);
    assert_ne!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let line = r.error();
    assert!(
        line.contains("invalid peer certificate"),
        "error line {line:?} does not name the certificate problem"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    no_secret_in(&r, &secret);
    // The login itself worked; the token was never good for anything.
    assert!(
        e.entra.requests().iter().all(|q| q["status"] == 200),
        "{:#?}",
        e.entra.entries()
    );
    secret_only_in_bodies(&e.entra, &secret);
}

/// SSL_CERT_FILE unset: the token endpoint's certificate is refused before
/// any request, so the secret is never sent.
///
/// Ignored until src/storage/azure/auth.rs gives the credential the configured
/// retries: azure_identity's token requests otherwise retry with the SDK's
/// default (8 retries, about 80 s), and ensure_container asks twice (create,
/// then exists), so this takes about 165 s instead of a few.
#[test]

fn an_untrusted_ca_fails_fast_naming_the_certificate() {
    let e = Entra::new(20);
    let secret = secret();
    // A local backup to upload: the failure is the upload's.
    e.sb.run(&["backup"]).ok();
    let mut cmd = e.command(&["upload", "latest"], &secret);
    cmd.env_remove("SSL_CERT_FILE");
    let (r, took) = e.run(cmd);
    eprintln!("upload, CA not trusted: exit {} in {took:?}", r.code);
    eprintln!("{}", r.stderr);
    assert_ne!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let line = r.error();
    assert!(
        line.to_lowercase().contains("certificate"),
        "error line {line:?} does not name the certificate problem"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    no_secret_in(&r, &secret);
    // The program refused the token endpoint's certificate: the secret was
    // never sent.
    assert!(
        e.entra.requests().is_empty(),
        "a token request went through: {:#?}",
        e.entra.entries()
    );
}
