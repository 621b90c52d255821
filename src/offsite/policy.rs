//! The Azure Storage lifecycle management policy that enforces the offsite
//! retention, derived from `[azure]`: blobs under `<prefix>daily/` are
//! deleted `daily_retention_days` after upload, those under `<prefix>weekly/`
//! after `weekly_retention_days`. Azure applies it itself, so expired copies
//! go away even when no agent runs.
//!
//! `valerix-backup lifecycle-policy` prints it as the JSON document that
//! `az storage account management-policy create --policy @FILE` takes
//! (`{"rules": [...]}`; the ARM body wraps it as `properties.policy`), as a
//! Bicep `managementPolicies` resource or as a Terraform
//! `azurerm_storage_management_policy`. The Bicep and Terraform texts carry
//! the resource between `BEGIN`/`END` marker comments, and exactly that block
//! is pasted into `infra/`: a test below fails when the infra files drift from
//! what the default config renders.
//!
//! Every rule also filters on the blob index tag `superseded = true`
//! (`blobIndexMatch`), which valerix-backup sets on a copy only once a newer
//! sound copy of the same database and tier exists (see [`crate::offsite`]):
//! the newest sound copy never carries it, so however long uploads stop, the
//! policy never deletes the last good copy. Setting tags needs the data
//! action `Microsoft.Storage/storageAccounts/blobServices/containers/blobs/
//! tags/write` (built-in role Storage Blob Data Owner, or a custom role).
//!
//! Backups are written once, so the age is counted from creation
//! (`daysAfterCreationGreaterThan`). With blob versioning on, deleting a blob
//! only turns it into a previous version; each rule therefore deletes the
//! previous versions too (the `version` action, counted from the version's
//! creation, which for write-once copies is their upload), or expired copies
//! would be kept (and billed) forever. A tier in `azure.immutable` is
//! deleted once its copies' immutability policy ends (retention plus
//! `immutability_margin_days`), never while the service would refuse.

use crate::arm::resources::{
    BlobActions, DeleteAction, ManagementPolicy, PolicyDocument, PolicyRule, RuleActions,
    RuleDefinition, RuleFilters, TagMatch,
};
use crate::config::{AccessTierName, Azure};
use crate::offsite::{SUPERSEDED_TAG, SUPERSEDED_VALUE};

/// What `lifecycle-policy --format` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyFormat {
    /// The policy document for `az storage account management-policy create --policy @FILE`
    Json,
    /// A Bicep managementPolicies resource on an existing storage account
    Bicep,
    /// A Terraform (azurerm) azurerm_storage_management_policy resource
    Terraform,
}

/// API version of the Bicep resources.
pub const BICEP_API_VERSION: &str = "2023-05-01";

const BEGIN: &str = "BEGIN valerix-backup lifecycle-policy";
const END: &str = "END valerix-backup lifecycle-policy";

/// One rule: the blobs of one tier (daily or weekly).
struct Rule {
    /// `daily` or `weekly`: the folder under the prefix and the config key.
    kind: &'static str,
    name: &'static str,
    /// `<container>/<prefix><kind>/`: a prefixMatch starts with the container.
    prefix_match: String,
    /// More folders the rule keeps as long: the weekly rule also covers the
    /// post-mortem records (`<container>/<prefix>reports/`, see
    /// [`crate::ops::report`]), which are uploaded with the tag set.
    also: Vec<String>,
    days: u32,
    tier: AccessTierName,
}

impl Rule {
    fn prefixes(&self) -> Vec<String> {
        std::iter::once(self.prefix_match.clone())
            .chain(self.also.iter().cloned())
            .collect()
    }
}

/// `items` quoted by `quote`, joined by `sep`.
fn list(items: &[String], quote: fn(&str) -> String, sep: &str) -> String {
    items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(sep)
}

