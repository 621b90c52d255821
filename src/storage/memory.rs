//! A store in memory, for unit tests of the repository's rules: what the
//! audit, retention and tag rules do, without Azurite. Tests seed objects
//! with [`MemoryStore::put`] (any metadata, tags, tier and creation time) and
//! can make one operation fail, as a credential without a permission would.

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
        self.objects.lock().unwrap().remove(name);
        Ok(())
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
