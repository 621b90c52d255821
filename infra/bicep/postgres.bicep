// The Azure Database for PostgreSQL flexible server that holds order_db and
// inventory_db, created geo-restorable from the start: geo-redundant backup
// on, 30 days of backup retention. It is the [[azure.postgres_server]] that
// `valerix-backup azure-check` checks and `valerix-backup geo-restore`
// restores into the paired region.
//
//   az deployment group create --resource-group <rg> --template-file infra/bicep/postgres.bicep \
//     --parameters serverName=<name> administratorLoginPassword=<password>
//
// WHY it has to be right at creation:
// - Geo-redundant backup can only be chosen when a server is created; the
//   API marks `backup.geoRedundantBackup` create-only. A server created
//   without it can never be geo-restored: the only way to fix that is a new
//   server and a migration (dump and restore) of the data.
// - A geo-restore is possible only about an hour after creation, once the
//   first backup has been copied to the paired region (until then
//   azure-check warns that there is no restore point yet). After that the
//   copy lags up to an hour: that is the recovery point objective.
// - A geo-restore goes only into the paired region of `location`: choose a
//   region that has a pair (`az account list-locations --query
//   "[?name=='<region>'].metadata.pairedRegion[0].name"` must print one).
//
// Changing any create-only property below (geo-redundant backup, admin
// login, network) is not an update: the service refuses it. Never
// delete and redeploy this server to "fix" it: that deletes the data.
//
// See infra/README.md.

@description('Name of the server: 3-63 lowercase letters, digits and hyphens, globally unique (it becomes <name>.postgres.database.azure.com). The `name` of [[azure.postgres_server]] in valerix-backup.toml.')
@minLength(3)
@maxLength(63)
param serverName string

@description('Region of the server; the resource group\'s by default. Must be a region with a paired region: a geo-restore can only go there.')
param location string = resourceGroup().location

@description('PostgreSQL major version. The seed\'s servers run 15.')
@allowed([
  '15'
  '16'
])
param postgresVersion string = '15'

@description('Compute tier. A geo-restored server gets the same tier and size: the tier cannot be changed during a geo-restore.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string = 'GeneralPurpose'

@description('Compute size within skuTier, e.g. Standard_D2ds_v5 (GeneralPurpose), Standard_E2ds_v5 (MemoryOptimized), Standard_B2s (Burstable).')
param skuName string = 'Standard_D2ds_v5'

@description('Storage size in GiB. It can grow later (storageAutoGrow does it on its own) but never shrink.')
@allowed([
  32
  64
  128
  256
  512
  1024
  2048
  4096
  8192
  16384
  32767
])
param storageSizeGB int = 128

@description('Grow the storage automatically before it fills up (a full server turns read-only).')
param storageAutoGrow bool = true

@description('Days of point-in-time backups, 7-35. The recovery plan wants 30; azure-check warns below that. Unlike geo-redundancy, this can be changed later.')
@minValue(7)
@maxValue(35)
param backupRetentionDays int = 30

@description('Administrator login (create-only). Not azure_superuser, azure_pg_admin, admin, administrator, root, guest, public, nor starting with pg_.')
param administratorLogin string = 'valerix_admin'

@description('Administrator password. No default on purpose: pass it at deployment time, e.g. from a Key Vault reference in a parameters file.')
@secure()
param administratorLoginPassword string

// Optional VNet integration (private access). Leave both empty for public
// access (then add firewall rules for the hosts that connect, e.g. with
// `az postgres flexible-server firewall-rule create`). Private access is a
// create-only choice too, and a private server can only be geo-restored into
// a VNet in the paired region: prepare a delegated subnet and a linked
// private DNS zone there as well (see infra/README.md).
@description('Optional: resource ID of a subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers, for private access. Empty: public access.')
param delegatedSubnetResourceId string = ''

@description('Optional: resource ID of the private DNS zone (name ending in .postgres.database.azure.com, linked to the subnet\'s VNet). Required with delegatedSubnetResourceId.')
param privateDnsZoneArmResourceId string = ''

// Optional cross-region read replica, for `valerix-backup failover` (promote
// it instead of geo-restoring: RPO the replication lag, seconds, instead of
// up to an hour, and no hours-long restore). Off by default: it is a second
// server, billed as one, and receives every write. It can be added later to
// an existing server (unlike geo-redundant backup). A replica of a
// VNet-integrated server needs a delegated subnet in its own region
// (not covered here: set delegatedSubnetResourceId empty, or add a network
// block for the replica's region).
@description('Optional: region of a cross-region read replica (any region, e.g. the paired one). Empty (the default): no replica.')
param replicaLocation string = ''

@description('Name of the read replica, with replicaLocation: the `--replica` of `valerix-backup failover`.')
@minLength(3)
@maxLength(63)
param replicaServerName string = '${take(serverName, 55)}-replica'

// The seed's two databases (dbname of each [[database]] in valerix-backup.toml).
var databaseNames = [
  'order_db'
  'inventory_db'
]

var vnetIntegrated = !empty(delegatedSubnetResourceId)

var network = vnetIntegrated ? {
  delegatedSubnetResourceId: delegatedSubnetResourceId
  privateDnsZoneArmResourceId: privateDnsZoneArmResourceId
  publicNetworkAccess: 'Disabled'
} : {
  publicNetworkAccess: 'Enabled'
}

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: serverName
  location: location
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    // A plain new server (GeoRestore is what valerix-backup sends for the copy).
    createMode: 'Default'
    version: postgresVersion
    administratorLogin: administratorLogin
    administratorLoginPassword: administratorLoginPassword
    authConfig: {
      activeDirectoryAuth: 'Disabled'
      passwordAuth: 'Enabled'
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: storageAutoGrow ? 'Enabled' : 'Disabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      // Create-only: the whole point of this template. Without it
      // `valerix-backup geo-restore` refuses and azure-check fails.
      geoRedundantBackup: 'Enabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: network
  }
}

// One at a time: the server runs one management operation at a time.
@batchSize(1)
resource databases 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = [for dbName in databaseNames: {
  parent: server
  name: dbName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}]

// createMode Replica with the source's id, as the 2025-08-01 specification's
// example ServersCreateReplica.json sends it; the replica's tier and size
// are the source's.
resource replica 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = if (!empty(replicaLocation)) {
  name: replicaServerName
  location: replicaLocation
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    createMode: 'Replica'
    sourceServerResourceId: server.id
  }
  dependsOn: [
    databases
  ]
}

@description('Resource ID of the server (source of a geo-restore).')
output serverId string = server.id

@description('Name of the server: `name` of [[azure.postgres_server]].')
output serverName string = server.name

@description('Host name the databases are reached at: `host` of each [[database]].')
output fqdn string = server.properties.fullyQualifiedDomainName

@description('Resource ID of the read replica; empty without replicaLocation.')
output replicaId string = empty(replicaLocation) ? '' : replica.id
