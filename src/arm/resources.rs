//! The Resource Manager resources valerix-backup reads, typed: a PostgreSQL
//! flexible server, the subscription's locations (for paired regions) and a
//! storage account's lifecycle management policy.
//! Only the fields used are declared; every one is optional, as the service
//! leaves out what does not apply (a server being created has no FQDN).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::warn;

use crate::arm::{Arm, LOCATIONS_API};
use crate::error::Result;

/// `Microsoft.DBforPostgreSQL/flexibleServers/<name>`, as GET returns it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlexibleServer {
    pub id: Option<String>,
    pub name: Option<String>,
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
    /// Returned only for a read replica (2025-08-01: "This property is
    /// returned only when the target server is a read replica").
    pub source_server_resource_id: Option<String>,
    pub replica: Option<Replica>,
}

/// `properties.replica` (2025-08-01 `Replica`): `role` is one of `None`,
/// `Primary`, `AsyncReplica`, `GeoAsyncReplica` (`ReplicationRole`);
/// `replicationState` one of `Active`, `Catchup`, `Provisioning`,
/// `Updating`, `Broken`, `Reconfiguring`, returned for read replicas only.
/// `promoteMode` and `promoteOption` are write-only: sent, never read.
/// Resource Manager reports no replication lag (the spec has no such
/// field; Azure Monitor's `physical_replication_delay_in_seconds` has it).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Replica {
    pub role: Option<String>,
    pub capacity: Option<u64>,
    pub replication_state: Option<String>,
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

    fn replica(&self) -> Option<&Replica> {
        self.properties()?.replica.as_ref()
    }

    /// `properties.replica.role` (`Primary`, `AsyncReplica`, ...).
    pub fn replica_role(&self) -> Option<&str> {
        self.replica()?.role.as_deref()
    }

    pub fn replication_state(&self) -> Option<&str> {
        self.replica()?.replication_state.as_deref()
    }

    pub fn source_server_id(&self) -> Option<&str> {
        self.properties()?.source_server_resource_id.as_deref()
    }

    /// Whether the server is a read replica (its role says so).
    pub fn is_replica(&self) -> bool {
        matches!(
            self.replica_role(),
            Some("AsyncReplica" | "GeoAsyncReplica")
        )
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

/// `GET .../flexibleServers/{name}/replicas` (2025-08-01
/// `Replicas_ListByServer`, a `ServerList`) and `.../virtualendpoints`
/// (`VirtualEndpointsList`): `{"value": [...], "nextLink": ...}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct List<T> {
    pub value: Vec<T>,
    pub next_link: Option<String>,
}

impl<T: serde::de::DeserializeOwned + Default> List<T> {
    /// The list in an answer's body; a body of another shape is an error
    /// naming `what` (an empty list would hide the replicas).
    pub fn from_body(body: &Value, what: &str) -> Result<List<T>> {
        serde_json::from_value(body.clone()).map_err(|e| {
            crate::error::Error::Offsite(format!("unexpected answer listing {what}: {e}"))
        })
    }
}

/// A pair of virtual endpoints (2025-08-01 `VirtualEndpoint`):
/// `properties.endpointType` `ReadWrite`, `members` (the servers they
/// point at), `virtualEndpoints` (their host names, read-only).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualEndpoint {
    pub name: Option<String>,
    pub properties: Option<VirtualEndpointProperties>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualEndpointProperties {
    pub endpoint_type: Option<String>,
    pub members: Vec<String>,
    pub virtual_endpoints: Vec<String>,
}

impl VirtualEndpoint {
    /// The host names of the pair.
    pub fn hosts(&self) -> &[String] {
        self.properties
            .as_ref()
            .map_or(&[], |p| p.virtual_endpoints.as_slice())
    }

