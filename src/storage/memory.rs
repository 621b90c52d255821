//! A store in memory, for unit tests of the repository's rules: what the
//! audit, retention and tag rules do, without Azurite. Tests seed objects
//! with [`MemoryStore::put`] (any metadata, tags, tier and creation time) and
//! can make one operation fail, as a credential without a permission would.
//! As Azure with version-level immutability, it refuses to delete an object
//! under a policy or a legal hold, and keeps a deleted one as a previous
//! version (blob versioning).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use super::{Object, Store, WriteSpec};
use crate::error::{Error, Result};
use crate::ui::Bar;

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Object, Vec<u8>)>>,
    /// Operations that fail (`"set_tags"`, `"delete"`, `"list"`...).
    failing: Mutex<Vec<&'static str>>,
    /// Deleted objects, as blob versioning keeps them.
    previous: Mutex<Vec<Object>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Adds or replaces an object as it is, bypassing write-once: `obj`
    /// gives everything but the content, whose size it takes.
    pub fn put(&self, mut obj: Object, bytes: Vec<u8>) {
        obj.size = bytes.len() as u64;
        self.objects
            .lock()
            .unwrap()
            .insert(obj.name.clone(), (obj, bytes));
    }

    /// Replaces an object's content behind its metadata's back (a blob
    /// changed after upload), keeping its ETag as a bit flip would.
    pub fn tamper(&self, name: &str, bytes: Vec<u8>) {
        if let Some((_, b)) = self.objects.lock().unwrap().get_mut(name) {
            *b = bytes;
        }
    }

    /// Makes operation `op` fail from now on.
    pub fn fail(&self, op: &'static str) {
        self.failing.lock().unwrap().push(op);
    }

    pub fn names(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Object> {
        self.objects
            .lock()
            .unwrap()
            .get(name)
            .map(|(o, _)| o.clone())
    }

    fn check(&self, op: &'static str, name: &str) -> Result<()> {
        match self.failing.lock().unwrap().contains(&op) {
            // As the Azure driver reports a credential without the permission.
            true => Err(Error::Authentication(format!(
                "{name}: {op}: HTTP 403 AuthorizationPermissionMismatch"
            ))),
            false => Ok(()),
        }
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        self.check("read", name)?;
        self.objects
            .lock()
            .unwrap()
            .get(name)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| Error::NotFound(format!("{name}: HTTP 404 BlobNotFound")))
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        self.check("list", prefix)?;
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, (o, _))| o.clone())
            .collect())
    }

    fn head(&self, name: &str) -> Result<Option<Object>> {
        self.check("head", name)?;
        Ok(self.get(name).map(|o| Object {
            tags: BTreeMap::new(),
            ..o
        }))
    }

    fn read(&self, name: &str, out: &mut dyn Write, cancel: &AtomicBool, bar: &Bar) -> Result<u64> {
        super::copy_out(name, &self.bytes(name)?, out, cancel, bar)
    }

    fn read_small(&self, name: &str, _cancel: &AtomicBool) -> Result<Vec<u8>> {
        super::small(name, self.bytes(name)?)
    }

    fn write_bytes(&self, name: &str, bytes: &[u8], spec: &WriteSpec) -> Result<()> {
        self.check("write", name)?;
        let sha = crate::pipeline::hash::sha256_hex(bytes);
        super::check_expected(name, &sha, spec)?;
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(name) {
            return Err(super::exists(name));
        }
        let obj = super::object_of(name, bytes.len() as u64, &sha, spec);
        objects.insert(name.to_string(), (obj, bytes.to_vec()));
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.check("delete", name)?;
        let mut objects = self.objects.lock().unwrap();
        if let Some(e) = objects
            .get(name)
            .and_then(|(o, _)| o.protection.refusal(name, chrono::Utc::now()))
        {
            return Err(e);
        }
        if let Some((o, _)) = objects.remove(name) {
            self.previous.lock().unwrap().push(o);
        }
        Ok(())
    }

    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
        self.check("set_legal_hold", name)?;
        match self.objects.lock().unwrap().get_mut(name) {
            Some((o, _)) => {
                o.protection.legal_hold = hold;
                Ok(())
            }
            None => Err(Error::NotFound(format!("{name}: HTTP 404 BlobNotFound"))),
        }
    }

    fn set_policy(&self, name: &str, policy: &crate::storage::Policy) -> Result<()> {
        self.check("set_policy", name)?;
        match self.objects.lock().unwrap().get_mut(name) {
            Some((o, _)) => super::apply_policy(name, &mut o.protection, policy),
            None => Err(Error::NotFound(format!("{name}: HTTP 404 BlobNotFound"))),
        }
    }

    fn previous_versions(&self, prefix: &str) -> Result<Vec<Object>> {
        self.check("list", prefix)?;
        let previous = self.previous.lock().unwrap();
        Ok(previous
            .iter()
            .filter(|o| o.name.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        self.check("set_tags", name)?;
        match self.objects.lock().unwrap().get_mut(name) {
            Some((o, _)) => {
                o.tags = tags.clone();
                Ok(())
            }
            None => Err(Error::NotFound(format!("{name}: HTTP 404 BlobNotFound"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImmutabilityMode;
    use crate::error::Kind;
    use crate::storage::Policy;
    use chrono::{Duration, Utc};

    fn spec(until: chrono::DateTime<Utc>) -> WriteSpec {
        WriteSpec {
            policy: Some(Policy {
                until,
                mode: ImmutabilityMode::Unlocked,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn protected_objects_are_not_deleted_and_deleted_ones_stay_as_versions() {
        let s = MemoryStore::new();
        s.write_bytes("w/a", b"a", &spec(Utc::now() + Duration::days(1)))
            .unwrap();
        let e = s.delete("w/a").unwrap_err();
        assert_eq!(e.kind(), Kind::Immutable);
        assert!(e.to_string().contains("BlobImmutableDueToPolicy"), "{e}");
        assert_eq!(s.names(), ["w/a"]);
        // An expired policy protects nothing.
        s.write_bytes("w/b", b"bb", &spec(Utc::now() - Duration::seconds(1)))
            .unwrap();
        s.delete("w/b").unwrap();
        // A hold protects until it is cleared.
        s.write_bytes("w/c", b"c", &WriteSpec::default()).unwrap();
        s.set_legal_hold("w/c", true).unwrap();
        let e = s.delete("w/c").unwrap_err().to_string();
        assert!(e.contains("BlobImmutableDueToLegalHold"), "{e}");
        s.set_legal_hold("w/c", false).unwrap();
        s.delete("w/c").unwrap();
        assert_eq!(s.names(), ["w/a"]);
        let kept = s.previous_versions("w/").unwrap();
        let kept: Vec<(&str, u64)> = kept.iter().map(|o| (o.name.as_str(), o.size)).collect();
        assert_eq!(kept, [("w/b", 2), ("w/c", 1)]);
    }

    #[test]
    fn a_locked_policy_is_only_extended() {
        let s = MemoryStore::new();
        let until = Utc::now() + Duration::days(10);
        let locked = |until| Policy {
            until,
            mode: ImmutabilityMode::Locked,
        };
        s.write_bytes(
            "w/a",
            b"a",
            &WriteSpec {
                policy: Some(locked(until)),
                ..Default::default()
            },
        )
        .unwrap();
        let shorter = s.set_policy("w/a", &locked(until - Duration::days(1)));
        assert_eq!(shorter.unwrap_err().kind(), Kind::Immutable);
        let unlocked = Policy {
            until: until + Duration::days(1),
            mode: ImmutabilityMode::Unlocked,
        };
        assert_eq!(
            s.set_policy("w/a", &unlocked).unwrap_err().kind(),
            Kind::Immutable
        );
        s.set_policy("w/a", &locked(until + Duration::days(5)))
            .unwrap();
        let p = s.get("w/a").unwrap().protection.policy.unwrap();
        assert_eq!(p, locked(until + Duration::days(5)));
    }
}
