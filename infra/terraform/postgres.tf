# The Azure Database for PostgreSQL flexible server that holds order_db and
# inventory_db, created geo-restorable from the start: geo-redundant backup
# on, 30 days of backup retention. It is the [[azure.postgres_server]] that
# `valerix-backup azure-check` checks and `valerix-backup geo-restore`
# restores into the paired region. Variables are in variables.tf; see
# infra/README.md.
#
# WHY it has to be right at creation:
# - Geo-redundant backup can only be chosen when a server is created (the API
#   marks it create-only; azurerm forces a new server when it changes). A
#   server created without it can never be geo-restored: the only fix is a new
#   server and a migration (dump and restore) of the data.
# - A geo-restore is possible only about an hour after creation, once the
#   first backup has been copied to the paired region (until then azure-check
#   warns that there is no restore point yet). After that the copy lags up to
#   an hour: that is the recovery point objective.
# - A geo-restore goes only into the paired region of the server's region:
#   choose a region that has a pair.

resource "azurerm_postgresql_flexible_server" "valerix" {
  name                = var.postgres_server_name
  resource_group_name = data.azurerm_resource_group.backups.name
  # Must be a region with a paired region: a geo-restore can only go there.
  location = coalesce(var.location, data.azurerm_resource_group.backups.location)
  version  = var.postgres_version
  # A geo-restored server gets the same tier and size: the tier cannot be
  # changed during a geo-restore.
  sku_name          = var.postgres_sku_name
  storage_mb        = var.postgres_storage_mb
  auto_grow_enabled = true

  administrator_login    = var.postgres_administrator_login
  administrator_password = var.postgres_administrator_password

  authentication {
    active_directory_auth_enabled = false
    password_auth_enabled         = true
  }

  backup_retention_days = var.postgres_backup_retention_days
  # Create-only: the whole point of this file. Without it `valerix-backup
  # geo-restore` refuses and azure-check fails.
  geo_redundant_backup_enabled = true

  # Optional VNet integration (private access), also create-only. A private
  # server can only be geo-restored into a VNet in the paired region: prepare
  # a delegated subnet and a linked private DNS zone there as well.
  delegated_subnet_id           = var.postgres_delegated_subnet_id
  private_dns_zone_id           = var.postgres_private_dns_zone_id
  public_network_access_enabled = var.postgres_delegated_subnet_id == null

  lifecycle {
    # Changing a create-only argument (geo-redundant backup, administrator
    # login, subnet) makes Terraform plan to destroy and recreate the server:
    # that deletes the data. Refuse such a plan; migrate instead.
    prevent_destroy = true

    precondition {
      condition     = (var.postgres_delegated_subnet_id == null) == (var.postgres_private_dns_zone_id == null)
      error_message = "Set both postgres_delegated_subnet_id and postgres_private_dns_zone_id (private access) or neither (public access)."
    }
  }
}

# The seed's two databases (dbname of each [[database]] in valerix-backup.toml),
# one after the other: the server runs one management operation at a time.
resource "azurerm_postgresql_flexible_server_database" "order_db" {
  name      = "order_db"
  server_id = azurerm_postgresql_flexible_server.valerix.id
  charset   = "UTF8"
  collation = "en_US.utf8"

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_postgresql_flexible_server_database" "inventory_db" {
  name      = "inventory_db"
  server_id = azurerm_postgresql_flexible_server.valerix.id
  charset   = "UTF8"
  collation = "en_US.utf8"

  depends_on = [azurerm_postgresql_flexible_server_database.order_db]

  lifecycle {
    prevent_destroy = true
  }
}

# Optional cross-region read replica, for `valerix-backup failover` (promote it
# instead of geo-restoring: RPO the replication lag, seconds, instead of up to
# an hour). Off by default (postgres_replica_location = null): it is a second
# server, billed as one. create_mode "Replica" with the source's id, as the
# 2025-08-01 specification's ServersCreateReplica.json. After a failover the
# replica is a primary holding the live data: prevent_destroy, and the
# promotion is not drift to undo.
resource "azurerm_postgresql_flexible_server" "replica" {
  count               = var.postgres_replica_location == null ? 0 : 1
  name                = coalesce(var.postgres_replica_name, "${substr(var.postgres_server_name, 0, 55)}-replica")
  resource_group_name = data.azurerm_resource_group.backups.name
  location            = var.postgres_replica_location
  create_mode         = "Replica"
  source_server_id    = azurerm_postgresql_flexible_server.valerix.id
  version             = var.postgres_version
  sku_name            = var.postgres_sku_name
  storage_mb          = var.postgres_storage_mb
  auto_grow_enabled   = true

  depends_on = [azurerm_postgresql_flexible_server_database.inventory_db]

  lifecycle {
    prevent_destroy = true
    ignore_changes  = [create_mode, source_server_id, replication_role]

    precondition {
      condition     = var.postgres_replica_location != coalesce(var.location, data.azurerm_resource_group.backups.location)
      error_message = "postgres_replica_location must be another region than the server's: a replica in the same region does not survive a region failure."
    }
  }
}

output "postgres_server_id" {
  description = "Resource ID of the server (source of a geo-restore)."
  value       = azurerm_postgresql_flexible_server.valerix.id
}

output "postgres_server_name" {
  description = "Name of the server: `name` of [[azure.postgres_server]]."
  value       = azurerm_postgresql_flexible_server.valerix.name
}

output "postgres_fqdn" {
  description = "Host name the databases are reached at: `host` of each [[database]]."
  value       = azurerm_postgresql_flexible_server.valerix.fqdn
}

output "postgres_replica_id" {
  description = "Resource ID of the read replica (null without postgres_replica_location)."
  value       = one(azurerm_postgresql_flexible_server.replica[*].id)
}