    /// The writer host name (`<name>.writer.postgres.database.azure.com`).
    pub fn writer(&self) -> Option<&str> {
        self.hosts()
            .iter()
            .find(|h| h.contains(".writer."))
            .map(String::as_str)
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
        return Err(a.refused("listing locations"));
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

/// `.../storageAccounts/<account>/blobServices/default` (GET): whether
/// blob versioning is on (`properties.isVersioningEnabled`, absent = off).
pub fn versioning_enabled(body: &Value) -> bool {
    body.pointer("/properties/isVersioningEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `.../blobServices/default/containers/<container>` (GET): whether the
/// container has version-level immutability support
/// (`properties.immutableStorageWithVersioning.enabled`, absent = off).
pub fn version_level_immutability(body: &Value) -> bool {
    body.pointer("/properties/immutableStorageWithVersioning/enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `Microsoft.Storage/storageAccounts/<account>/managementPolicies/default`:
/// the body of its GET and PUT, `{"properties": {"policy": {...}}}`.
///
/// The policy is written back whole, with the rules of other teams in it, so
/// every level keeps the fields it does not declare (`other`): a merge
/// changes our rules and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagementPolicy {
    pub properties: ManagementPolicyProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagementPolicyProperties {
    pub policy: PolicyDocument,
}

/// `{"rules": [...]}`: what `az storage account management-policy create
/// --policy @FILE` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyDocument {
    pub rules: Vec<PolicyRule>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyRule {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<RuleDefinition>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<RuleFilters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<RuleActions>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuleFilters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_match: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_index_match: Option<Vec<TagMatch>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One `blobIndexMatch` entry: `name op value`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagMatch {
    pub name: String,
    pub op: String,
    pub value: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuleActions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_blob: Option<BlobActions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<BlobActions>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The actions on a base blob or a version; only `delete` is ours (tiering
/// actions of other rules stay in `other`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlobActions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteAction>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeleteAction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_after_creation_greater_than: Option<u32>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ManagementPolicy {
    /// The policy in a GET answer's body. A body that does not read as a
    /// policy is an error, not an empty policy: writing back an empty one
    /// would delete every other rule.
    pub fn from_body(body: Value) -> std::result::Result<ManagementPolicy, serde_json::Error> {
        serde_json::from_value(body)
    }

    /// The PUT body for `policy`.
    pub fn of(policy: PolicyDocument) -> ManagementPolicy {
        ManagementPolicy {
            properties: ManagementPolicyProperties { policy },
        }
    }
}

impl PolicyRule {
    /// Whether the rule deletes base blobs.
    pub fn deletes_base_blobs(&self) -> bool {
        self.actions()
            .and_then(|a| a.base_blob.as_ref())
            .is_some_and(|b| b.delete.is_some())
    }

    /// Whether the rule filters on at least one blob index tag.
    pub fn matches_tags(&self) -> bool {
        self.filters()
            .and_then(|f| f.blob_index_match.as_ref())
            .is_some_and(|m| !m.is_empty())
    }

    /// `blobTypes` (empty: none given).
    pub fn blob_types(&self) -> &[String] {
        self.filters()
            .and_then(|f| f.blob_types.as_deref())
            .unwrap_or(&[])
    }

    /// `prefixMatch` (empty: every blob).
    pub fn prefixes(&self) -> &[String] {
        self.filters()
            .and_then(|f| f.prefix_match.as_deref())
            .unwrap_or(&[])
    }

    fn filters(&self) -> Option<&RuleFilters> {
        self.definition.as_ref()?.filters.as_ref()
    }

    fn actions(&self) -> Option<&RuleActions> {
        self.definition.as_ref()?.actions.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A merge writes other teams' rules back: every field they had, known
    /// here or not, survives a read and a write.
    #[test]
    fn a_foreign_rule_round_trips_whole() {
        let body = json!({
            "id": "/subscriptions/s/.../managementPolicies/default",
            "name": "DefaultManagementPolicy",
            "properties": {
                "lastModifiedTime": "2026-11-30T00:00:00Z",
                "policy": {
                    "rules": [{
                        "name": "logsTier", "enabled": false, "type": "Lifecycle",
                        "futureRuleField": { "x": 1 },
                        "definition": {
                            "filters": {
                                "blobTypes": ["blockBlob", "appendBlob"],
                                "prefixMatch": ["logs/"],
                                "blobIndexMatch": [{ "name": "team", "op": "==", "value": "ops", "extra": 2 }],
                                "futureFilter": true
                            },
                            "actions": {
                                "baseBlob": {
                                    "tierToCool": { "daysAfterModificationGreaterThan": 30 },
                                    "enableAutoTierToHotFromCool": true,
                                    "delete": { "daysAfterLastAccessTimeGreaterThan": 365, "daysAfterCreationGreaterThan": 400 }
                                },
                                "snapshot": { "delete": { "daysAfterCreationGreaterThan": 90 } },
                                "version": { "tierToArchive": { "daysAfterCreationGreaterThan": 9 } }
                            },
                            "futureDefinition": "y"
                        }
                    }, {
                        "name": "bare"
                    }],
                    "futurePolicyField": []
                }
            }
        });
        let policy = ManagementPolicy::from_body(body.clone()).unwrap();
        let rules = &policy.properties.policy.rules;
        assert_eq!(rules[0].name, "logsTier");
        assert!(rules[0].deletes_base_blobs());
        assert!(rules[0].matches_tags());
        assert_eq!(rules[0].prefixes(), ["logs/"]);
        assert!(!rules[1].deletes_base_blobs());
        assert!(rules[1].blob_types().is_empty());
        // The policy, rule by rule, comes back as it was sent.
        let back = serde_json::to_value(&policy.properties.policy).unwrap();
        assert_eq!(back, body["properties"]["policy"]);
        // The resource's own read-only fields are not sent back.
        let put = serde_json::to_value(ManagementPolicy::of(policy.properties.policy)).unwrap();
        assert_eq!(
            put,
            json!({ "properties": { "policy": body["properties"]["policy"] } })
        );
        // A body that is not a policy is refused, not read as an empty one.
        assert!(
            ManagementPolicy::from_body(json!({ "properties": { "policy": { "rules": 3 } } }))
                .is_err()
        );
    }

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
