//! The storage seam: the few operations a backup repository needs from a
//! place that holds named objects, in this project's own terms (names,
//! metadata and tag maps, write-once objects), with no SDK type in it.
//!
//! Drivers:
//! - [`azure::AzureStore`]: an Azure Blob Storage container; the blob
//!   client, its login and every SDK type are private to `storage::azure`;
//! - [`dir::DirStore`]: a directory, metadata and tags in a hidden sidecar
//!   (its flat view is the local backup directory of `catalog::Catalog`);
//! - [`memory::MemoryStore`]: in memory, for the unit tests of the rules.
//!
//! Behaviour that cuts across drivers is a wrapper around the trait, as in
//! rustic: [`dry_run::DryRun`] reads through and writes nothing;
//! [`retry::Retry`] tries a transient failure again, a few times, settling
//! a write-once whose answer was lost by looking at the object.

pub mod azure;
pub mod dir;
pub mod dry_run;
pub mod memory;
pub mod retry;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use crate::config::{AccessTierName, ImmutabilityMode};
use crate::error::{Error, Result};
use crate::offsite::{SUPERSEDED_TAG, SUPERSEDED_VALUE};
use crate::pipeline::hash::check_sha256;
use crate::ui::Bar;

pub use crate::offsite::MAX_MANIFEST_BYTES;

/// One stored object as listed: what the audit and restore need to judge
/// it. `access_tier` and `etag` are what the store reports, when it has
/// them (Azure does; the directory driver keeps them beside the file).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Object {
    pub name: String,
    pub size: u64,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub access_tier: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub etag: Option<String>,
    /// Its immutability policy and legal hold (Azure version-level WORM).
    pub protection: Protection,
}

/// A time-based retention policy: until when, in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub until: DateTime<Utc>,
    pub mode: ImmutabilityMode,
}

/// What keeps an object from being deleted or changed: a time-based
/// retention policy (which stops protecting once its date passes) and a
/// legal hold (until it is cleared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Protection {
    pub policy: Option<Policy>,
    pub legal_hold: bool,
}

impl Protection {
    /// Whether the object may not be deleted or changed as of `now`.
    pub fn protects(&self, now: DateTime<Utc>) -> bool {
        self.legal_hold || self.policy.is_some_and(|p| p.until > now)
    }

    /// The refusal of a delete of `name` while protected, worded as the
    /// Azure driver words the service's 409 (the local drivers').
    pub fn refusal(&self, name: &str, now: DateTime<Utc>) -> Option<Error> {
        let why = if self.legal_hold {
            "HTTP 409 BlobImmutableDueToLegalHold (the copy is under a legal hold: \
             `valerix-backup hold clear` lifts it)"
                .to_string()
        } else {
            match self.policy {
                Some(p) if p.until > now => format!(
                    "HTTP 409 BlobImmutableDueToPolicy (the copy is under an immutability policy \
                     until {})",
                    p.until.format("%Y-%m-%d %H:%M UTC")
                ),
                _ => return None,
            }
        };
        Some(Error::Immutable(format!("deleting {name}: {why}")))
    }
}

impl Object {
    /// Its `sha256` metadata, checked: an error naming the object when it
    /// is missing or not a SHA-256.
    pub fn sha256(&self) -> Result<String> {
        self.metadata_sha256().map_err(|reason| Error::Corrupt {
            file: self.name.clone(),
            reason,
        })
    }

    /// As [`Object::sha256`], the reason alone (for audit findings).
    pub fn metadata_sha256(&self) -> std::result::Result<String, String> {
        let value = self
            .metadata
            .get("sha256")
            .ok_or_else(|| "no sha256 in its metadata".to_string())?;
        check_sha256("its metadata sha256", value)
    }

    /// Whether it carries the tag that lets the lifecycle policy delete it.
    pub fn is_superseded(&self) -> bool {
        self.tags.get(SUPERSEDED_TAG).map(String::as_str) == Some(SUPERSEDED_VALUE)
    }
}

