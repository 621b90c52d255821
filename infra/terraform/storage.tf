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

resource "azurerm_role_assignment" "agent_blob_access" {
  # The container's Resource Manager ID, spelled out (the container's `id`
  # attribute has changed meaning across azurerm versions).
  scope = "${azurerm_storage_account.backups.id}/blobServices/default/containers/${azurerm_storage_container.backups.name}"
  # Built-in role Storage Blob Data Owner: Storage Blob Data Contributor's
  # read/write/delete plus blob index tags (.../blobs/tags/read and
  # .../blobs/tags/write), which uploads set and the lifecycle policy filters
  # on (the `superseded` tag). Scoped to the container only.
  role_definition_id = "${data.azurerm_subscription.current.id}/providers/Microsoft.Authorization/roleDefinitions/b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
}

# The generated block below refers to the account through this local.
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
      prefix_match = ["database-backups/weekly/"]
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