fn policy_rules(az: &Azure) -> [Rule; 2] {
    // A copy of an immutable tier cannot be deleted before its policy ends
    // (retention plus the margin): the rule waits as long, so it never
    // tries to delete a copy still under its policy. A legal hold cannot be
    // filtered on; the service skips a held blob and deletes it once the
    // hold is cleared.
    let rule = |kind: &'static str, name: &'static str, days: u32, tier: AccessTierName| Rule {
        kind,
        name,
        prefix_match: format!("{}/{}{}/", az.container, az.prefix, kind),
        also: match kind {
            "weekly" => vec![format!(
                "{}/{}{}/",
                az.container,
                az.prefix,
                crate::offsite::REPORTS_DIR
            )],
            _ => Vec::new(),
        },
        days: match az.is_immutable(kind) {
            true => az.immutability_days(kind).max(days as i64) as u32,
            false => days,
        },
        tier,
    };
    // Rule names are letters and digits only: Azure refuses
    // "valerix-daily-delete" (InvalidManagementPolicyRule).
    [
        rule(
            "daily",
            "valerixDailyDelete",
            az.daily_retention_days,
            az.daily_access_tier,
        ),
        rule(
            "weekly",
            "valerixWeeklyDelete",
            az.weekly_retention_days,
            az.weekly_access_tier,
        ),
    ]
}

/// The lifecycle management policy: `{"rules": [...]}`, one delete rule per
/// tier, matching block blobs under `<container>/<prefix>daily/` and
/// `<container>/<prefix>weekly/`.
pub fn lifecycle_policy(az: &Azure) -> serde_json::Value {
    serde_json::to_value(our_policy(az)).expect("a policy serialises")
}

/// [`lifecycle_policy`], typed.
fn our_policy(az: &Azure) -> PolicyDocument {
    let rules = policy_rules(az).iter().map(our_rule).collect();
    PolicyDocument {
        rules,
        other: Default::default(),
    }
}

fn our_rule(r: &Rule) -> PolicyRule {
    let delete = || BlobActions {
        delete: Some(DeleteAction {
            days_after_creation_greater_than: Some(r.days),
            other: Default::default(),
        }),
        other: Default::default(),
    };
    PolicyRule {
        name: r.name.to_string(),
        enabled: Some(true),
        kind: Some("Lifecycle".to_string()),
        definition: Some(RuleDefinition {
            filters: Some(RuleFilters {
                blob_types: Some(vec!["blockBlob".to_string()]),
                prefix_match: Some(r.prefixes()),
                blob_index_match: Some(vec![TagMatch {
                    name: SUPERSEDED_TAG.to_string(),
                    op: "==".to_string(),
                    value: SUPERSEDED_VALUE.to_string(),
                    other: Default::default(),
                }]),
                other: Default::default(),
            }),
            actions: Some(RuleActions {
                base_blob: Some(delete()),
                version: Some(delete()),
                other: Default::default(),
            }),
            other: Default::default(),
        }),
        other: Default::default(),
    }
}

/// Retention settings that cost money: a tier kept fewer days than its access
/// tier's early-deletion minimum. One line each; empty when all is well.
pub fn warnings(az: &Azure) -> Vec<String> {
    policy_rules(az)
        .iter()
        .filter_map(|r| {
            let min = r.tier.minimum_days();
            (r.days < min).then(|| {
                format!(
                    "azure.{kind}_retention_days = {days} is shorter than the {min}-day minimum \
                     of the {tier} tier (azure.{kind}_access_tier): every {kind} copy is billed \
                     {rest} more days as an early-deletion charge; keep {kind} copies at least \
                     {min} days or store them in a warmer tier",
                    kind = r.kind,
                    days = r.days,
                    tier = r.tier.as_str(),
                    rest = min - r.days,
                )
            })
        })
        .collect()
}

/// The policy in `format`. JSON has no comments, so no header; the others
/// start with a comment saying the text is generated and must not be edited
/// by hand, and note the lifecycle lag, the early-deletion minimums and any
/// [`warnings`].
pub fn render(az: &Azure, format: PolicyFormat) -> String {
    match format {
        PolicyFormat::Json => format!("{:#}\n", lifecycle_policy(az)),
        PolicyFormat::Bicep => format!(
            "{}{}",
            template(BICEP_PREAMBLE).replace("@API@", BICEP_API_VERSION),
            bicep_block(az)
        ),
        PolicyFormat::Terraform => format!("{}{}", template(TF_PREAMBLE), terraform_block(az)),
    }
}

