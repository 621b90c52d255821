//! Client-side encryption of backup files with age (X25519 recipients).
//!
//! An encrypted backup is the very gzip file an unencrypted backup would
//! be, then age-encrypted in the same streaming pass: `compress -> encrypt
//! -> hash -> file`, so the manifest's SHA-256 is over the stored bytes and
//! every check of a file as stored (`verify` without `--deep`, `audit
//! --deep`, the upload's commit check) needs no private key. Only what
//! reads the dump inside (`verify --deep`, `restore`) needs the identity.
//! Stock tools read it: `age -d -i key.txt FILE | gunzip | pg_restore`.
//!
//! age's STREAM format authenticates every 64 KiB chunk and marks the last
//! one, so a byte changed anywhere or a file cut short fails the read with
//! an authentication error, before a single byte of it reaches a database.
//!
//! The identity (the private key) is read from a file named by
//! `$VALERIX_BACKUP_IDENTITY_FILE` or `[encryption] identity_file`, never
//! from the command line; its contents never enter a message.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::stream::{StreamReader, StreamWriter};
use age::x25519;

use crate::config::Config;
use crate::error::{Error, Result};

pub use crate::config::ENV_IDENTITY_FILE;

/// The identity that opens encrypted backups, read from the file the
/// environment or `[encryption] identity_file` names
/// ([`Config::identity_path`]).
pub fn identities(cfg: &Config) -> Result<Identities> {
    let path = cfg.identity_path().ok_or_else(|| {
        Error::Missing(format!(
            "no identity to open encrypted backups: set {ENV_IDENTITY_FILE} or \
             [encryption] identity_file to the file of the private key \
             (see docs/runbook.md, \"Key custody\")"
        ))
    })?;
    Identities::load(&path)
}

/// Wraps `out` so that what is written to it is age-encrypted to
/// `recipients`; [`Sealed::finish`] writes the last chunk.
pub enum Sealed<W: Write> {
    Plain(W),
    Age(StreamWriter<W>),
}

impl<W: Write> Sealed<W> {
    /// Encrypted to `recipients`, or plain when there are none.
    pub fn new(out: W, recipients: &[x25519::Recipient]) -> io::Result<Sealed<W>> {
        if recipients.is_empty() {
            return Ok(Sealed::Plain(out));
        }
        let each = recipients.iter().map(|r| r as &dyn age::Recipient);
        let enc = age::Encryptor::with_recipients(each)
            .map_err(|e| io::Error::other(format!("age: {e}")))?;
        enc.wrap_output(out).map(Sealed::Age)
    }

    /// Ends the stream (age's final chunk) and gives `out` back.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            Sealed::Age(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.write_all(buf),
            Sealed::Age(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

/// The private keys that open backups, read from one identity file.
pub struct Identities {
    path: PathBuf,
    keys: Vec<Box<dyn age::Identity>>,
    /// Their public keys, for messages.
    public: Vec<String>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("path", &self.path)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Identities {
    /// Reads the age identity file at `path` (lines `AGE-SECRET-KEY-1...`,
    /// comments allowed, as `age-keygen` writes it).
    pub fn load(path: &Path) -> Result<Identities> {
        let what = || format!("identity file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Missing(format!(
                "{}: {e} (the private key that opens encrypted backups; see docs/runbook.md, \
             \"Key custody\")",
                what()
            ))
        })?;
        let mut keys: Vec<Box<dyn age::Identity>> = Vec::new();
        let mut public = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Never the line itself in a message: it is a private key.
            let key = x25519::Identity::from_str(line).map_err(|_| Error::Invalid {
                what: "identity file line",
                value: format!("{}:{}", path.display(), i + 1),
                why: "not an age X25519 identity (AGE-SECRET-KEY-1..., as age-keygen writes)",
            })?;
            public.push(key.to_public().to_string());
            keys.push(Box::new(key));
        }
        if keys.is_empty() {
            return Err(Error::Missing(format!("{}: holds no age identity", what())));
        }
        Ok(Identities {
            path: path.to_path_buf(),
            keys,
            public,
        })
    }

    /// The public keys of these identities.
    pub fn public_keys(&self) -> &[String] {
        &self.public
    }

    /// A reader of the plain bytes of the age stream `input` (of file
    /// `file`, named in errors; `made_for`: the recipients its manifest
    /// lists, for the message when no key fits).
    pub fn open<R: Read>(
        &self,
        input: R,
        file: &str,
        made_for: &[String],
    ) -> Result<StreamReader<BufReader<R>>> {
        let corrupt = |reason: String| Error::Corrupt {
            file: file.to_string(),
            reason,
        };
        let dec = age::Decryptor::new_buffered(BufReader::with_capacity(1 << 16, input))
            .map_err(|e| corrupt(format!("not a readable age file: {e}")))?;
        dec.decrypt(self.keys.iter().map(|k| k.as_ref()))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::Refused(format!(
                    "{file}: none of the keys in {} opens it (they are {}; it was encrypted \
                     to {}): use the identity of one of its recipients",
                    self.path.display(),
                    self.public.join(", "),
                    if made_for.is_empty() {
                        "recipients its manifest does not name".to_string()
                    } else {
                        made_for.join(", ")
                    }
                )),
                e => corrupt(format!("its age header is damaged: {e}")),
            })
    }
}

