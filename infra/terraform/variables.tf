variable "resource_group_name" {
  type        = string
  description = "Existing resource group that receives the storage account."
}

variable "location" {
  type        = string
  description = "Region of the storage account; the resource group's when null."
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
  description = "Principal (object) ID of the backup agent's managed identity; it gets Storage Blob Data Contributor on the container."
}