/// The comment lines of a Bicep or Terraform block, each starting with `c`.
fn notes(az: &Azure, c: &str) -> String {
    let mut lines = vec![
        format!(
            "Deletes daily copies ({}) more than {} days and weekly copies ({}) more than {} days",
            az.daily_access_tier.as_str(),
            az.daily_retention_days,
            az.weekly_access_tier.as_str(),
            az.weekly_retention_days,
        ),
        "after upload, and the previous versions that blob versioning keeps of them, but only"
            .to_string(),
        format!(
            "copies tagged {SUPERSEDED_TAG} = {SUPERSEDED_VALUE}: valerix-backup tags a copy once a newer sound copy"
        ),
        "of its database and tier exists, so the newest sound copy is never deleted.".to_string(),
        "Azure runs lifecycle policies about once a day, and a new or changed policy can take"
            .to_string(),
        "up to 24 h to apply: a copy may outlive its retention by a day or two.".to_string(),
        format!(
            "Early deletion: a blob deleted less than {} days after entering Cool, or {} days after",
            AccessTierName::Cool.minimum_days(),
            AccessTierName::Cold.minimum_days(),
        ),
        "entering Cold, is billed for the remaining days.".to_string(),
        "With blob soft delete on, deleted copies stay recoverable (and billed) for its period."
            .to_string(),
        "A storage account has one lifecycle policy: applying this one replaces all its rules"
            .to_string(),
        "(`valerix-backup lifecycle-policy --apply` merges with the rules that are not ours)."
            .to_string(),
    ];
    for t in &az.immutable {
        lines.push(format!(
            "The {t} tier is immutable (azure.immutable): its copies are deleted after {} days, once",
            az.immutability_days(t)
        ));
        lines.push(
            "their immutability policy has ended (retention plus immutability_margin_days).".into(),
        );
    }
    lines.extend(warnings(az).into_iter().map(|w| format!("WARNING: {w}")));
    lines.iter().map(|l| format!("{c} {l}\n")).collect()
}

/// The Bicep resource between its marker comments: what `infra/` embeds.
fn bicep_block(az: &Azure) -> String {
    let rules: String = policy_rules(az)
        .iter()
        .map(|r| {
            template(BICEP_RULE)
                .replace("@DAYS@", &r.days.to_string())
                .replace("@NAME@", &bicep_str(r.name))
                .replace("@TAG@", &bicep_str(SUPERSEDED_TAG))
                .replace("@VALUE@", &bicep_str(SUPERSEDED_VALUE))
                .replace(
                    "@PREFIX@",
                    &list(&r.prefixes(), bicep_str, "\n                "),
                )
        })
        .collect();
    let resource = template(BICEP_POLICY)
        .replace("@API@", BICEP_API_VERSION)
        .replace("@RULES@", rules.trim_end_matches('\n'));
    format!(
        "// {BEGIN} (generated: do not edit by hand)\n{}{resource}// {END}\n",
        notes(az, "//")
    )
}

/// The Terraform resource between its marker comments: what `infra/` embeds.
fn terraform_block(az: &Azure) -> String {
    let rules: String = policy_rules(az)
        .iter()
        .map(|r| {
            template(TF_RULE)
                .replace("@DAYS@", &r.days.to_string())
                .replace("@NAME@", &hcl_str(r.name))
                .replace("@TAG@", &hcl_str(SUPERSEDED_TAG))
                .replace("@VALUE@", &hcl_str(SUPERSEDED_VALUE))
                .replace("@PREFIX@", &list(&r.prefixes(), hcl_str, ", "))
        })
        .collect();
    let resource = template(TF_POLICY).replace("@RULES@", rules.trim_end_matches('\n'));
    format!(
        "# {BEGIN} (generated: do not edit by hand)\n{}{resource}# {END}\n",
        notes(az, "#")
    )
}

/// The templates below open with a newline so their text starts in column 0
/// of the source; drop it.
fn template(t: &str) -> &str {
    t.strip_prefix('\n').unwrap_or(t)
}

// Placeholders are replaced in the order days, name, tag, prefix: the prefix comes
// from the config and goes last, so nothing inside it is ever replaced.

const BICEP_PREAMBLE: &str = r"
// Generated by `valerix-backup lifecycle-policy --format bicep`: do not edit by hand;
// change the [azure] retention settings and regenerate.

@description('Name of the existing storage account that holds the backup container.')
param storageAccountName string

resource storageAccount 'Microsoft.Storage/storageAccounts@@API@' existing = {
  name: storageAccountName
}

";

const BICEP_POLICY: &str = r"
resource lifecyclePolicy 'Microsoft.Storage/storageAccounts/managementPolicies@@API@' = {
  name: 'default'
  parent: storageAccount
  properties: {
    policy: {
      rules: [
@RULES@
      ]
    }
  }
}
";

