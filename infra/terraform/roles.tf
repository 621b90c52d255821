# Resource Manager access for the identity that runs `valerix-backup
# azure-check`, `geo-restore` and `lifecycle-policy --apply`: custom roles
# with only the actions those commands use, each assigned where it is needed
# and nowhere else. (Its data-plane access, the custom blob agent role on
# the container, without delete, is in storage.tf.) Creating role definitions needs Owner or
# User Access Administrator on the subscription. See infra/README.md.
#
# What valerix-backup sends, and the action each request needs:
#   GET  .../flexibleServers/<source>        flexibleServers/read        source server's RG
#   GET  /subscriptions/<id>/locations        subscriptions/locations/read (paired region)
#   PUT  .../flexibleServers/<target>         flexibleServers/write       recovery RG
#        (createMode GeoRestore)
#   GET  /subscriptions/<id>/providers/Microsoft.DBforPostgreSQL/locations/<region>/
#        azureAsyncOperation/<op>  or  .../operationResults/<op>
#                                             locations/azureAsyncOperation/read,
#                                             locations/operationResults/read
#   GET  .../flexibleServers/<target>         flexibleServers/read        recovery RG
#   PUT  .../storageAccounts/<account>/managementPolicies/default
#                                             managementPolicies/write    storage account
# With --subnet / --private-dns-zone the PUT also needs, on the subnet and the
# zone: virtualNetworks/subnets/join/action, privateDnsZones/join/action.
#
# Why not the built-in Contributor on those resource groups: Contributor is
# every action but role management, so the backup agent could also delete the
# production server, its databases and firewall rules, and anything else in
# the group; a stolen agent credential would take the database and its
# recovery path together. These roles cannot delete anything and cannot
# change the source server (read only there); on the recovery group they allow
# creating or updating flexible servers, which is what a geo-restore is. That
# is enough because the geo-restore is a single PUT on the new server; the
# restore itself runs inside Azure.

data "azurerm_resource_group" "recovery" {
  name = var.recovery_resource_group_name
}

locals {
  subscription_scope = data.azurerm_subscription.current.id

  # Action strings as listed in "Azure permissions for Databases" / "for
  # Storage" (learn.microsoft.com, role-based-access-control/permissions).
  server_read_actions = [
    "Microsoft.DBforPostgreSQL/flexibleServers/read",
    # azure-check and the failover preflight: GET .../replicas and
    # .../virtualendpoints.
    "Microsoft.DBforPostgreSQL/flexibleServers/replicas/read",
    "Microsoft.DBforPostgreSQL/flexibleServers/virtualendpoints/read",
  ]
  operation_status_actions = [
    "Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read",
    "Microsoft.DBforPostgreSQL/locations/operationResults/read",
  ]
}

resource "azurerm_role_definition" "server_reader" {
  name        = "${var.role_name_prefix} server reader"
  scope       = local.subscription_scope
  description = "valerix-backup azure-check and geo-restore preflight: read PostgreSQL flexible servers (geo-redundancy, retention, region)."

  permissions {
    actions     = local.server_read_actions
    not_actions = []
  }

  assignable_scopes = [local.subscription_scope]
}

resource "azurerm_role_definition" "geo_restore" {
  name        = "${var.role_name_prefix} geo-restore"
  scope       = local.subscription_scope
  description = "valerix-backup geo-restore: create a PostgreSQL flexible server (createMode GeoRestore), follow the operation, read the new server. No delete."

  permissions {
    actions = concat(
      local.server_read_actions,
      ["Microsoft.DBforPostgreSQL/flexibleServers/write"],
      local.operation_status_actions,
    )
    not_actions = []
  }

  assignable_scopes = [local.subscription_scope]
}

resource "azurerm_role_definition" "lifecycle_policy" {
  name        = "${var.role_name_prefix} lifecycle policy"
  scope       = local.subscription_scope
  description = "valerix-backup lifecycle-policy --apply: read and replace the storage account's lifecycle management policy."

  permissions {
    actions = [
      "Microsoft.Storage/storageAccounts/managementPolicies/read",
      "Microsoft.Storage/storageAccounts/managementPolicies/write",
    ]
    not_actions = []
  }

  assignable_scopes = [local.subscription_scope]
}

# The status URLs Azure returns for a flexible server operation are
# subscription-level (/subscriptions/<id>/providers/Microsoft.DBforPostgreSQL/
# locations/<region>/azureAsyncOperation/<op>), and so is the locations list.
# Azure documents that permission on the resource group is enough to track an
# operation started there, and listing locations is not known to need a role;
# this assignment makes both certain rather than likely.
resource "azurerm_role_definition" "status_reader" {
  count       = var.subscription_wide_status_reads ? 1 : 0
  name        = "${var.role_name_prefix} status reader"
  scope       = local.subscription_scope
  description = "valerix-backup: list the subscription's locations (paired regions) and read PostgreSQL flexible server operation status."

  permissions {
    actions = concat(
      ["Microsoft.Resources/subscriptions/locations/read"],
      local.operation_status_actions,
    )
    not_actions = []
  }

  assignable_scopes = [local.subscription_scope]
}

# Joining the recovery subnet and private DNS zone: checked by Resource
# Manager on the linked resources when the PUT names them.
resource "azurerm_role_definition" "network_join" {
  count       = length(var.recovery_network_resource_group_names) > 0 ? 1 : 0
  name        = "${var.role_name_prefix} network join"
  scope       = local.subscription_scope
  description = "valerix-backup geo-restore with private access: place the new server in a delegated subnet and register it in a private DNS zone."

  permissions {
    actions = [
      "Microsoft.Network/virtualNetworks/subnets/join/action",
      "Microsoft.Network/privateDnsZones/join/action",
    ]
    not_actions = []
  }

  assignable_scopes = [local.subscription_scope]
}

# Read on the server's resource group: azure-check, geo-restore preflight.
resource "azurerm_role_assignment" "server_reader" {
  scope              = data.azurerm_resource_group.backups.id
  role_definition_id = azurerm_role_definition.server_reader.role_definition_resource_id
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
  description        = "valerix-backup: read the PostgreSQL flexible servers here (azure-check, geo-restore preflight)."
}

# Write on the recovery resource group only: the geo-restored server.
resource "azurerm_role_assignment" "geo_restore" {
  scope              = data.azurerm_resource_group.recovery.id
  role_definition_id = azurerm_role_definition.geo_restore.role_definition_resource_id
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
  description        = "valerix-backup geo-restore: create the restored PostgreSQL flexible server here."
}

# The lifecycle policy of the one storage account.
resource "azurerm_role_assignment" "lifecycle_policy" {
  scope              = azurerm_storage_account.backups.id
  role_definition_id = azurerm_role_definition.lifecycle_policy.role_definition_resource_id
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
  description        = "valerix-backup lifecycle-policy --apply."
}

resource "azurerm_role_assignment" "status_reader" {
  count              = var.subscription_wide_status_reads ? 1 : 0
  scope              = local.subscription_scope
  role_definition_id = azurerm_role_definition.status_reader[0].role_definition_resource_id
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
  description        = "valerix-backup: paired regions and geo-restore operation status."
}

resource "azurerm_role_assignment" "network_join" {
  for_each           = toset(var.recovery_network_resource_group_names)
  scope              = "${local.subscription_scope}/resourceGroups/${each.value}"
  role_definition_id = one(azurerm_role_definition.network_join[*].role_definition_resource_id)
  principal_id       = var.principal_id
  principal_type     = "ServicePrincipal"
  description        = "valerix-backup geo-restore: join the recovery subnet and private DNS zone here."
}
