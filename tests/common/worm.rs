//! Azurite behind tests/tools/worm_proxy.py, the stand-in for what Azurite
//! stubs (Azure/Azurite#2648): version-level immutability policies, legal
//! holds and the versions the audit counts. The program and the Python
//! reader both talk to the proxy; it forwards every request to Azurite
//! untouched (Azurite checks the SharedKey signature), so only the WORM
//! rules are the proxy's. Started as [`super::arm::FakeArm`] is: a free
//! port, `listening on PORT` on its stdout, SIGTERM when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::arm::listening_port;
use super::azurite::{Azurite, conn_string_at, expect_reader, reader};
use super::repo;

pub struct Worm {
    pub az: Azurite,
    pub port: u16,
    /// One JSON line per request: method, path, status, code.
    pub log: PathBuf,
    child: Child,
}

impl Worm {
    /// Azurite and the proxy, the container having version-level
    /// immutability.
    pub fn start() -> Worm {
        Worm::launch(true)
    }

    /// As [`Worm::start`], the container without version-level
    /// immutability: every policy or hold is refused.
    pub fn start_without_version_level_worm() -> Worm {
        Worm::launch(false)
    }

    fn launch(vlw: bool) -> Worm {
        let az = Azurite::start();
        let log = az.dir.join("worm.log");
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/tools/worm_proxy.py"))
            .args(["--upstream", &az.port.to_string(), "--port", "0", "--log"])
            .arg(&log);
        if !vlw {
            cmd.arg("--no-version-level-worm");
        }
        let err = std::fs::File::create(az.dir.join("worm.stderr")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start tests/tools/worm_proxy.py with python3");
        let port = listening_port(&mut child, "worm_proxy.py", &az.dir.join("worm.stderr"));
        Worm {
            az,
            port,
            log,
            child,
        }
    }

    /// The account-key connection string of the proxy.
    pub fn conn_string(&self) -> String {
        conn_string_at(self.port)
    }

    /// tests/tools/blob_reader.py through the proxy; its stdout.
    #[track_caller]
    pub fn py_reader(&self, args: &[&str]) -> String {
        expect_reader(&self.conn_string(), args)
    }

    /// As [`Worm::py_reader`], for steps meant to fail: Err holds stderr.
    pub fn try_py_reader(&self, args: &[&str]) -> Result<String, String> {
        reader(&self.conn_string(), args)
    }

    /// The reader's JSON answer.
    #[track_caller]
    pub fn py_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.py_reader(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"))
    }

    /// What the proxy wrote to stderr (empty unless it crashed).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.az.dir.join("worm.stderr")).unwrap_or_default()
    }
}

impl Drop for Worm {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