const BICEP_RULE: &str = r"
        {
          name: @NAME@
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                @PREFIX@
              ]
              blobIndexMatch: [
                {
                  name: @TAG@
                  op: '=='
                  value: @VALUE@
                }
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: @DAYS@
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: @DAYS@
                }
              }
            }
          }
        }
";

const TF_PREAMBLE: &str = r#"
# Generated by `valerix-backup lifecycle-policy --format terraform`: do not edit by hand;
# change the [azure] retention settings and regenerate.

variable "storage_account_id" {
  type        = string
  description = "Resource ID of the existing storage account that holds the backup container."
}

locals {
  backup_storage_account_id = var.storage_account_id
}

"#;

const TF_POLICY: &str = r#"
resource "azurerm_storage_management_policy" "valerix_backup" {
  storage_account_id = local.backup_storage_account_id
@RULES@
}
"#;

// Opens with an empty line: a blank line before each rule block.
const TF_RULE: &str = r#"

  rule {
    name    = @NAME@
    enabled = true
    filters {
      prefix_match = [@PREFIX@]
      blob_types   = ["blockBlob"]
      match_blob_index_tag {
        name      = @TAG@
        operation = "=="
        value     = @VALUE@
      }
    }
    actions {
      base_blob {
        delete_after_days_since_creation_greater_than = @DAYS@
      }
      version {
        delete_after_days_since_creation = @DAYS@
      }
    }
  }
"#;

/// A Bicep string literal: `'...'` with `\`, `'` and `${` escaped.
fn bicep_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An HCL string literal: `"..."` with `\`, `"` and the template openers
/// `${`, `%{` escaped.
fn hcl_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("$$"),
            '%' if chars.peek() == Some(&'{') => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What `lifecycle-policy --apply` would change in the account's policy:
/// our rules added or replaced, every other rule kept as it is.
#[derive(Debug, Clone)]
pub struct PolicyMerge {
    /// The policy to PUT: the account's rules that are not ours, in their
    /// order and with every field they had, with ours in place of their old
    /// versions or after them.
    pub merged: PolicyDocument,
    /// One line per change (`add rule ...`, `replace rule ...: path: old ->
    /// new`); empty when the account already has our rules as they are.
    pub changes: Vec<String>,
    /// The rules that are not ours, kept.
    pub kept: Vec<String>,
    /// Rules that are not ours but delete our copies by age alone.
    pub warnings: Vec<String>,
}

/// Merges our rules (`ours`, as [`our_policy`] makes them) into the
/// account's current policy (`current`, `None` when it has none). A rule is
/// ours by its name.
pub fn merge_policy(
    az: &Azure,
    current: Option<&PolicyDocument>,
    ours: &PolicyDocument,
) -> PolicyMerge {
    let old: &[PolicyRule] = current.map_or(&[], |p| &p.rules);
    let ours_named = |n: &str| ours.rules.iter().find(|r| r.name == n);
    let mut out = PolicyMerge {
        merged: current.cloned().unwrap_or_default(),
        changes: Vec::new(),
        kept: Vec::new(),
        warnings: Vec::new(),
    };
    let mut rules = Vec::new();
    for r in old {
        match ours_named(&r.name) {
            Some(mine) => {
                let mut diffs = Vec::new();
                diff_json("", &as_json(r), &as_json(mine), &mut diffs);
                if !diffs.is_empty() {
                    out.changes
                        .push(format!("replace rule {}: {}", r.name, diffs.join("; ")));
                }
                rules.push(mine.clone());
            }
            None => {
                if let Some(w) = deletes_our_copies(az, r) {
                    out.warnings.push(w);
                }
                out.kept.push(r.name.clone());
                rules.push(r.clone());
            }
        }
    }
    for mine in &ours.rules {
        if !old.iter().any(|r| r.name == mine.name) {
            out.changes.push(format!("add rule {}", mine.name));
            rules.push(mine.clone());
        }
    }
    out.merged.rules = rules;
    out
}

fn as_json(r: &PolicyRule) -> serde_json::Value {
    serde_json::to_value(r).expect("a rule serialises")
}

