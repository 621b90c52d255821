//! Test harness: a real, private PostgreSQL cluster per test (through
//! scripts/pg-sandbox.sh, the same script the demo and benchmark use), the
//! built binary run in a temp directory, and a content fingerprint of a
//! database to compare before backup and after restore.
#![allow(dead_code)]

pub mod arm;
pub mod azurite;
pub mod worm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const ORDER_PW: &str = "order_password";
pub const INVENTORY_PW: &str = "inventory_password";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_valerix-backup"))
}

fn sandbox_script() -> PathBuf {
    repo().join("scripts/pg-sandbox.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `cmd`, panics with its output unless it succeeds; its stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private cluster with the seed's users and databases, loaded with the
/// sample order and inventory data.
pub struct Pg {
    pub dir: PathBuf,
    pub port: u16,
}

impl Pg {
    pub fn start(scale: u32) -> Pg {
        static N: AtomicU32 = AtomicU32::new(0);
        // Under /tmp: the postgres user must be able to reach the directory.
        let dir = PathBuf::from(format!(
            "/tmp/vxb-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let port = free_port();
        sh(Command::new(sandbox_script())
            .arg("start")
            .arg(&dir)
            .arg(port.to_string()));
        let pg = Pg { dir, port };
        sh(Command::new(sandbox_script())
            .arg("seed")
            .arg(&pg.dir)
            .arg(port.to_string())
            .arg(scale.to_string()));
        pg
    }

    /// Superuser psql on the cluster's socket; unaligned, tuples only.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        sh(Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]))
    }

    pub fn databases(&self) -> Vec<String> {
        self.psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// Content fingerprint: every table's rows (md5 of the sorted text form),
    /// sequence positions, view definitions, indexes and constraints.
    pub fn fingerprint(&self, db: &str) -> Vec<String> {
        let tables = self.psql(
            db,
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) \
             FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_type = 'BASE TABLE' ORDER BY 1",
        );
        let mut fp = Vec::new();
        for t in tables.lines() {
            fp.push(format!(
                "{t} {}",
                self.psql(
                    db,
                    &format!(
                        "SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {t} x"
                    )
                )
                .trim()
            ));
        }
        for q in [
            "SELECT string_agg(sequencename || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY sequencename) FROM pg_sequences",
            "SELECT string_agg(viewname || ':' || definition, ',' ORDER BY viewname) FROM pg_views WHERE schemaname = 'public'",
            "SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes WHERE schemaname = 'public'",
            "SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ',' ORDER BY conname) FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        ] {
            fp.push(self.psql(db, q).trim().to_string());
        }
        fp
    }

    pub fn stop_server(&self) {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .map(|e| e.unwrap().path().join("bin/pg_ctl"))
            .max()
            .unwrap();
        let data = self.dir.join("data");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        sh(cmd
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "-w", "stop"]));
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(sandbox_script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// A cluster plus a working directory with a config for both databases.
pub struct Sandbox {
    pub pg: Pg,
    pub work: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The one error line the binary prints last.
    #[track_caller]
    pub fn error(&self) -> String {
        let line = self
            .stderr
            .lines()
            .rfind(|l| l.starts_with("valerix-backup: error: "))
            .unwrap_or_else(|| panic!("no error line in stderr:\n{}", self.stderr));
        line.to_string()
    }

    #[track_caller]
    pub fn fails_with(&self, code: i32, needle: &str) -> String {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let e = self.error();
        assert!(e.contains(needle), "error line {e:?} lacks {needle:?}");
        e
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::with_scale(200)
    }

    pub fn with_scale(scale: u32) -> Sandbox {
        let sb = Sandbox {
            pg: Pg::start(scale),
            work: tempfile::tempdir().unwrap(),
        };
        sb.write_config("");
        sb
    }

    pub fn config_path(&self) -> PathBuf {
        self.work.path().join("valerix-backup.toml")
    }

    pub fn config_text(&self, top: &str) -> String {
        format!(
            "{top}\nbackup_dir = \"backups\"\nretention_days = 7\n\n\
             [[database]]\nname = \"order\"\ndbname = \"order_db\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nuser = \"order_user\"\npassword_env = \"ORDER_DB_PASSWORD\"\n\n\
             [[database]]\nname = \"inventory\"\ndbname = \"inventory_db\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nuser = \"inventory_user\"\npassword_env = \"INVENTORY_DB_PASSWORD\"\n",
            port = self.pg.port
        )
    }

    /// Writes the config; `top` adds top-level keys (e.g. `pg_bin_dir`).
    pub fn write_config(&self, top: &str) {
        std::fs::write(self.config_path(), self.config_text(top)).unwrap();
    }

    /// Writes the config plus an `[azure]` section for `container`; `keys`
    /// adds lines after it (more keys, then maybe other sections).
    pub fn write_azure_config(&self, container: &str, keys: &str) {
        let text = format!(
            "{}\n[azure]\ncontainer = \"{container}\"\n{keys}\n",
            self.config_text("")
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Runs the binary with `conn` as the Azure connection string.
    pub fn run_with_conn(&self, args: &[&str], conn: &str) -> Run {
        let mut cmd = self.command(args);
        cmd.env("AZURE_STORAGE_CONNECTION_STRING", conn);
        run(cmd)
    }

    /// [`Sandbox::run_with_conn`] of `args --json`, its stdout parsed.
    pub fn json_with_conn(&self, args: &[&str], conn: &str) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let r = self.run_with_conn(&a, conn);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", r.stdout, r.stderr))
    }

    /// Runs `args` (which hold `--json`), its stdout parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.run(args);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", r.stdout, r.stderr))
    }

    /// Points the config's pg_bin_dir at a directory whose `tool` is the
    /// bash script `body` wrapped around the real one (see [`fake_bin_dir`]).
    pub fn wrap_tool(&self, tool: &str, body: &str) -> PathBuf {
        let dir = fake_bin_dir(self.work.path(), tool, body);
        self.write_config(&format!("pg_bin_dir = \"{}\"", dir.display()));
        dir
    }

    /// Starts the binary, capturing its stderr, for tests that signal it.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.work.path().join("backups")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.work.path())
            .env("ORDER_DB_PASSWORD", ORDER_PW)
            .env("INVENTORY_DB_PASSWORD", INVENTORY_PW)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// Backup files under their final names, oldest first.
    pub fn dumps(&self) -> Vec<PathBuf> {
        list_dir(&self.backup_dir())
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".dump.gz"))
            .collect()
    }

    pub fn dump_of(&self, dbname: &str) -> PathBuf {
        self.dumps()
            .into_iter()
            .rfind(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{dbname}_2"))
            })
            .expect("a backup of the database")
    }
}

/// SIGTERM to a child, then its exit status code and stderr.
pub fn terminate(child: std::process::Child) -> (Option<i32>, String) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run valerix-backup");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The names of the files in a backup directory, other than the lock and
/// the post-mortem records' folder.
pub fn backup_files(dir: &Path) -> Vec<String> {
    list_dir(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != ".valerix-backup.lock" && n != "reports")
        .collect()
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn manifest(path: &Path) -> serde_json::Value {
    let m = path.to_string_lossy().replace(".dump.gz", ".manifest.json");
    serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap()
}

/// The server binaries' directory (pg_dump, pg_restore, psql live there too).
pub fn pg_bin() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installed (scripts/setup.sh)")
        .map(|e| e.unwrap().path().join("bin"))
        .max()
        .unwrap()
}

/// A pg_bin_dir whose `tool` is `body` (a bash script; $REAL is the real
/// bin directory) and whose other tools are the real ones: a fault injector
/// around the real tool, not a mock of it.
pub fn fake_bin_dir(parent: &Path, tool: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join("pgbin");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for other in ["psql", "pg_restore", "pg_dump"] {
        std::os::unix::fs::symlink(pg_bin().join(other), dir.join(other)).unwrap();
    }
    let script = format!("#!/bin/bash\nREAL='{}'\n{body}\n", pg_bin().display());
    std::fs::remove_file(dir.join(tool)).unwrap();
    std::fs::write(dir.join(tool), script).unwrap();
    std::fs::set_permissions(dir.join(tool), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A webhook receiver: every POST body, in order (tests/agent.rs, and
/// geo_restore.rs for the region drill's alert).
pub fn receiver() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        let body = &buf[i + 4..i + 4 + len];
                        sink.lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).unwrap());
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// A key pair made by `age-keygen` (the independent tool): the identity
/// file and its public key.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian's age package; scripts/setup.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    let public = String::from_utf8(public.stdout).unwrap().trim().to_string();
    assert!(public.starts_with("age1"), "{public}");
    (path, public)
}

/// The names of a post-mortem record's steps, in order (`report show --json`).
pub fn step_names(rec: &serde_json::Value) -> Vec<String> {
    rec["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {rec}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}
