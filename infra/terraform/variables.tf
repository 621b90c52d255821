variable "resource_group_name" {
  type        = string
  description = "Existing resource group that receives the storage account and the PostgreSQL server: azure.resource_manager.resource_group."
}

variable "location" {
  type        = string
  description = "Region of the storage account and the PostgreSQL server; the resource group's when null. Must be a region with a paired region: geo-redundant copies and geo-restores go there."
  default     = null
}

variable "storage_account_name" {
  type        = string
  description = "Name of the storage account: 3-24 lowercase letters and digits, globally unique."

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.storage_account_name))
    error_message = "storage_account_name must be 3-24 lowercase letters and digits."
  }
}

variable "replication_type" {
  type        = string
  description = "Geo-redundant, with (RAGRS) or without (GRS) read access to the secondary region."
  default     = "RAGRS"

  validation {
    condition     = contains(["GRS", "RAGRS"], var.replication_type)
    error_message = "replication_type must be GRS or RAGRS."
  }
}

variable "shared_access_key_enabled" {
  type        = bool
  description = "Allow account-key and SAS (shared key) authorization. Off: Entra ID only (managed identity); connection strings and account SAS then stop working."
  default     = false
}

variable "principal_id" {
  type        = string
  description = "Principal (object) ID of the backup agent's managed identity; it gets the custom blob agent role on the container (read, write, tags, immutability policies; no delete) and the custom roles of roles.tf."
}

variable "pruner_principal_id" {
  type        = string
  default     = ""
  description = "Optional: principal (object) ID of the identity that runs `prune --offsite`; it gets the custom blob pruner role (read, tags, delete) on the container. Empty: only the lifecycle policy deletes copies."
}

variable "version_level_immutability" {
  type        = bool
  default     = true
  description = "Version-level immutability support on the storage account (needed by [azure] immutable). Only at creation."
}

# --- PostgreSQL flexible server (postgres.tf) ---

variable "postgres_server_name" {
  type        = string
  description = "Name of the flexible server, globally unique (it becomes <name>.postgres.database.azure.com): `name` of [[azure.postgres_server]]."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.postgres_server_name))
    error_message = "postgres_server_name must be 3-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen."
  }
}

variable "postgres_version" {
  type        = string
  description = "PostgreSQL major version. The seed's servers run 15."
  default     = "15"
}

variable "postgres_sku_name" {
  type        = string
  description = "Tier and size, e.g. GP_Standard_D2ds_v5 (General Purpose), MO_Standard_E2ds_v5 (Memory Optimized), B_Standard_B2s (Burstable). A geo-restored server gets the same."
  default     = "GP_Standard_D2ds_v5"

  validation {
    condition     = can(regex("^(B|GP|MO)_Standard_", var.postgres_sku_name))
    error_message = "postgres_sku_name must look like GP_Standard_D2ds_v5, MO_Standard_E2ds_v5 or B_Standard_B2s."
  }
}

variable "postgres_storage_mb" {
  type        = number
  description = "Storage in MiB: 32768, 65536, 131072, 262144, 524288, 1048576, ... It grows automatically but never shrinks."
  default     = 131072
}

variable "postgres_backup_retention_days" {
  type        = number
  description = "Days of point-in-time backups, 7-35. The recovery plan wants 30; azure-check warns below that."
  default     = 30

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be between 7 and 35."
  }
}

variable "postgres_administrator_login" {
  type        = string
  description = "Administrator login (changing it replaces the server). Not azure_superuser, azure_pg_admin, admin, administrator, root, guest, public, nor starting with pg_."
  default     = "valerix_admin"
}

variable "postgres_administrator_password" {
  type        = string
  description = "Administrator password. No default on purpose: pass it with TF_VAR_postgres_administrator_password. It is stored in the Terraform state: keep the state private."
  sensitive   = true

  validation {
    condition     = length(var.postgres_administrator_password) >= 8 && length(var.postgres_administrator_password) <= 128
    error_message = "postgres_administrator_password must be 8-128 characters."
  }
}

variable "postgres_delegated_subnet_id" {
  type        = string
  description = "Optional: ID of a subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers, for private access (with postgres_private_dns_zone_id). Null: public access."
  default     = null
}

variable "postgres_private_dns_zone_id" {
  type        = string
  description = "Optional: ID of the private DNS zone (name ending in .postgres.database.azure.com, linked to the subnet's VNet). Required with postgres_delegated_subnet_id."
  default     = null
}

variable "postgres_replica_location" {
  type        = string
  description = "Optional: region of a cross-region read replica for `valerix-backup failover` (another region than the server's). Null (the default): no replica; it costs a second server."
  default     = null
}

variable "postgres_replica_name" {
  type        = string
  description = "Name of the read replica, with postgres_replica_location; null: <postgres_server_name>-replica."
  default     = null
}

# --- Roles (roles.tf) ---

variable "recovery_resource_group_name" {
  type        = string
  description = "Existing resource group the geo-restored server is created in (geo-restore --target-resource-group), in the paired region: a resource group whose region is down may take no new resources, so not resource_group_name."
}

variable "recovery_network_resource_group_names" {
  type        = list(string)
  description = "Optional: resource groups holding the recovery VNet's delegated subnet and its private DNS zone (geo-restore --subnet / --private-dns-zone). Empty: public access."
  default     = []
}

variable "subscription_wide_status_reads" {
  type        = bool
  description = "Also grant, on the whole subscription, the reads whose URLs are subscription-level: the locations list (paired region) and the geo-restore operation's status."
  default     = true
}

variable "role_name_prefix" {
  type        = string
  description = "Prefix of the custom role names. Custom role names are unique in a directory: use a different prefix per subscription when deploying to several."
  default     = "valerix-backup"
}