/// A rule that is not ours and deletes block blobs under our daily/ or
/// weekly/ folders by age alone (no index tag filter): it can delete the
/// newest copy, whatever our rules say.
fn deletes_our_copies(az: &Azure, rule: &PolicyRule) -> Option<String> {
    rule.definition.as_ref()?;
    let types = rule.blob_types();
    let block = types.is_empty() || types.iter().any(|t| t == "blockBlob");
    let prefixes = rule.prefixes();
    let covered = policy_rules(az).into_iter().find(|r| {
        prefixes.is_empty()
            || prefixes
                .iter()
                .any(|p| r.prefix_match.starts_with(p.as_str()) || p.starts_with(&r.prefix_match))
    })?;
    let enabled = rule.enabled.unwrap_or(true);
    (enabled && rule.deletes_base_blobs() && block && !rule.matches_tags()).then(|| {
        format!(
            "rule {} (not ours, kept) deletes blobs under {} by age alone: it can delete the \
             newest copy of a database; narrow its prefixMatch or remove it",
            rule.name, covered.prefix_match
        )
    })
}

/// The paths where `a` and `b` differ, as `path: old -> new` (values on one
/// line, long ones cut).
fn diff_json(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let null = Value::Null;
            diff_json(
                &sub,
                x.get(k).unwrap_or(&null),
                y.get(k).unwrap_or(&null),
                out,
            );
        }
        return;
    }
    if a != b {
        let show = |v: &Value| match v {
            Value::Null => "(none)".to_string(),
            v => crate::offsite::preview_long(&v.to_string()),
        };
        out.push(format!("{path}: {} -> {}", show(a), show(b)));
    }
}

/// `lifecycle-policy --apply`, read side: the storage account's policy now
/// (GET `managementPolicies/default`) and what merging ours would change.
pub struct ApplyPlan {
    arm: crate::arm::Arm,
    url: String,
    /// `/subscriptions/.../managementPolicies/default`.
    pub path: String,
    pub account: String,
    pub merge: PolicyMerge,
}

pub fn plan_apply(az: &Azure) -> crate::error::Result<ApplyPlan> {
    use crate::error::Error;
    let arm = crate::arm::Arm::connect(az)?;
    let account = storage_account(az)?;
    let path = format!(
        "{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{account}/\
         managementPolicies/default",
        arm.subscription_path(),
        arm.cfg.resource_group
    );
    let url = arm.url(&path, crate::arm::STORAGE_API);
    let got = arm.get(&url)?;
    let current = match got.status {
        200..=299 => Some(
            ManagementPolicy::from_body(got.body)
                .map_err(|e| {
                    Error::Unexpected(format!(
                        "reading the lifecycle policy of {account}: unexpected document: {e}"
                    ))
                })?
                .properties
                .policy,
        ),
        404 => None,
        _ => {
            return Err(got.refused(&format!("reading the lifecycle policy of {account}")));
        }
    };
    let merge = merge_policy(az, current.as_ref(), &our_policy(az));
    Ok(ApplyPlan {
        arm,
        url,
        path,
        account,
        merge,
    })
}

/// `lifecycle-policy --apply`, write side: PUT the merged policy.
pub fn apply(plan: &ApplyPlan) -> crate::error::Result<()> {
    let body = serde_json::to_value(ManagementPolicy::of(plan.merge.merged.clone()))
        .expect("a policy serialises");
    let a = plan.arm.put(&plan.url, &body)?;
    if !a.ok() {
        return Err(a.refused(&format!(
            "applying the lifecycle policy to {}",
            plan.account
        )));
    }
    tracing::info!(
        "lifecycle policy applied to storage account {}",
        plan.account
    );
    Ok(())
}

