//! The application configuration archive (`[config_backup]`): files,
//! directories, globs and the output of commands, archived by every backup
//! run as one more member of the backup set, `config_<stamp>.tar.gz`
//! (`.tar.gz.age` with `[encryption]`), with a manifest like a database's.
//! The catalog, retention, upload, audit and `verify` treat it as a set of
//! kind [`SetKind::Config`](crate::config::SetKind); `restore-config`
//! extracts it into a new directory.
//!
//! Members: `files/<absolute path>` for files (`/etc/valerix/.env` ->
//! `files/etc/valerix/.env`), `commands/<n>-<slug>.out` for the standard
//! output of the n-th command. Only regular files and directories are
//! written: a symbolic link inside a directory is archived as the file it
//! points to, under its own name; a link to a directory is not followed.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use flate2::read::MultiGzDecoder;
use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::fsutil::AtomicFile;
use crate::catalog::manifest::{self, ConfigContents, ConfigFile, Skipped};
use crate::catalog::naming::tar_name_as;
use crate::catalog::{Catalog, LocalBackup, Manifest, Stamp};
use crate::config::{ConfigBackup, Database};
use crate::error::{Error, IoContext, Result};
use crate::ops::{Context, Observer};
use crate::pg::tools::kill_group;
use crate::pipeline::compress::{CompressError, libdeflate_level};
use crate::pipeline::encryption::{self, Sealed};
use crate::pipeline::{CompressOptions, HashingReader, HashingWriter, compress_parallel};
use crate::storage::azure::AzureStore;

/// File names that look like secrets, matched case-insensitively against
/// the file's name (not its directory). Such a file is archived only when
/// the archive is encrypted or `include_secrets = true`.
pub const SECRET_PATTERNS: &[&str] = &[
    ".env",
    "*.env",
    ".env.*",
    "*.key",
    "*.pem",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "credentials*",
    ".pgpass",
    ".netrc",
    "*secret*",
];

/// Whether a file named `name` looks like a secret (see [`SECRET_PATTERNS`]).
pub fn looks_secret(name: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: false,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    SECRET_PATTERNS.iter().any(|p| {
        glob::Pattern::new(p)
            .expect("the secret patterns are valid")
            .matches_with(name, opts)
    })
}

/// A file (or a command's output) holding a Kubernetes Secret: a line
/// `kind: Secret` (YAML, also as a list item, or JSON `"kind": "Secret"`).
/// The manifests the seed backs up keep Secrets beside the others.
pub fn holds_k8s_secret(bytes: &[u8]) -> bool {
    let Some(_) = memchr::memmem::find(bytes, b"Secret") else {
        return false;
    };
    String::from_utf8_lossy(bytes).lines().any(|l| {
        let l = l.trim().trim_start_matches("- ");
        let l: String = l
            .chars()
            .filter(|c| !matches!(c, ' ' | '"' | '\'' | ','))
            .collect();
        l == "kind:Secret"
    })
}

const K8S_SECRET: &str = "holds a Kubernetes Secret (kind: Secret)";

fn secret_reason(why: &str) -> String {
    format!(
        "{why}; archived only with [encryption] or include_secrets = true (see \
         \"Application configuration\" in the README)"
    )
}

/// The tar being built, and what was left out.
struct Collector<'a> {
    cb: &'a ConfigBackup,
    secrets_allowed: bool,
    tar: tar::Builder<Vec<u8>>,
    seen: BTreeSet<String>,
    contents: ConfigContents,
}