/// The reason to give for an error read from an age stream: age's
/// authentication catches any change and any cut.
pub fn read_failure(e: &io::Error) -> Option<String> {
    let msg = e.to_string();
    let age = e.kind() == io::ErrorKind::InvalidData
        && (msg.contains("decryption error") || msg.contains("last chunk"))
        || e.kind() == io::ErrorKind::UnexpectedEof;
    age.then(|| {
        "age authentication failed: the encrypted file was altered or cut short after \
         it was written"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (x25519::Identity, x25519::Recipient) {
        let id = x25519::Identity::generate();
        let r = id.to_public();
        (id, r)
    }

    fn identities_of(dir: &Path, ids: &[&x25519::Identity]) -> Identities {
        use age::secrecy::ExposeSecret;
        let path = dir.join("key.txt");
        let text: Vec<String> = ids
            .iter()
            .map(|i| i.to_string().expose_secret().to_string())
            .collect();
        std::fs::write(&path, format!("# test key\n{}\n", text.join("\n"))).unwrap();
        Identities::load(&path).unwrap()
    }

    fn seal(plain: &[u8], to: &[x25519::Recipient]) -> Vec<u8> {
        let mut w = Sealed::new(Vec::new(), to).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_for_any_of_its_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let ((a, ra), (b, rb)) = (pair(), pair());
        let plain: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let sealed = seal(&plain, &[ra, rb]);
        assert_ne!(&sealed[..20], &plain[..20]);
        for id in [&a, &b] {
            let ids = identities_of(dir.path(), &[id]);
            let mut out = Vec::new();
            ids.open(&sealed[..], "f", &[])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain);
        }
        assert_eq!(seal(b"x", &[]), b"x", "no recipients: plain");
    }

    #[test]
    fn a_wrong_key_a_change_and_a_cut_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ((_, ra), (other, _)) = (pair(), pair());
        let plain = vec![7u8; 300_000];
        let sealed = seal(&plain, std::slice::from_ref(&ra));
        let wrong = identities_of(dir.path(), &[&other]);
        let Err(e) = wrong.open(&sealed[..], "f.age", &[ra.to_string()]) else {
            panic!("opened with the wrong key");
        };
        let e = e.to_string();
        assert!(
            e.contains("none of the keys") && e.contains(&ra.to_string()),
            "{e}"
        );
        assert!(!e.contains("AGE-SECRET-KEY"), "{e}");

        let (right, r) = pair();
        let sealed = seal(&plain, &[r]);
        let ids = identities_of(dir.path(), &[&right]);
        let read = |bytes: &[u8]| {
            let mut out = Vec::new();
            ids.open(bytes, "f", &[]).unwrap().read_to_end(&mut out)
        };
        let mut changed = sealed.clone();
        let mid = changed.len() / 2;
        changed[mid] ^= 1;
        let cut = &sealed[..sealed.len() - 100];
        for bad in [&changed[..], cut] {
            let e = read(bad).unwrap_err();
            assert!(read_failure(&e).is_some(), "{e:?}");
        }
    }

    #[test]
    fn identity_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, "AGE-SECRET-KEY-1NOTAKEY\n").unwrap();
        let e = Identities::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.txt:1") && !e.contains("NOTAKEY"), "{e}");
        let e = Identities::load(&dir.path().join("none.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.txt"), "{e}");
    }
}