/// The storage account: configured, or the host of account_url, or the
/// connection string's AccountName.
pub fn storage_account(az: &Azure) -> crate::error::Result<String> {
    let rm = az.resource_manager.as_ref().expect("connected");
    if let Some(a) = &rm.storage_account {
        return Ok(a.clone());
    }
    let from_url = az
        .account_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string))
        .and_then(|h| h.split('.').next().map(str::to_string));
    let from_cs = std::env::var(&az.connection_string_env)
        .ok()
        .and_then(|cs| {
            cs.split(';')
                .find_map(|p| p.strip_prefix("AccountName=").map(str::to_string))
        });
    from_url.or(from_cs).ok_or_else(|| {
        crate::error::Error::Setup(
            "cannot tell the storage account: set azure.resource_manager.storage_account".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::config::Config;

    /// `[azure]` with `extra` lines added to the table.
    fn azure(extra: &str) -> Azure {
        let text = format!(
            "backup_dir = \"b\"\n\
             [[database]]\n\
             name = \"order\"\n\
             dbname = \"order_db\"\n\
             user = \"order_user\"\n\
             [azure]\n\
             container = \"database-backups\"\n\
             {extra}\n"
        );
        Config::parse(&text, Path::new("x.toml"))
            .unwrap()
            .azure
            .unwrap()
    }

    #[test]
    fn json_has_one_delete_rule_per_tier() {
        let p = lifecycle_policy(&azure(""));
        let rules = p["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        let daily = &rules[0];
        assert_eq!(daily["name"], "valerixDailyDelete");
        assert_eq!(daily["enabled"], json!(true));
        assert_eq!(daily["type"], "Lifecycle");
        let d = &daily["definition"];
        assert_eq!(d["filters"]["blobTypes"], json!(["blockBlob"]));
        assert_eq!(
            d["filters"]["prefixMatch"],
            json!(["database-backups/daily/"])
        );
        // Only superseded copies: never the newest sound one.
        assert_eq!(
            d["filters"]["blobIndexMatch"],
            json!([{ "name": "superseded", "op": "==", "value": "true" }])
        );
        assert_eq!(
            rules[1]["definition"]["filters"]["blobIndexMatch"],
            d["filters"]["blobIndexMatch"]
        );
        assert_eq!(
            d["actions"]["baseBlob"]["delete"],
            json!({ "daysAfterCreationGreaterThan": 30 })
        );
        assert_eq!(
            d["actions"]["version"]["delete"],
            json!({ "daysAfterCreationGreaterThan": 30 })
        );
        let weekly = &rules[1];
        assert_eq!(weekly["name"], "valerixWeeklyDelete");
        assert_eq!(
            weekly["definition"]["filters"]["prefixMatch"],
            json!(["database-backups/weekly/", "database-backups/reports/"])
        );
        assert_eq!(
            weekly["definition"]["actions"]["baseBlob"]["delete"]["daysAfterCreationGreaterThan"],
            90
        );
    }

    #[test]
    fn immutable_tiers_are_deleted_only_once_their_policy_ends() {
        let az = azure("immutable = [\"weekly\"]\nimmutability_margin_days = 2");
        let p = lifecycle_policy(&az);
        let days = |i: usize, action: &str| {
            p["rules"][i]["definition"]["actions"][action]["delete"]["daysAfterCreationGreaterThan"]
                .clone()
        };
        assert_eq!(
            (days(0, "baseBlob"), days(0, "version")),
            (json!(30), json!(30))
        );
        assert_eq!(
            (days(1, "baseBlob"), days(1, "version")),
            (json!(92), json!(92))
        );
        let bicep = render(&az, PolicyFormat::Bicep);
        assert!(bicep.contains("deleted after 92 days"), "{bicep}");
    }

    #[test]
    fn json_prefix_follows_the_container() {
        let az = azure("prefix = \"prod/\"\nweekly_retention_days = 120");
        let p = lifecycle_policy(&az);
        let prefix = |i: usize| &p["rules"][i]["definition"]["filters"]["prefixMatch"];
        assert_eq!(prefix(0), &json!(["database-backups/prod/daily/"]));
        assert_eq!(
            prefix(1),
            &json!([
                "database-backups/prod/weekly/",
                "database-backups/prod/reports/"
            ])
        );
        let weekly_delete = &p["rules"][1]["definition"]["actions"]["baseBlob"]["delete"];
        assert_eq!(weekly_delete["daysAfterCreationGreaterThan"], 120);
    }

    #[test]
    fn json_render_is_the_bare_policy() {
        let az = azure("");
        let text = render(&az, PolicyFormat::Json);
        assert!(text.starts_with("{\n"), "{text}");
        assert!(text.ends_with("}\n"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, lifecycle_policy(&az));
        assert!(back.get("policy").is_none());
    }

    #[test]
    fn bicep_has_the_prefixes_and_days() {
        let az = azure("prefix = \"prod/\"\ndaily_retention_days = 35");
        let text = render(&az, PolicyFormat::Bicep);
        assert!(
            text.starts_with("// Generated by `valerix-backup lifecycle-policy"),
            "{text}"
        );
        assert!(text.lines().next().unwrap().contains("do not edit by hand"));
        for want in [
            "param storageAccountName string",
            "resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {",
            "'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {",
            "  name: 'default'\n  parent: storageAccount\n",
            "'database-backups/prod/daily/'",
            "'database-backups/prod/weekly/'",
            "name: 'valerixDailyDelete'",
            "daysAfterCreationGreaterThan: 35",
            "daysAfterCreationGreaterThan: 90",
            "up to 24 h",
            "Early deletion",
            "blobIndexMatch: [\n                {\n                  name: 'superseded'\n                  op: '=='\n                  value: 'true'\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("WARNING"));
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.ends_with(&format!("// {END}\n")));
    }

    #[test]
    fn terraform_has_the_prefixes_and_days() {
        let az = azure("prefix = \"prod/\"\nweekly_retention_days = 180");
        let text = render(&az, PolicyFormat::Terraform);
        assert!(
            text.starts_with("# Generated by `valerix-backup lifecycle-policy"),
            "{text}"
        );
        assert!(text.lines().next().unwrap().contains("do not edit by hand"));
        for want in [
            "resource \"azurerm_storage_management_policy\" \"valerix_backup\" {",
            "storage_account_id = local.backup_storage_account_id",
            "backup_storage_account_id = var.storage_account_id",
            "prefix_match = [\"database-backups/prod/daily/\"]",
            "prefix_match = [\"database-backups/prod/weekly/\", \"database-backups/prod/reports/\"]",
            "blob_types   = [\"blockBlob\"]",
            "name    = \"valerixWeeklyDelete\"",
            "delete_after_days_since_creation_greater_than = 30",
            "delete_after_days_since_creation_greater_than = 180",
            "delete_after_days_since_creation = 180",
            "up to 24 h",
            "match_blob_index_tag {\n        name      = \"superseded\"\n        operation = \"==\"\n        value     = \"true\"\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(text.matches("  rule {").count(), 2);
        assert!(text.ends_with(&format!("# {END}\n")));
    }

    #[test]
    fn no_placeholder_survives() {
        let az = azure("");
        for format in [PolicyFormat::Bicep, PolicyFormat::Terraform] {
            let text = render(&az, format);
            for p in [
                "@API@", "@RULES@", "@NAME@", "@PREFIX@", "@DAYS@", "@TAG@", "@VALUE@",
            ] {
                assert!(!text.contains(p), "{p} left in\n{text}");
            }
        }
    }

    #[test]
    fn retention_below_the_tier_minimum_warns() {
        let az = azure("daily_retention_days = 10\ndaily_access_tier = \"cool\"");
        let w = warnings(&az);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("daily_retention_days = 10"), "{}", w[0]);
        assert!(w[0].contains("30-day minimum of the Cool tier"), "{}", w[0]);
        assert!(w[0].contains("20 more days"), "{}", w[0]);
        assert!(!w[0].contains('\n'));
        for format in [PolicyFormat::Bicep, PolicyFormat::Terraform] {
            let text = render(&az, format);
            assert!(text.contains(&format!("WARNING: {}", w[0])), "{text}");
        }

        assert!(warnings(&azure("")).is_empty());
        let hot = azure("daily_retention_days = 10\ndaily_access_tier = \"hot\"");
        assert!(warnings(&hot).is_empty());
        let w = warnings(&azure("weekly_retention_days = 60"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("Cold"), "{}", w[0]);
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(bicep_str("a'b\\${c}"), r"'a\'b\\\${c}'");
        assert_eq!(bicep_str("x/daily/"), "'x/daily/'");
        assert_eq!(hcl_str("a\"b\\${c}%{d}"), r#""a\"b\\$${c}%%{d}""#);
        assert_eq!(hcl_str("$x%y"), r#""$x%y""#);
    }

    /// The policy blocks in infra/ are exactly what the default config
    /// renders; after changing a default, paste the new block from
    /// `valerix-backup lifecycle-policy --format bicep|terraform`.
    #[test]
    fn infra_files_carry_the_default_policy() {
        let az = azure("");
        let bicep = include_str!("../../infra/bicep/storage.bicep").replace("\r\n", "\n");
        assert!(
            bicep.contains(&bicep_block(&az)),
            "infra/bicep/storage.bicep differs from:\n{}",
            bicep_block(&az)
        );
        let tf = include_str!("../../infra/terraform/storage.tf").replace("\r\n", "\n");
        assert!(
            tf.contains(&terraform_block(&az)),
            "infra/terraform/storage.tf differs from:\n{}",
            terraform_block(&az)
        );
    }

    #[test]
    fn merge_keeps_other_rules_and_replaces_ours() {
        let az = azure("");
        let ours = lifecycle_policy(&az);
        let foreign = json!({
            "name": "logsExpire", "enabled": true, "type": "Lifecycle",
            "definition": {
                "filters": { "blobTypes": ["blockBlob"], "prefixMatch": ["logs/"] },
                "actions": { "baseBlob": { "delete": { "daysAfterCreationGreaterThan": 7 } } }
            }
        });
        let mut old_daily = ours["rules"][0].clone();
        old_daily["definition"]["filters"]
            .as_object_mut()
            .unwrap()
            .remove("blobIndexMatch");
        let current = json!({ "rules": [foreign.clone(), old_daily] });
        let m = merge_policy(&az, Some(&doc(current)), &our_policy(&az));
        let merged = serde_json::to_value(&m.merged).unwrap();
        let rules = merged["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3, "{merged:#}");
        assert_eq!(rules[0], foreign);
        assert_eq!(rules[1], ours["rules"][0]);
        assert_eq!(rules[2], ours["rules"][1]);
        assert_eq!(m.kept, ["logsExpire"]);
        assert_eq!(m.changes.len(), 2, "{:?}", m.changes);
        assert!(
            m.changes[0].starts_with(
                "replace rule valerixDailyDelete: definition.filters.blobIndexMatch: (none) -> "
            ),
            "{:?}",
            m.changes
        );
        assert_eq!(m.changes[1], "add rule valerixWeeklyDelete");
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        // Applied again: nothing to change.
        let again = merge_policy(&az, Some(&m.merged), &our_policy(&az));
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(again.merged, m.merged);
        // No policy at all: ours alone.
        let alone = merge_policy(&az, None, &our_policy(&az)).merged;
        assert_eq!(serde_json::to_value(alone).unwrap(), ours);
    }

    #[test]
    fn a_foreign_rule_that_deletes_our_copies_by_age_is_named() {
        let az = azure("");
        let wide = json!({ "rules": [{
            "name": "everythingAfter60", "type": "Lifecycle",
            "definition": {
                "filters": { "blobTypes": ["blockBlob"] },
                "actions": { "baseBlob": { "delete": { "daysAfterModificationGreaterThan": 60 } } }
            }
        }]});
        let m = merge_policy(&az, Some(&doc(wide)), &our_policy(&az));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(
            m.warnings[0].contains("everythingAfter60"),
            "{}",
            m.warnings[0]
        );
        assert!(
            m.warnings[0].contains("database-backups/daily/"),
            "{}",
            m.warnings[0]
        );
    }

    fn doc(v: serde_json::Value) -> PolicyDocument {
        serde_json::from_value(v).unwrap()
    }

    /// Replacing our rules leaves every field of another team's rule as it
    /// was, those this crate knows nothing of included.
    #[test]
    fn merge_never_drops_a_field_of_a_foreign_rule() {
        let az = azure("");
        let foreign = json!({
            "name": "archiveAudit", "enabled": true, "type": "Lifecycle",
            "teamOwner": "audit",
            "definition": {
                "filters": {
                    "blobTypes": ["blockBlob"],
                    "prefixMatch": ["audit/"],
                    "blobIndexMatch": [{ "name": "keep", "op": "==", "value": "no" }],
                    "someNewFilter": ["x"]
                },
                "actions": {
                    "baseBlob": {
                        "tierToArchive": { "daysAfterModificationGreaterThan": 90 },
                        "delete": { "daysAfterModificationGreaterThan": 2555 }
                    },
                    "snapshot": { "delete": { "daysAfterCreationGreaterThan": 30 } }
                }
            }
        });
        let current = json!({ "rules": [foreign.clone()], "policyLevelField": 1 });
        let m = merge_policy(&az, Some(&doc(current)), &our_policy(&az));
        let merged = serde_json::to_value(&m.merged).unwrap();
        assert_eq!(merged["rules"][0], foreign);
        assert_eq!(merged["policyLevelField"], 1);
        assert_eq!(m.kept, ["archiveAudit"]);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }
}