impl Collector<'_> {
    fn skip(&mut self, source: String, reason: String) {
        warn!("config backup: skipped {source}: {reason}");
        self.contents.skipped.push(Skipped { source, reason });
    }

    fn unreadable(&mut self, source: String, reason: String) {
        warn!("config backup: cannot read {source}: {reason}");
        self.contents.unreadable.push(Skipped { source, reason });
    }

    /// One entry of `paths`: a glob, or a file or directory.
    fn path(&mut self, entry: &str) -> Result<()> {
        let full = self.cb.base.join(entry);
        let text = full.to_string_lossy().into_owned();
        if !entry.contains(['*', '?', '[']) {
            return self.root(&full, entry);
        }
        // Checked when the config loaded; the base directory may still
        // hold a character a pattern cannot.
        let matches = match glob::glob(&text) {
            Ok(m) => m,
            Err(e) => {
                self.unreadable(entry.to_string(), format!("not a glob pattern here: {e}"));
                return Ok(());
            }
        };
        let mut any = false;
        for m in matches {
            any = true;
            match m {
                Ok(p) => self.root(&p, &p.to_string_lossy())?,
                Err(e) => self.unreadable(e.path().display().to_string(), e.error().to_string()),
            }
        }
        if !any {
            self.skip(entry.to_string(), "the glob matched nothing".into());
        }
        Ok(())
    }

    /// A named file or directory (followed if a link), by its real path so
    /// no member name holds `..`.
    fn root(&mut self, path: &Path, named: &str) -> Result<()> {
        let real = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) => {
                self.unreadable(named.to_string(), e.to_string());
                return Ok(());
            }
        };
        let mut walk = walkdir::WalkDir::new(&real)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            match item {
                // A `secrets/` or `.ssh`-like directory is left out whole,
                // with one line.
                Ok(e)
                    if e.depth() > 0
                        && e.file_type().is_dir()
                        && !self.secrets_allowed
                        && looks_secret(&e.file_name().to_string_lossy()) =>
                {
                    walk.skip_current_dir();
                    let why = "a directory whose name looks like it holds secrets";
                    self.skip(e.path().display().to_string(), secret_reason(why));
                }
                // A link to a file is archived as the file under the
                // link's name (a Kubernetes volume's `..data` links, a
                // shared override); a link to a directory is not followed.
                Ok(e) if e.depth() > 0 && e.path_is_symlink() && e.path().is_dir() => self.skip(
                    e.path().display().to_string(),
                    "a symbolic link to a directory (not followed)".into(),
                ),
                Ok(e) => self.add(e.path())?,
                Err(e) => {
                    let at = e.path().unwrap_or(&real).display().to_string();
                    let cause = e.io_error().map_or(e.to_string(), ToString::to_string);
                    self.unreadable(at, cause);
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, path: &Path) -> Result<()> {
        let source = path.display().to_string();
        let member = format!("files{source}");
        if !self.seen.insert(member.clone()) {
            return Ok(());
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.unreadable(source, e.to_string());
                return Ok(());
            }
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            let mut h = header(tar::EntryType::Directory, 0, mode, meta.mtime());
            h.set_uid(meta.uid().into());
            h.set_gid(meta.gid().into());
            return self
                .tar
                .append_data(&mut h, &member, std::io::empty())
                .ctx(|| format!("archiving {source}"));
        }
        if !meta.is_file() {
            self.skip(source, "not a regular file".into());
            return Ok(());
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !self.secrets_allowed && looks_secret(&name) {
            self.skip(source, secret_reason("looks like a secret by its name"));
            return Ok(());
        }
        match std::fs::read(path) {
            Ok(bytes) if !self.secrets_allowed && holds_k8s_secret(&bytes) => {
                self.skip(source, secret_reason(K8S_SECRET));
                Ok(())
            }
            Ok(bytes) => {
                let owner = (meta.uid(), meta.gid());
                self.file(member, source, &bytes, (mode, meta.mtime(), owner))
            }
            Err(e) => {
                self.unreadable(source, e.to_string());
                Ok(())
            }
        }
    }

    /// A regular file: its member name, where it came from, its bytes and
    /// its mode, mtime and owner (uid, gid).
    fn file(
        &mut self,
        member: String,
        source: String,
        bytes: &[u8],
        (mode, mtime, (uid, gid)): (u32, i64, (u32, u32)),
    ) -> Result<()> {
        let mut h = header(tar::EntryType::Regular, bytes.len() as u64, mode, mtime);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        self.tar
            .append_data(&mut h, &member, bytes)
            .ctx(|| format!("archiving {source}"))?;
        self.contents.files.push(ConfigFile {
            path: member,
            source,
            size: bytes.len() as u64,
            mode: format!("{mode:04o}"),
        });
        Ok(())
    }

    /// The n-th command (from 1): its standard output, or why there is none.
    fn command(&mut self, ctx: &Context, n: usize, argv: &[String]) -> Result<()> {
        let source = format!("command {n} `{}`", argv.join(" "));
        let timeout = Duration::from_secs(self.cb.command_timeout_secs);
        match run_command(ctx, argv, timeout)? {
            Ok(out) if !self.secrets_allowed && holds_k8s_secret(&out) => {
                self.skip(source, secret_reason(&format!("its output {K8S_SECRET}")));
                Ok(())
            }
            Ok(out) => {
                let member = format!("commands/{n}-{}.out", slug(argv));
                let now = Utc::now().timestamp();
                // SAFETY: getuid and getgid cannot fail.
                let owner = unsafe { (libc::getuid(), libc::getgid()) };
                self.file(member, source, &out, (0o600, now, owner))
            }
            Err(why) => {
                self.unreadable(source, why);
                Ok(())
            }
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime.max(0) as u64);
    h
}

/// `["kubectl","get","deploy,svc,cm"]` -> `kubectl-get-deploy-svc-cm`: a
/// stable file name, at most 48 characters.
fn slug(argv: &[String]) -> String {
    let mut s = String::new();
    for c in argv.join(" ").chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    s.truncate(48);
    s.trim_end_matches('-').to_string()
}

/// Runs `argv` without a shell, standard input closed, in its own process
/// group (killed on timeout or interrupt); its standard output when it
/// exits 0, else why not (the first line of its standard error). An
/// interrupt is the only error.
fn run_command(
    ctx: &Context,
    argv: &[String],
    timeout: Duration,
) -> Result<std::result::Result<Vec<u8>, String>> {
    let spawned = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("cannot run {}: {e}", argv[0]))),
    };
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let stdout = std::thread::spawn(move || drain(out.as_mut()));
    let stderr = std::thread::spawn(move || drain(err.as_mut()));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Ok(Err(format!("waiting for {}: {e}", argv[0]))),
        }
        ctx.check_cancel().inspect_err(|_| kill_group(child.id()))?;
        if start.elapsed() > timeout {
            kill_group(child.id());
            let _ = child.wait();
            return Ok(Err(format!(
                "killed after {} s (command_timeout_secs)",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A process it left behind may hold its output open: wait for that
    // within the same time limit (the group still exists then, so the
    // kill cannot reach another).
    while !(stdout.is_finished() && stderr.is_finished()) {
        ctx.check_cancel().inspect_err(|_| kill_group(child.id()))?;
        if start.elapsed() > timeout {
            kill_group(child.id());
            return Ok(Err(format!(
                "{status}, but a process it started kept its output open past \
                 command_timeout_secs ({} s)",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        return Ok(Ok(out));
    }
    let text = String::from_utf8_lossy(&err);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let first: String = first.trim().chars().take(200).collect();
    Ok(Err(match first.is_empty() {
        true => format!("{status}"),
        false => format!("{status}: {first}"),
    }))
}

fn drain(r: Option<&mut impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut buf);
    }
    buf
}

/// The configuration archive of this run: written whole under a hidden
/// name, renamed when complete, then its manifest. What could not be read
/// is in the manifest's `unreadable` (the caller fails the set for it).
pub fn backup(ctx: &Context, catalog: &Catalog, set: &Database, stamp: Stamp) -> Result<Manifest> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let cb = ctx
        .cfg
        .config_backup
        .as_ref()
        .expect("a config set has [config_backup]");
    let recipients = ctx.cfg.recipients();
    let mut c = Collector {
        cb,
        secrets_allowed: cb.include_secrets || !recipients.is_empty(),
        tar: tar::Builder::new(Vec::new()),
        seen: BTreeSet::new(),
        contents: ConfigContents::default(),
    };
    c.tar.mode(tar::HeaderMode::Complete);
    for p in &cb.paths {
        ctx.check_cancel()?;
        c.path(p)?;
    }
    for (i, argv) in cb.commands.iter().enumerate() {
        c.command(ctx, i + 1, argv)?;
    }
    let tar = c
        .tar
        .into_inner()
        .ctx(|| "ending the configuration archive".to_string())?;

    let file = tar_name_as(&set.dbname, &stamp, !recipients.is_empty());
    let mut out = AtomicFile::create(&catalog.dir().join(&file))?;
    let temp_name = out.temp_path().display().to_string();
    let write_err = |e| Error::io(format!("writing {temp_name}"), e);
    let mut writer = Sealed::new(HashingWriter::new(out.file()), recipients).map_err(write_err)?;
    let opts = CompressOptions {
        level: ctx.cfg.compression_level,
        threads: ctx.cfg.compression_threads(),
        ..Default::default()
    };
    let stats = match compress_parallel(&tar[..], &mut writer, opts, &ctx.cancel, |_| Ok(())) {
        Ok(s) => s,
        Err(CompressError::Cancelled) => return Err(Error::Interrupted),
        Err(CompressError::Write(e) | CompressError::Read(e)) => return Err(write_err(e)),
        Err(CompressError::Inspect(e)) => return Err(Error::Unexpected(e)),
    };
    let (_, sha256, size_bytes) = writer.finish().map_err(write_err)?.finish();
    out.commit()?;

    let m = Manifest {
        format_version: manifest::FORMAT_VERSION,
        tool_version: format!("valerix-backup {}", env!("CARGO_PKG_VERSION")),
        database: set.name.clone(),
        dbname: set.dbname.clone(),
        host: crate::ops::upload::host_name(),
        port: 0,
        timestamp: stamp,
        file,
        sha256,
        size_bytes,
        uncompressed_bytes: tar.len() as u64,
        compression: format!(
            "gzip, libdeflate level {} ({} members)",
            libdeflate_level(opts.level),
            stats.members
        ),
        pg_dump_version: String::new(),
        server_version: String::new(),
        archive_version: "tar (GNU)".into(),
        started_at,
        finished_at: Utc::now(),
        duration_secs: t0.elapsed().as_secs_f64(),
        tables: Vec::new(),
        encryption: (!recipients.is_empty()).then(|| manifest::Encryption {
            scheme: "age".into(),
            recipients: recipients.iter().map(ToString::to_string).collect(),
        }),
        config: Some(c.contents),
    };
    catalog.write_manifest(&m)?;
    Ok(m)
}

/// `config check` of `[config_backup]`: each path there now (a glob that
/// matches nothing is not a problem, as in a backup), each command's
/// program found (commands are not run), and what becomes of secrets.
pub fn check(ctx: &Context) -> Vec<(String, std::result::Result<String, String>)> {
    let Some(cb) = &ctx.cfg.config_backup else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in &cb.paths {
        let full = cb.base.join(p);
        let r = if p.contains(['*', '?', '[']) {
            let n = glob::glob(&full.to_string_lossy()).map_or(0, |m| m.count());
            Ok(format!("{n} match(es) now"))
        } else {
            match std::fs::metadata(&full) {
                Ok(m) if m.is_dir() => Ok("a directory".to_string()),
                Ok(_) => Ok("a file".to_string()),
                Err(e) => Err(format!("{}: {e}", full.display())),
            }
        };
        out.push((format!("config_backup path {p}"), r));
    }
    for (i, argv) in cb.commands.iter().enumerate() {
        let r = match find_program(&argv[0]) {
            Some(p) => Ok(format!("{} (not run by the check)", p.display())),
            None => Err(format!("{} not found on PATH", argv[0])),
        };
        out.push((format!("config_backup command {}", i + 1), r));
    }
    let secrets = match (ctx.cfg.recipients().is_empty(), cb.include_secrets) {
        (false, _) => "archived, encrypted with the backups",
        (true, true) => "archived UNENCRYPTED (include_secrets = true)",
        (true, false) => "skipped with a warning (no [encryption], include_secrets = false)",
    };
    out.push(("config_backup secrets".into(), Ok(secrets.into())));
    out
}

/// `program` as a command finds it: a path as is, else the first
/// executable of that name on `$PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// The set's error when something could not be read: one line naming each.
pub fn failure(m: &Manifest) -> Option<String> {
    let bad = &m.config.as_ref()?.unreadable;
    if bad.is_empty() {
        return None;
    }
    let each: Vec<String> = bad
        .iter()
        .map(|s| format!("{}: {}", s.source, s.reason))
        .collect();
    Some(format!(
        "configuration archive {} lacks what could not be read: {}",
        m.file,
        each.join("; ")
    ))
}

/// One member of an archive as read: its name, mode and bytes (`None` for
/// a directory).
struct Member {
    path: PathBuf,
    mode: u32,
    data: Option<Vec<u8>>,
}

/// Reads the archive `b` to its end: SHA-256 and size of the file as
/// stored against the manifest, age (with the configured identity) and
/// gzip, every tar member (only safe relative names of files and
/// directories), and the files against the manifest's list. Calls `each`
/// on every member, in order.
fn read_archive(
    ctx: &Context,
    b: &LocalBackup,
    mut each: impl FnMut(Member) -> Result<()>,
) -> Result<String> {
    let name = b.file_name();
    let corrupt = |reason: String| Error::Corrupt {
        file: name.clone(),
        reason,
    };
    if let Some(e) = &b.manifest_error {
        return Err(corrupt(e.clone()));
    }
    let file = File::open(&b.path).ctx(|| format!("opening {}", b.path.display()))?;
    let mut hashed = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let mut files = Vec::new();
    {
        let source: Box<dyn Read + '_> = if b.encrypted() {
            let ids = encryption::identities(&ctx.cfg)?;
            Box::new(ids.open(&mut hashed, &name, b.recipients())?)
        } else {
            Box::new(&mut hashed)
        };
        let damaged = |e: std::io::Error| {
            corrupt(
                encryption::read_failure(&e).unwrap_or_else(|| format!("archive is damaged: {e}")),
            )
        };
        let mut archive = tar::Archive::new(MultiGzDecoder::new(source));
        for entry in archive.entries().map_err(damaged)? {
            ctx.check_cancel()?;
            let mut entry = entry.map_err(damaged)?;
            let path = entry.path().map_err(damaged)?.into_owned();
            let shown = path.display().to_string();
            if !is_safe_member(&path) {
                return Err(corrupt(format!(
                    "member {shown} is absolute or holds `..`: refused"
                )));
            }
            let mode = entry.header().mode().map_err(damaged)? & 0o7777;
            let data = match entry.header().entry_type() {
                tar::EntryType::Directory => None,
                tar::EntryType::Regular => {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).map_err(damaged)?;
                    files.push((shown, bytes.len() as u64));
                    Some(bytes)
                }
                other => {
                    return Err(corrupt(format!(
                        "member {shown} is a {other:?}, not a file or directory: refused"
                    )));
                }
            };
            each(Member { path, mode, data })?;
        }
        // The gzip trailer and anything after the tar's end.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(damaged)?;
    }
    let (sha256, size) = hashed.finish().ctx(|| format!("reading {name}"))?;
    crate::ops::read::check_stored(b, &sha256, size)?;
    if let Some(c) = b.manifest.as_ref().and_then(|m| m.config.as_ref()) {
        let listed: Vec<(String, u64)> = c.files.iter().map(|f| (f.path.clone(), f.size)).collect();
        if listed != files {
            return Err(corrupt("its files differ from the manifest's list".into()));
        }
    }
    Ok(sha256)
}

/// A member name that stays inside the directory it is extracted into:
/// relative, and without `..` (or `.`) parts.
fn is_safe_member(path: &Path) -> bool {
    path.components().next().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// `verify` of a configuration archive: read to the end, as
/// [`read_archive`] says; the number of files it holds.
pub fn verify(ctx: &Context, b: &LocalBackup) -> Result<(String, usize)> {
    let mut n = 0;
    let sha = read_archive(ctx, b, |m| {
        n += usize::from(m.data.is_some());
        Ok(())
    })?;
    Ok((sha, n))
}

/// One file `restore-config` wrote.
#[derive(Debug, Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    pub mode: String,
}

#[derive(Debug, Serialize)]
pub struct RestoreConfigReport {
    pub timestamp: Stamp,
    pub archive: String,
    pub sha256: String,
    pub into: PathBuf,
    pub files: Vec<Written>,
}

/// `restore-config`: the archive at `stamp` (newest for `None`) extracted
/// into `into`, which must not exist or be empty. Everything is written
/// into a hidden sibling directory first and renamed to `into` only when
/// the whole archive read and checked: `into` never holds part of an
/// archive, and no file anywhere is overwritten.
/// With `from_azure`, the offsite copy is fetched into the backup directory
/// first, proven by its SHA-256, as `restore --from-azure` does.
pub fn restore(
    ctx: &Context,
    mut stamp: Option<Stamp>,
    into: &Path,
    from_azure: bool,
    obs: &dyn Observer,
) -> Result<RestoreConfigReport> {
    let set = ctx.cfg.config_set().ok_or_else(|| Error::Config {
        path: ctx.cfg.path.clone(),
        msg: "no [config_backup] section: there is no configuration archive to restore".into(),
    })?;
    refuse_non_empty(into)?;
    if from_azure {
        let store = AzureStore::open(crate::ops::upload::azure(ctx)?)?;
        let fetched = crate::ops::fetch::fetch_sets(ctx, &store, vec![set], stamp, obs)?;
        stamp = Some(fetched.stamp);
    }
    let catalog = Catalog::open_existing(&ctx.cfg);
    let b = catalog.find(set, stamp.as_ref())?;
    let parent = match into.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let leaf = into.file_name().ok_or_else(|| {
        Error::Refused(format!(
            "{}: not a directory name to create",
            into.display()
        ))
    })?;
    let temp = parent.join(format!(
        ".{}.{}.partial",
        leaf.to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&temp)
        .ctx(|| format!("creating {}", temp.display()))?;
    let mut written = Vec::new();
    let mut dirs = Vec::new();
    let res = read_archive(ctx, &b, |m| extract(&temp, m, &mut written, &mut dirs));
    let res = res.and_then(|sha| {
        // Directory modes last: a 0500 directory would refuse its files.
        for (dir, mode) in dirs.iter().rev() {
            set_mode(&temp.join(dir), *mode)?;
        }
        // Every file on disk before DIR gets its name: one syncfs(2) of the
        // file system, not one fsync per file (4 067 files took 15 s so).
        let d = File::open(&temp).ctx(|| format!("opening {}", temp.display()))?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::io(format!("syncing {}", temp.display()), e));
        }
        std::fs::rename(&temp, into)
            .ctx(|| format!("renaming {} to {}", temp.display(), into.display()))?;
        crate::catalog::fsutil::sync_dir(parent)?;
        Ok(sha)
    });
    let sha256 = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = make_removable(&temp);
            let _ = std::fs::remove_dir_all(&temp);
            return Err(e);
        }
    };
    for w in &mut written {
        w.path = into.join(&w.path);
    }
    info!(
        "restore-config: {} file(s) of {} into {}",
        written.len(),
        b.file_name(),
        into.display()
    );
    Ok(RestoreConfigReport {
        timestamp: b.stamp,
        archive: b.file_name(),
        sha256,
        into: into.to_path_buf(),
        files: written,
    })
}

