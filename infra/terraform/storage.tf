# Offsite storage for valerix-backup: a storage account, the `database-backups`
# container, versioning and soft delete, the lifecycle policy that enforces the
# offsite retention, and the agent's access to the container. Variables are in
# variables.tf; see infra/README.md.

terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.9 added storage_account_id to azurerm_storage_container.
      version = "~> 4.9"
    }
  }
}

provider "azurerm" {
  features {}
  # With shared key access off, data-plane calls must use Entra ID.
  storage_use_azuread = true
}

data "azurerm_subscription" "current" {}

data "azurerm_resource_group" "backups" {
  name = var.resource_group_name
}

resource "azurerm_storage_account" "backups" {
  name                     = var.storage_account_name
  resource_group_name      = data.azurerm_resource_group.backups.name
  location                 = coalesce(var.location, data.azurerm_resource_group.backups.location)
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.replication_type
  access_tier              = "Hot"

  min_tls_version                  = "TLS1_2"
  https_traffic_only_enabled       = true
  allow_nested_items_to_be_public  = false
  shared_access_key_enabled        = var.shared_access_key_enabled
  cross_tenant_replication_enabled = false
  default_to_oauth_authentication  = true

  # Version-level immutability support, which [azure] immutable needs (each
  # copy under its own time-based retention policy). azurerm sets it on the
  # account (immutableStorageWithVersioning), so every container of this
  # dedicated account has it; the account-wide default policy stays
  # Disabled: valerix-backup sets each copy's own. Only at creation.
  dynamic "immutability_policy" {
    for_each = var.version_level_immutability ? [1] : []
    content {
      allow_protected_append_writes = false
      state                         = "Disabled"
      period_since_creation_in_days = 1
    }
  }

  blob_properties {
    # Overwriting or deleting a blob keeps the old content as a previous
    # version; the lifecycle rules below delete those with the copies.
    versioning_enabled = true

    # Deleted blobs and versions stay recoverable for 14 days.
    delete_retention_policy {
      days = 14
    }

    container_delete_retention_policy {
      days = 14
    }
  }
}

# Must equal `container` in the [azure] section of valerix-backup.toml, and
# the container name in the generated lifecycle policy below.
resource "azurerm_storage_container" "backups" {
  name                  = "database-backups"
  storage_account_id    = azurerm_storage_account.backups.id
  container_access_type = "private"
}

# Data actions as "Azure permissions for Storage" and the Blob service's
# "Permissions for Blob service operations" list them (see the table in
# infra/bicep/storage.bicep): the same two roles as there.
locals {
  blobs = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
  blob_read_actions = [
    "${local.blobs}/read",
    "${local.blobs}/tags/read",
  ]
  # The container's Resource Manager ID, spelled out (the container's `id`
  # attribute has changed meaning across azurerm versions).
  backup_container_id = "${azurerm_storage_account.backups.id}/blobServices/default/containers/${azurerm_storage_container.backups.name}"
}

# The agent: uploads (each under its immutability policy), reads, tags. No
# delete of any kind. The built-in Storage Blob Data Owner would also do,
# with delete.
resource "azurerm_role_definition" "blob_agent" {
  name        = "${var.role_name_prefix} blob agent"
  scope       = data.azurerm_resource_group.backups.id
  description = "valerix-backup agent: list, read and upload backup blobs under an immutability policy, set their index tags. No delete."
  permissions {
    actions = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
    data_actions = concat(local.blob_read_actions, [
      "${local.blobs}/write",
      "${local.blobs}/add/action",
      "${local.blobs}/tags/write",
      "${local.blobs}/immutableStorage/runAsSuperUser/action",
    ])
    not_actions      = []
    not_data_actions = []
  }
  assignable_scopes = [data.azurerm_resource_group.backups.id]
}

# The pruner: deletes expired copies (prune --offsite) and repairs their
# tags; no write, no immutability policy or hold. The built-in Storage Blob
# Data Contributor would also do (tag repairs then fail, as a warning).
resource "azurerm_role_definition" "blob_pruner" {
  name        = "${var.role_name_prefix} blob pruner"
  scope       = data.azurerm_resource_group.backups.id
  description = "valerix-backup prune --offsite: list and read backup blobs, repair their index tags, delete expired ones."
  permissions {
    actions = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
    data_actions = concat(local.blob_read_actions, [
      "${local.blobs}/tags/write",
      "${local.blobs}/delete",
    ])
    not_actions      = []
    not_data_actions = []
  }
  assignable_scopes = [data.azurerm_resource_group.backups.id]
}

resource "azurerm_role_assignment" "agent_blob_access" {
  scope              = local.backup_container_id
  role_definition_id = azurerm_role_definition.blob_agent.role_definition_resource_id
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_role_assignment" "pruner_blob_access" {
  count              = var.pruner_principal_id == "" ? 0 : 1
  scope              = local.backup_container_id
  role_definition_id = azurerm_role_definition.blob_pruner.role_definition_resource_id
  principal_id       = var.pruner_principal_id
  principal_type     = "ServicePrincipal"
}

locals {
  backup_storage_account_id = azurerm_storage_account.backups.id
}

# Regenerate this block with `valerix-backup lifecycle-policy --format terraform`
# whenever the [azure] retention settings change, and paste it over the old one
# (from the BEGIN line to the END line; the rest of that output declares the
# account ID as a variable, which this file does not need).
# BEGIN valerix-backup lifecycle-policy (generated: do not edit by hand)
# Deletes daily copies (Cool) more than 30 days and weekly copies (Cold) more than 90 days
# after upload, and the previous versions that blob versioning keeps of them, but only
# copies tagged superseded = true: valerix-backup tags a copy once a newer sound copy
# of its database and tier exists, so the newest sound copy is never deleted.
# Azure runs lifecycle policies about once a day, and a new or changed policy can take
# up to 24 h to apply: a copy may outlive its retention by a day or two.
# Early deletion: a blob deleted less than 30 days after entering Cool, or 90 days after
# entering Cold, is billed for the remaining days.
# With blob soft delete on, deleted copies stay recoverable (and billed) for its period.
# A storage account has one lifecycle policy: applying this one replaces all its rules
# (`valerix-backup lifecycle-policy --apply` merges with the rules that are not ours).
resource "azurerm_storage_management_policy" "valerix_backup" {
  storage_account_id = local.backup_storage_account_id

  rule {
    name    = "valerixDailyDelete"
    enabled = true
    filters {
      prefix_match = ["database-backups/daily/"]
      blob_types   = ["blockBlob"]
      match_blob_index_tag {
        name      = "superseded"
        operation = "=="
        value     = "true"
      }
    }
    actions {
      base_blob {
        delete_after_days_since_creation_greater_than = 30
      }
      version {
        delete_after_days_since_creation = 30
      }
    }
  }

  rule {
    name    = "valerixWeeklyDelete"
    enabled = true
    filters {
      prefix_match = ["database-backups/weekly/", "database-backups/reports/"]
      blob_types   = ["blockBlob"]
      match_blob_index_tag {
        name      = "superseded"
        operation = "=="
        value     = "true"
      }
    }
    actions {
      base_blob {
        delete_after_days_since_creation_greater_than = 90
      }
      version {
        delete_after_days_since_creation = 90
      }
    }
  }
}
# END valerix-backup lifecycle-policy

output "storage_account_id" {
  description = "Resource ID of the storage account."
  value       = azurerm_storage_account.backups.id
}

output "blob_endpoint" {
  description = "Blob endpoint: `account_url` in the [azure] section."
  value       = azurerm_storage_account.backups.primary_blob_endpoint
}
