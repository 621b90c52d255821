//! Dry run as a wrapper: reads go to the store, writes, deletes and tag
//! changes are logged and not done. An operation run over it computes
//! exactly what it would do, with no branch for the dry run inside it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use tracing::info;

use super::{Object, Store, WriteSpec, WriteStats};
use crate::error::Result;
use crate::ui::Bar;

pub struct DryRun<'a>(pub &'a dyn Store);

impl Store for DryRun<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        self.0.list(prefix)
    }

    fn head(&self, name: &str) -> Result<Option<Object>> {
        self.0.head(name)
    }

    fn read(&self, name: &str, out: &mut dyn Write, cancel: &AtomicBool, bar: &Bar) -> Result<u64> {
        self.0.read(name, out, cancel, bar)
    }

    fn read_small(&self, name: &str, cancel: &AtomicBool) -> Result<Vec<u8>> {
        self.0.read_small(name, cancel)
    }

    fn write_file(
        &self,
        path: &Path,
        name: &str,
        _spec: &WriteSpec,
        _cancel: &AtomicBool,
        _bar: &Bar,
    ) -> Result<WriteStats> {
        info!("dry run: would write {name} from {}", path.display());
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(WriteStats {
            bytes,
            blocks: 0,
            resumed_blocks: 0,
        })
    }

    fn write_bytes(&self, name: &str, _bytes: &[u8], _spec: &WriteSpec) -> Result<()> {
        info!("dry run: would write {name}");
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        // What the store would refuse is refused here too, so a dry run of
        // `prune --offsite` says which copies it would keep.
        if let Some(e) = self
            .0
            .head(name)?
            .and_then(|o| o.protection.refusal(name, chrono::Utc::now()))
        {
            return Err(e);
        }
        info!("dry run: would delete {name}");
        Ok(())
    }

    fn set_tags(&self, name: &str, _tags: &BTreeMap<String, String>) -> Result<()> {
        info!("dry run: would set the tags of {name}");
        Ok(())
    }

    fn set_legal_hold(&self, name: &str, hold: bool) -> Result<()> {
        let what = if hold { "set" } else { "clear" };
        info!("dry run: would {what} the legal hold of {name}");
        Ok(())
    }

    fn set_policy(&self, name: &str, policy: &crate::storage::Policy) -> Result<()> {
        info!(
            "dry run: would set the immutability policy of {name} until {}",
            policy.until
        );
        Ok(())
    }

    fn previous_versions(&self, prefix: &str) -> Result<Vec<Object>> {
        self.0.previous_versions(prefix)
    }
}