/// What a new object carries besides its content.
#[derive(Debug, Clone, Default)]
pub struct WriteSpec {
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub tier: Option<AccessTierName>,
    /// The SHA-256 (hex) the content must have: checked while writing,
    /// before the object gets its name, so a file that changed is never
    /// stored.
    pub expect_sha256: Option<String>,
    /// The immutability policy the object is written under (set in the
    /// same request as the content, so no window without it).
    pub policy: Option<Policy>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct WriteStats {
    pub bytes: u64,
    pub blocks: usize,
    /// Blocks already staged by an earlier, interrupted run (Azure).
    pub resumed_blocks: usize,
}

/// A place holding named, write-once objects with metadata and tags.
pub trait Store {
    /// Where it is, for messages (no secrets).
    fn describe(&self) -> String;
    /// Makes the store usable (creates an Azure container, a directory).
    fn prepare(&self) -> Result<()>;
    /// Every object whose name starts with `prefix`, with metadata and tags.
    fn list(&self, prefix: &str) -> Result<Vec<Object>>;
    /// One object's properties and metadata (tags may be empty), `None`
    /// when it does not exist.
    fn head(&self, name: &str) -> Result<Option<Object>>;
    /// Streams object `name` into `out`; the bytes written. Nothing is
    /// checked: the caller hashes what it receives.
    fn read(&self, name: &str, out: &mut dyn Write, cancel: &AtomicBool, bar: &Bar) -> Result<u64>;
    /// A small object (a manifest) into memory, refused when larger than
    /// [`MAX_MANIFEST_BYTES`].
    fn read_small(&self, name: &str, cancel: &AtomicBool) -> Result<Vec<u8>>;
    /// Writes file `path` as object `name`, never over an existing one, and
    /// only when its SHA-256 is `spec.expect_sha256` (when given). By
    /// default in one piece, through [`Store::write_bytes`] (the local
    /// drivers); Azure streams it in blocks.
    fn write_file(
        &self,
        path: &Path,
        name: &str,
        spec: &WriteSpec,
        _cancel: &AtomicBool,
        bar: &Bar,
    ) -> Result<WriteStats> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        self.write_bytes(name, &bytes, spec)?;
        bar.inc(bytes.len());
        Ok(WriteStats {
            bytes: bytes.len() as u64,
            blocks: 1,
            resumed_blocks: 0,
        })
    }
    /// Writes a small object the same way.
    fn write_bytes(&self, name: &str, bytes: &[u8], spec: &WriteSpec) -> Result<()>;
    /// Deletes object `name`; a missing one is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// Replaces the tags of object `name`, content and ETag unchanged.
    fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()>;
    /// Sets or clears the legal hold of object `name`.
    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()>;
    /// Sets the immutability policy of object `name` (Set Blob Immutability
    /// Policy: an unlocked one may be changed, a locked one only extended).
    fn set_policy(&self, name: &str, policy: &Policy) -> Result<()>;
    /// The previous versions of objects under `prefix` that blob versioning
    /// keeps (Azure; the local drivers keep none): what deleted copies still
    /// cost until the lifecycle policy removes them.
    fn previous_versions(&self, _prefix: &str) -> Result<Vec<Object>> {
        Ok(Vec::new())
    }
}

/// Sets `policy` on an object's `protection` as Azure's Set Blob
/// Immutability Policy does (the local drivers'): a locked policy that has
/// not ended may only be extended, and stays locked.
fn apply_policy(name: &str, protection: &mut Protection, policy: &Policy) -> Result<()> {
    if let Some(old) = protection.policy
        && old.mode == ImmutabilityMode::Locked
        && old.until > chrono::Utc::now()
        && (policy.until < old.until || policy.mode != ImmutabilityMode::Locked)
    {
        return Err(Error::Immutable(format!(
            "{name}: its immutability policy is locked until {}: it can only be extended",
            old.until.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    protection.policy = Some(*policy);
    Ok(())
}

/// The refusal of a write over an existing object (the local drivers').
fn exists(name: &str) -> Error {
    Error::Refused(format!("{name} already exists; not replacing it"))
}

/// The refusal of content whose SHA-256 (`got`) is not the expected one,
/// before it becomes an object (the local drivers'; Azure checks before its
/// commit).
fn check_expected(name: &str, got: &str, spec: &WriteSpec) -> Result<()> {
    match &spec.expect_sha256 {
        Some(want) if !want.eq_ignore_ascii_case(got) => Err(Error::Corrupt {
            file: name.to_string(),
            reason: format!(
                "SHA-256 {} does not match the manifest's {}; not written",
                crate::offsite::short(got),
                crate::offsite::short(want)
            ),
        }),
        _ => Ok(()),
    }
}

/// A small read's bytes (read up to one past the limit), refused past
/// [`MAX_MANIFEST_BYTES`].
fn small(name: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.len() as u64 <= MAX_MANIFEST_BYTES {
        return Ok(bytes);
    }
    Err(Error::Corrupt {
        file: name.to_string(),
        reason: format!(
            "larger than {} KiB, too large for a manifest; not read",
            MAX_MANIFEST_BYTES >> 10
        ),
    })
}

/// The object a local driver makes of a write of `size` bytes with that
/// SHA-256; its ETag comes from the content, so a rewrite under the same
/// name has a new one, as in Azure.
fn object_of(name: &str, size: u64, sha256: &str, spec: &WriteSpec) -> Object {
    Object {
        name: name.to_string(),
        size,
        metadata: spec.metadata.clone(),
        tags: spec.tags.clone(),
        access_tier: spec.tier.map(|t| t.as_str().to_string()),
        created: Some(chrono::Utc::now()),
        etag: Some(format!("\"{}\"", &sha256[..16])),
        protection: Protection {
            policy: spec.policy,
            legal_hold: false,
        },
    }
}

/// Copies `bytes` to `out` in pieces, honouring `cancel` (local drivers).
fn copy_out(
    name: &str,
    bytes: &[u8],
    out: &mut dyn Write,
    cancel: &AtomicBool,
    bar: &Bar,
) -> Result<u64> {
    for chunk in bytes.chunks(1 << 20) {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        out.write_all(chunk)
            .map_err(|e| Error::io(format!("writing {name}"), e))?;
        bar.inc(chunk.len());
    }
    Ok(bytes.len() as u64)
}
