//! The Resource Manager resources valerix-backup reads, typed: a PostgreSQL
//! flexible server and the subscription's locations (for paired regions).
//! Only the fields used are declared; every one is optional, as the service
//! leaves out what does not apply (a server being created has no FQDN).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tracing::warn;

use crate::arm::{Arm, LOCATIONS_API};
use crate::error::{Error, Result};

/// `Microsoft.DBforPostgreSQL/flexibleServers/<name>`, as GET returns it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlexibleServer {
    pub location: Option<String>,
    pub tags: Option<BTreeMap<String, Value>>,
    pub properties: Option<ServerProperties>,
    pub system_data: Option<SystemData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServerProperties {
    pub state: Option<String>,
    pub fully_qualified_domain_name: Option<String>,
    pub backup: Option<ServerBackup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServerBackup {
    pub backup_retention_days: Option<u64>,
    pub geo_redundant_backup: Option<String>,
    pub earliest_restore_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SystemData {
    pub created_at: Option<String>,
}

impl FlexibleServer {
    /// The server in an answer's body; a body of another shape reads as a
    /// server with nothing set (and says so in the log).
    pub fn from_body(body: &Value) -> FlexibleServer {
        if body.is_null() {
            return FlexibleServer::default();
        }
        serde_json::from_value(body.clone()).unwrap_or_else(|e| {
            warn!("unexpected flexible server document: {e}");
            FlexibleServer::default()
        })
    }

    fn properties(&self) -> Option<&ServerProperties> {
        self.properties.as_ref()
    }

    fn backup(&self) -> Option<&ServerBackup> {
        self.properties()?.backup.as_ref()
    }

    pub fn state(&self) -> Option<&str> {
        self.properties()?.state.as_deref()
    }

    pub fn fqdn(&self) -> Option<&str> {
        self.properties()?.fully_qualified_domain_name.as_deref()
    }

    /// `Enabled` or `Disabled` (absent reads as `Disabled`).
    pub fn geo_redundant_backup(&self) -> &str {
        self.backup()
            .and_then(|b| b.geo_redundant_backup.as_deref())
            .unwrap_or("Disabled")
    }

    pub fn backup_retention_days(&self) -> Option<u64> {
        self.backup()?.backup_retention_days
    }

    pub fn earliest_restore_date(&self) -> Option<&str> {
        self.backup()?.earliest_restore_date.as_deref()
    }

    pub fn created_at(&self) -> Option<&str> {
        self.system_data.as_ref()?.created_at.as_deref()
    }

    /// A tag's value; tag names are case-insensitive in Azure.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }
}

/// `GET /subscriptions/<sub>/locations`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Locations {
    value: Vec<Location>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Location {
    name: Option<String>,
    metadata: Option<LocationMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LocationMetadata {
    paired_region: Vec<PairedRegion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PairedRegion {
    name: Option<String>,
}

/// Region names as Resource Manager compares them (`West US` = `westus`).
pub fn region(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

/// The paired region of `location`, from the subscription's locations.
pub fn paired_region(arm: &Arm, sub: &str, location: &str) -> Result<Option<String>> {
    let a = arm.get(&arm.url(&format!("/subscriptions/{sub}/locations"), LOCATIONS_API))?;
    if !a.ok() {
        return Err(Error::Check(format!(
            "listing locations: {}",
            a.error_text()
        )));
    }
    let locations: Locations = serde_json::from_value(a.body).unwrap_or_default();
    let want = region(location);
    Ok(locations
        .value
        .into_iter()
        .find(|l| l.name.as_deref().map(region).as_deref() == Some(want.as_str()))
        .and_then(|l| l.metadata?.paired_region.into_iter().next()?.name)
        .map(|n| region(&n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_server_reads_from_its_document() {
        let s = FlexibleServer::from_body(&json!({
            "location": "West Europe",
            "tags": { "Valerix-Backup-Request": "r1", "n": 3 },
            "properties": {
                "state": "Ready",
                "fullyQualifiedDomainName": "h.example",
                "backup": { "geoRedundantBackup": "Enabled", "backupRetentionDays": 30 }
            },
            "systemData": { "createdAt": "2026-11-30T00:00:00Z" }
        }));
        assert_eq!(s.state(), Some("Ready"));
        assert_eq!(s.fqdn(), Some("h.example"));
        assert_eq!(s.geo_redundant_backup(), "Enabled");
        assert_eq!(s.backup_retention_days(), Some(30));
        assert_eq!(s.earliest_restore_date(), None);
        assert_eq!(s.tag("valerix-backup-request"), Some("r1"));
        assert_eq!(s.tag("n"), None);
        assert_eq!(s.created_at(), Some("2026-11-30T00:00:00Z"));
        let empty = FlexibleServer::from_body(&Value::Null);
        assert_eq!(empty.geo_redundant_backup(), "Disabled");
        assert_eq!(empty.state(), None);
    }
}
