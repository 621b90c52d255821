//! A private Azurite (Azure Storage emulator, blob service) per test, through
//! scripts/azurite.sh (the same script the benchmark uses), and an
//! independent look at what the program stored: tests/tools/blob_reader.py,
//! Microsoft's Python SDK, never our own client. Both tools are installed
//! into .tools/ by scripts/setup.sh (scripts/test.sh runs it first).
//!
//! Blobs and uncommitted blocks are kept on disk in `dir/data`, so
//! [`Azurite::stop`] then [`Azurite::restart`] loses nothing: the emulator
//! went away, the storage did not.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{free_port, repo};

pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, not a secret).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub port: u16,
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    repo().join("scripts/azurite.sh")
}

fn python() -> PathBuf {
    repo().join(".tools/py/bin/python")
}

impl Azurite {
    /// Starts the emulator on a free loopback port, in a fresh directory
    /// under /tmp; returns once the port answers.
    pub fn start() -> Azurite {
        Azurite::start_with(&[])
    }

    fn try_start(&self, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let out = Command::new(script())
            .arg("start")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg("disk")
            .args(args)
            .output()
            .expect("run scripts/azurite.sh");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The connection string for the program's config (as
    /// `azurite.sh conn PORT` prints it).
    pub fn conn_string(&self) -> String {
        conn_string_at(self.port)
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1` (path-style).
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Whether the emulator's port answers.
    pub fn is_running(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Stops the emulator (SIGTERM: it saves its state), returning once the
    /// port is closed; the storage in `dir/data` stays. For "the emulator went
    /// away mid-upload". Idempotent.
    pub fn stop(&self) {
        let out = Command::new(script())
            .arg("stop")
            .arg(&self.dir)
            .output()
            .expect("run scripts/azurite.sh");
        assert!(
            out.status.success(),
            "azurite.sh stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same port and storage (stopping it first if it
    /// still runs): blobs and uncommitted blocks are still there.
    pub fn restart(&self) {
        self.stop();
        if let Err(e) = self.try_start(&[]) {
            panic!(
                "azurite.sh start (restart on port {}) failed: {e}",
                self.port
            );
        }
    }

    /// Runs tests/tools/blob_reader.py against this emulator; its stdout.
    /// Panics with its stderr when it fails.
    #[track_caller]
    pub fn py_reader(&self, args: &[&str]) -> String {
        expect_reader(&self.conn_string(), args)
    }

    /// As [`Azurite::py_reader`], for steps that are meant to fail: Err
    /// holds its stderr.
    pub fn try_py_reader(&self, args: &[&str]) -> Result<String, String> {
        reader(&self.conn_string(), args)
    }

    /// Creates a container (no error if it exists).
    pub fn create_container(&self, container: &str) {
        self.py_reader(&["create", container]);
    }

    /// The blobs under `prefix`, as the SDK sees them: name, size, metadata,
    /// tags, access_tier, content_md5, creation_time, last_modified, blob_type.
    #[track_caller]
    pub fn list(&self, container: &str, prefix: &str) -> Vec<serde_json::Value> {
        let out = self.py_reader(&["list", container, prefix]);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("blob_reader.py list printed no JSON list ({e}): {out}"))
    }

    /// Hex SHA-256 of a blob's content, downloaded by the SDK.
    #[track_caller]
    pub fn sha256(&self, container: &str, blob: &str) -> String {
        self.py_reader(&["sha256", container, blob])
            .trim()
            .to_string()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Azurite over HTTPS with OAuth, for the Entra ID tests (tests/entra.rs).
/// The emulator of [`Azurite::start`], given a server certificate (from
/// scripts/test-ca.sh) and `--oauth basic`: it then accepts bearer tokens
/// whose claims look right (audience `https://storage.azure.com`, an
/// `https://sts.windows.net/...` issuer, valid nbf/exp; the signature is not
/// checked), and still the account key and SAS. Bearer tokens are refused
/// over plain HTTP, so OAuth needs this. [`Azurite::restart`] would bring it
/// back without TLS: not for these.
impl Azurite {
    pub fn start_https(cert: &std::path::Path, key: &std::path::Path) -> Azurite {
        let az = Azurite::start_with(&[
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
            "--oauth".as_ref(),
            "basic".as_ref(),
        ]);
        // The port answers; the log says on which scheme.
        let log = az.dir.join("azurite.log");
        let https = || {
            std::fs::read_to_string(&log)
                .map(|l| l.contains("listens on https://"))
                .unwrap_or(false)
        };
        for _ in 0..50 {
            if https() {
                return az;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "Azurite did not start with HTTPS; {} says: {}",
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// As [`Azurite::start`] with `args` passed on to azurite-blob (after
    /// azurite.sh's persistence argument, disk).
    pub fn start_with(args: &[&std::ffi::OsStr]) -> Azurite {
        for tool in [
            repo().join(".tools/azurite/node_modules/.bin/azurite-blob"),
            python(),
        ] {
            assert!(
                tool.exists(),
                "{} is missing: run scripts/setup.sh",
                tool.display()
            );
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/vxb-azurite-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // Another test may take the free port before Azurite binds it: the
        // script then refuses ("already in use") and we try another.
        let mut az = Azurite { port: 0, dir };
        let mut last = String::new();
        for _ in 0..5 {
            az.port = free_port();
            match az.try_start(args) {
                Ok(()) => return az,
                Err(e) if e.contains("already in use") => last = e,
                Err(e) => panic!("azurite.sh start {args:?} failed: {e}"),
            }
        }
        panic!("azurite.sh start failed 5 times: {last}");
    }

    /// `https://127.0.0.1:PORT/devstoreaccount1` (path-style).
    pub fn https_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The account-key connection string over HTTPS (as `azurite.sh conn
    /// PORT https` prints it).
    pub fn https_conn_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={KEY};\
             BlobEndpoint={};",
            self.https_endpoint()
        )
    }

    /// tests/tools/blob_reader.py over HTTPS with the account key, trusting
    /// the CA in `ca` (REQUESTS_CA_BUNDLE); its stdout. Panics with its
    /// stderr when it fails.
    #[track_caller]
    pub fn py_reader_https(&self, ca: &std::path::Path, args: &[&str]) -> String {
        match self.try_py_reader_https(ca, args) {
            Ok(out) => out,
            Err(e) => panic!("blob_reader.py {args:?} (https) failed: {e}"),
        }
    }

    /// As [`Azurite::py_reader_https`], for steps that may fail: Err holds
    /// its stderr.
    pub fn try_py_reader_https(
        &self,
        ca: &std::path::Path,
        args: &[&str],
    ) -> Result<String, String> {
        let mut cmd = Command::new(python());
        cmd.env("AZURE_STORAGE_CONNECTION_STRING", self.https_conn_string())
            .env("REQUESTS_CA_BUNDLE", ca);
        run_reader(&mut cmd, args)
    }
}

/// Runs tests/tools/blob_reader.py with `args`: its stdout, or its stderr
/// when it fails.
/// The account-key connection string of a blob endpoint on
/// 127.0.0.1:`port` (Azurite's, or a proxy's in front of it).
pub fn conn_string_at(port: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )
}

/// [`reader`]'s stdout; panics with its stderr when it fails.
#[track_caller]
pub fn expect_reader(conn: &str, args: &[&str]) -> String {
    match reader(conn, args) {
        Ok(out) => out,
        Err(e) => panic!("blob_reader.py {args:?} failed: {e}"),
    }
}

/// tests/tools/blob_reader.py with the connection string `conn`: its
/// stdout, or its stderr when it fails.
pub fn reader(conn: &str, args: &[&str]) -> Result<String, String> {
    run_reader(
        Command::new(python()).env("AZURE_STORAGE_CONNECTION_STRING", conn),
        args,
    )
}

fn run_reader(cmd: &mut Command, args: &[&str]) -> Result<String, String> {
    let out = cmd
        .arg(repo().join("tests/tools/blob_reader.py"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run .tools/py/bin/python");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