/// `into` must not exist, or be an empty directory.
fn refuse_non_empty(into: &Path) -> Result<()> {
    match std::fs::read_dir(into) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("reading {}", into.display()), e)),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::Refused(format!(
                "{} is not empty: restore-config writes only into a new or empty directory \
             (it never overwrites files in place); name another --into",
                into.display()
            ))),
        },
    }
}

fn extract(
    root: &Path,
    m: Member,
    written: &mut Vec<Written>,
    dirs: &mut Vec<(PathBuf, u32)>,
) -> Result<()> {
    let path = root.join(&m.path);
    let private = || {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        b
    };
    if let Some(parent) = path.parent() {
        private()
            .create(parent)
            .ctx(|| format!("creating {}", parent.display()))?;
    }
    let Some(bytes) = m.data else {
        private()
            .create(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        dirs.push((m.path, m.mode));
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .ctx(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, &bytes).ctx(|| format!("writing {}", path.display()))?;
    set_mode(&path, m.mode)?;
    written.push(Written {
        path: m.path,
        size: bytes.len() as u64,
        mode: format!("{:04o}", m.mode),
    });
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .ctx(|| format!("setting the mode of {}", path.display()))
}

/// Opens the directories of a failed extraction for its removal.
fn make_removable(dir: &Path) -> std::io::Result<()> {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_dir() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_known_by_name() {
        for s in [
            ".env",
            "prod.env",
            ".env.local",
            "tls.key",
            "ca.PEM",
            "id_rsa",
            "id_ed25519.pub",
            "credentials.json",
            "db-secret.yaml",
        ] {
            assert!(looks_secret(s), "{s}");
        }
        for s in [
            "docker-compose.yml",
            "deploy.yaml",
            "environment.md",
            "keys.txt",
        ] {
            assert!(!looks_secret(s), "{s}");
        }
    }

    #[test]
    fn kubernetes_secrets_are_known_by_their_kind() {
        let yes = [
            "apiVersion: v1\nkind: Secret\ndata: {}\n",
            "items:\n- apiVersion: v1\n  kind: Secret\n",
            "items:\n- kind: Secret\n",
            "{\"kind\": \"Secret\", \"data\": {}}\n{\n  \"kind\": \"Secret\",\n}",
        ];
        for s in yes {
            assert!(holds_k8s_secret(s.as_bytes()), "{s}");
        }
        let no = [
            "kind: ConfigMap\n",
            "# kind: SecretProviderClass\n",
            "secretName: db\n",
        ];
        for s in no {
            assert!(!holds_k8s_secret(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn members_outside_the_directory_are_refused() {
        for bad in ["/etc/passwd", "files/../../x", "..", "", "./a"] {
            assert!(!is_safe_member(Path::new(bad)), "{bad}");
        }
        assert!(is_safe_member(Path::new("files/etc/valerix/.env")));
    }

    fn ctx() -> Context {
        let text = "backup_dir = \"b\"\n[[database]]\nname = \"o\"\ndbname = \"o\"\nuser = \"u\"\n";
        let cfg = crate::Config::parse(text, Path::new("x.toml")).unwrap();
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        Context::new(cfg, crate::ui::Progress::hidden(), cancel)
    }

    fn run(argv: &[&str], secs: u64) -> std::result::Result<Vec<u8>, String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        run_command(&ctx(), &argv, Duration::from_secs(secs)).unwrap()
    }

    #[test]
    fn commands_give_their_output_or_one_reason() {
        assert_eq!(run(&["printf", "a\\nb"], 5).unwrap(), b"a\nb");
        let e = run(
            &["sh", "-c", "echo; echo '  no such namespace  ' >&2; exit 3"],
            5,
        );
        assert_eq!(e.unwrap_err(), "exit status: 3: no such namespace");
        let e = run(&["/nonexistent/kubectl"], 5).unwrap_err();
        assert!(e.starts_with("cannot run /nonexistent/kubectl: "), "{e}");
        let t = Instant::now();
        let e = run(&["sleep", "30"], 1).unwrap_err();
        assert!(e.contains("killed after 1 s"), "{e}");
        // A background process holding the output open is ended too.
        let e = run(&["sh", "-c", "sleep 30 & echo started"], 1).unwrap_err();
        assert!(e.contains("kept its output open"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn config_check_names_missing_paths_and_programs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), "x").unwrap();
        let text = "backup_dir = \"b\"\n[[database]]\nname = \"o\"\ndbname = \"o\"\n\
                    user = \"u\"\n[config_backup]\npaths = [\"compose.yml\", \"gone.yml\", \"*.none\"]\n\
                    commands = [[\"sh\", \"-c\", \"exit 1\"], [\"no-such-program-here\"]]\n";
        let cfg = crate::Config::parse(text, &dir.path().join("x.toml")).unwrap();
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ctx = Context::new(cfg, crate::ui::Progress::hidden(), cancel);
        let got: Vec<(String, bool)> = check(&ctx)
            .into_iter()
            .map(|(w, r)| (w, r.is_ok()))
            .collect();
        let want = [
            ("config_backup path compose.yml", true),
            ("config_backup path gone.yml", false),
            ("config_backup path *.none", true),
            ("config_backup command 1", true),
            ("config_backup command 2", false),
            ("config_backup secrets", true),
        ];
        assert_eq!(got, want.map(|(w, ok)| (w.to_string(), ok)));
    }

    #[test]
    fn command_slugs_are_file_names() {
        let argv: Vec<String> = [
            "kubectl",
            "get",
            "deploy,svc,cm",
            "-n",
            "valerix",
            "-o",
            "yaml",
        ]
        .map(String::from)
        .into();
        assert_eq!(slug(&argv), "kubectl-get-deploy-svc-cm-n-valerix-o-yaml");
        assert_eq!(slug(&["/bin/sh".into()]), "bin-sh");
    }
}
