//! pg_dump, pg_restore and psql as child processes.
//!
//! Connection settings reach the tools only through libpq's environment
//! variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD), never through
//! arguments, so no password shows in `ps` output. A failing tool's stderr is
//! reduced to its one `error:` line for the message (ripgrep's
//! `CommandError` does the same).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use crate::config::{Config, Database};
use crate::error::{Error, IoContext, Result};

/// Field separator of psql's unaligned output (ASCII unit separator).
const SEP: &str = "\x1f";

#[derive(Debug, Clone)]
pub struct PgTools {
    bin_dir: Option<PathBuf>,
    maintenance_db: String,
}

impl PgTools {
    pub fn new(cfg: &Config) -> Self {
        PgTools {
            bin_dir: cfg.pg_bin_dir.clone(),
            maintenance_db: cfg.maintenance_db.clone(),
        }
    }

    pub fn maintenance_db(&self) -> &str {
        &self.maintenance_db
    }

    pub fn program(&self, tool: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(tool),
            None => PathBuf::from(tool),
        }
    }

    /// A command for `tool` connecting to `dbname` on `db`'s server.
    pub fn command(&self, tool: &str, db: &Database, dbname: &str) -> Result<Command> {
        let mut cmd = Command::new(self.program(tool));
        cmd.env("PGHOST", &db.host)
            .env("PGPORT", db.port.to_string())
            .env("PGUSER", &db.user)
            .env("PGDATABASE", dbname)
            .env("PGAPPNAME", "valerix-backup")
            .stdin(Stdio::null());
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            cmd.env("PGCONNECT_TIMEOUT", "10");
        }
        if let Some(pw) = db.password()? {
            cmd.env("PGPASSWORD", pw);
        }
        Ok(cmd)
    }

    /// Runs an SQL script through psql (on stdin, not the command line) and
    /// returns the rows of its output, fields split.
    pub fn query(&self, db: &Database, dbname: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        self.query_with(self.command("psql", db, dbname)?, sql)
    }

    /// [`PgTools::query`] through `cmd`, a psql [`PgTools::command`] its
    /// caller added settings to (`PGHOSTADDR`, `PGSSLMODE`).
    pub fn query_with(&self, mut cmd: Command, sql: &str) -> Result<Vec<Vec<String>>> {
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            SEP,
        ]);
        let out = run(cmd, "psql", Some(sql.as_bytes()))?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split(SEP).map(str::to_owned).collect())
            .collect())
    }

    /// Runs on the maintenance database (`postgres`).
    pub fn admin(&self, db: &Database, sql: &str) -> Result<Vec<Vec<String>>> {
        self.query(db, &self.maintenance_db, sql)
    }

    /// `pg_restore --list FILE`: reads the whole table of contents.
    pub fn restore_list(&self, file: &std::path::Path) -> Result<String> {
        let mut cmd = Command::new(self.program("pg_restore"));
        cmd.arg("--list").arg(file);
        run(cmd, "pg_restore --list", None)
    }
}

/// Runs a command to completion, feeding `stdin`, returning its stdout.
pub fn run(mut cmd: Command, name: &str, stdin: Option<&[u8]>) -> Result<String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = spawn(&mut cmd, name)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes its stdin: its stderr tells why.
        let _ = pipe.write_all(input);
    }
    let out = child
        .wait_with_output()
        .ctx(|| format!("waiting for {name}"))?;
    if !out.status.success() {
        return Err(tool_error(
            name,
            out.status,
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts a tool in its own process group, so that an interrupt is handled
/// by valerix-backup (which then ends the whole group, workers included)
/// rather than hitting the tool half-way on its own.
pub fn spawn(cmd: &mut Command, name: &str) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    cmd.spawn().map_err(|e| {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing(format!(
                "{name}: program '{prog}' not found (install the PostgreSQL client tools \
                 or set pg_bin_dir in the config)"
            )),
            _ => Error::io(format!("starting {prog}"), e),
        }
    })
}

/// SIGKILLs the process group of a child started by [`spawn`].
pub fn kill_group(pid: u32) {
    // SAFETY: plain kill(2) on a group we created; its leader is not yet
    // waited for, so the id cannot have been reused.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

/// Collects a child's stderr on a thread, keeping the last 64 KiB.
pub struct StderrTail(JoinHandle<String>);

impl StderrTail {
    pub fn start(child: &mut Child) -> Self {
        let pipe = child.stderr.take();
        StderrTail(std::thread::spawn(move || {
            let Some(mut pipe) = pipe else {
                return String::new();
            };
            let mut keep = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 64 << 10 {
                    keep.drain(..keep.len() - (32 << 10));
                }
            }
            String::from_utf8_lossy(&keep).into_owned()
        }))
    }

    pub fn finish(self) -> String {
        self.0.join().unwrap_or_default()
    }
}

pub fn tool_error(name: &str, status: ExitStatus, stderr: &str) -> Error {
    Error::Tool {
        tool: name.to_string(),
        status: describe_status(status),
        stderr: error_line(stderr),
    }
}

pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(9)) => "killed by SIGKILL".into(),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// The line of a tool's stderr that says what went wrong: the first line with
/// `error:` or `FATAL:`/`ERROR:`, else the last non-empty one; the tool-name
/// prefix is dropped and the result is one line.
pub fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .find(|l| l.contains("error:") || l.contains("ERROR:") || l.contains("FATAL:"))
        .or(lines.last())
        .copied()
        .unwrap_or("no error output");
    let pick = match pick.find("error: ") {
        Some(i) => &pick[i + 7..],
        None => pick,
    };
    let one: String = pick.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() > 400 {
        format!("{}...", &one[..one.floor_char_boundary(400)])
    } else {
        one
    }
}

/// `"name"` with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings on).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_error_line() {
        let s = "pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\
                 \tIs the server running on that host and accepting TCP/IP connections?\n";
        assert_eq!(
            error_line(s),
            "connection to server at \"127.0.0.1\", port 1 failed: Connection refused"
        );
        assert_eq!(error_line(""), "no error output");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
