//! The Azure Blob Storage driver: the [`Store`] operations on one container.
//! The SDK stays in here, in private modules: [`blob`] is the blob client
//! (the SDK's clients, its async runtime and retry policy, uploads in
//! blocks), [`auth`] how it logs in (connection string, SAS, Entra ID).
//! Nothing outside `storage::azure` sees them; the rest of the program
//! speaks [`Store`]. What a blob name or tier means is `crate::offsite`'s.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::retry::Retry;
use super::{Object, Store, WriteSpec, WriteStats};
use crate::config::Azure;
use crate::error::Result;
use crate::ui::Bar;
use blob::BlobStore;

mod auth;
mod blob;

pub struct AzureStore(BlobStore);

impl AzureStore {
    /// The configured container as every operation uses it: behind
    /// [`Retry`], a few whole-operation attempts over the SDK's retries of
    /// each request (see [`super::retry`] for why both). Logs in lazily, as
    /// the credential does.
    pub fn open(az: &Azure) -> Result<Retry<AzureStore>> {
        BlobStore::connect(az).map(|b| Retry::new(AzureStore(b)))
    }
}

impl Store for AzureStore {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn prepare(&self) -> Result<()> {
        self.0.ensure_container()
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        self.0.list(prefix)
    }

    fn head(&self, name: &str) -> Result<Option<Object>> {
        self.0.head(name)
    }

    fn read(&self, name: &str, out: &mut dyn Write, cancel: &AtomicBool, bar: &Bar) -> Result<u64> {
        self.0.download(name, out, cancel, bar)
    }

    fn read_small(&self, name: &str, cancel: &AtomicBool) -> Result<Vec<u8>> {
        self.0.download_small(name, cancel)
    }

    fn write_file(
        &self,
        path: &Path,
        name: &str,
        spec: &WriteSpec,
        cancel: &AtomicBool,
        bar: &Bar,
    ) -> Result<WriteStats> {
        self.0.upload_file(path, name, spec, cancel, bar)
    }

    fn write_bytes(&self, name: &str, bytes: &[u8], spec: &WriteSpec) -> Result<()> {
        self.0.upload_bytes(name, bytes, spec)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.0.delete(name)
    }

    fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        self.0.set_tags(name, tags)
    }

    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
        self.0.set_legal_hold(name, hold)
    }

    fn set_policy(&self, name: &str, policy: &crate::storage::Policy) -> Result<()> {
        self.0.set_policy(name, policy)
    }

    fn previous_versions(&self, prefix: &str) -> Result<Vec<Object>> {
        self.0.previous_versions(prefix)
    }
}
