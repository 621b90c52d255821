// Resource Manager access for the identity that runs `valerix-backup
// azure-check`, `geo-restore` and `lifecycle-policy --apply`: custom roles
// with only the actions those commands use, each assigned where it is needed
// and nowhere else. (Its data-plane access, the custom blob agent role on
// the container, without delete, is defined and assigned by storage.bicep.)
//
//   az deployment sub create --location <region> --template-file infra/bicep/roles.bicep \
//     --parameters principalId=<principal id> serverResourceGroups='["<rg>"]' \
//       recoveryResourceGroup=<recovery rg> storageResourceGroup=<rg> storageAccountName=<name>
//
// Deploy it after storage.bicep and postgres.bicep, by someone who may
// create role definitions and assignments on the subscription (Owner or
// User Access Administrator). The resource groups must exist.
//
// What valerix-backup sends, and the action each request needs:
//   GET  .../flexibleServers/<source>        flexibleServers/read        source server's RG
//   GET  /subscriptions/<id>/locations        subscriptions/locations/read (paired region)
//   PUT  .../flexibleServers/<target>         flexibleServers/write       recovery RG
//        (createMode GeoRestore)
//   GET  /subscriptions/<id>/providers/Microsoft.DBforPostgreSQL/locations/<region>/
//        azureAsyncOperation/<op>  or  .../operationResults/<op>
//                                             locations/azureAsyncOperation/read,
//                                             locations/operationResults/read
//   GET  .../flexibleServers/<target>         flexibleServers/read        recovery RG
//   PUT  .../storageAccounts/<account>/managementPolicies/default
//                                             managementPolicies/write    storage account
// With --subnet / --private-dns-zone the PUT also needs, on the subnet and
// the zone: virtualNetworks/subnets/join/action, privateDnsZones/join/action.
//
// Why not the built-in Contributor on those resource groups: Contributor is
// every action but role management, so the backup agent could also delete
// the production server, its databases and firewall rules, and anything else
// in the group; a stolen agent credential would take the database and its
// recovery path together. These roles cannot delete anything and cannot
// change the source server (read only there); on the recovery group they
// allow creating or updating flexible servers, which is what a geo-restore
// is. That is enough because the geo-restore is a single PUT on the new
// server; the restore itself runs inside Azure.
//
// See infra/README.md.

targetScope = 'subscription'

@description('Principal (object) ID of the identity valerix-backup runs as (e.g. the VM\'s managed identity).')
param principalId string

@description('Resource groups holding the [[azure.postgres_server]] servers: read access there (azure-check, geo-restore preflight).')
@minLength(1)
param serverResourceGroups array

@description('Resource group the geo-restored server is created in (geo-restore --target-resource-group). Create it in the paired region beforehand: a resource group whose region is down may take no new resources.')
param recoveryResourceGroup string

@description('Resource group of the storage account (it must be azure.resource_manager.resource_group: lifecycle-policy --apply looks for the account there).')
param storageResourceGroup string

@description('Name of the storage account created by storage.bicep.')
param storageAccountName string

@description('Optional: resource groups holding the recovery VNet\'s delegated subnet and its private DNS zone (geo-restore --subnet / --private-dns-zone). Empty: the server has public access.')
param recoveryNetworkResourceGroups array = []

@description('Also grant, on the whole subscription, the reads whose URLs are subscription-level: the locations list (paired region) and the status of the geo-restore operation. Harmless reads; on by default so that a disaster does not turn up a permission gap.')
param subscriptionWideStatusReads bool = true

@description('Prefix of the custom role names. Custom role names are unique in a directory: use a different prefix per subscription when deploying to several.')
param roleNamePrefix string = 'valerix-backup'

var subscriptionScope = subscription().id

// Microsoft.DBforPostgreSQL and Microsoft.Storage action strings as listed in
// "Azure permissions for Databases" / "for Storage" (learn.microsoft.com,
// role-based-access-control/permissions/databases and .../storage).
var serverReadActions = [
  'Microsoft.DBforPostgreSQL/flexibleServers/read'
  // azure-check and the failover preflight: GET .../replicas and
  // .../virtualendpoints.
  'Microsoft.DBforPostgreSQL/flexibleServers/replicas/read'
  'Microsoft.DBforPostgreSQL/flexibleServers/virtualendpoints/read'
]

var operationStatusActions = [
  'Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read'
  'Microsoft.DBforPostgreSQL/locations/operationResults/read'
]

resource serverReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscriptionScope, roleNamePrefix, 'server-reader')
  properties: {
    roleName: '${roleNamePrefix} server reader'
    description: 'valerix-backup azure-check and geo-restore preflight: read PostgreSQL flexible servers (geo-redundancy, retention, region).'
    type: 'CustomRole'
    permissions: [
      {
        actions: serverReadActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscriptionScope
    ]
  }
}

resource geoRestorer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscriptionScope, roleNamePrefix, 'geo-restore')
  properties: {
    roleName: '${roleNamePrefix} geo-restore'
    description: 'valerix-backup geo-restore: create a PostgreSQL flexible server (createMode GeoRestore), follow the operation, read the new server. No delete.'
    type: 'CustomRole'
    permissions: [
      {
        actions: concat(serverReadActions, [
          'Microsoft.DBforPostgreSQL/flexibleServers/write'
        ], operationStatusActions)
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscriptionScope
    ]
  }
}

resource lifecyclePolicyWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscriptionScope, roleNamePrefix, 'lifecycle-policy')
  properties: {
    roleName: '${roleNamePrefix} lifecycle policy'
    description: 'valerix-backup lifecycle-policy --apply: read and replace the storage account\'s lifecycle management policy.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/managementPolicies/read'
          'Microsoft.Storage/storageAccounts/managementPolicies/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscriptionScope
    ]
  }
}

// The status URLs Azure returns for a flexible server operation are
// subscription-level (/subscriptions/<id>/providers/Microsoft.DBforPostgreSQL/
// locations/<region>/azureAsyncOperation/<op>), and so is the locations list.
// Azure documents that permission on the resource group is enough to track
// an operation started there, and listing locations is not known to need a
// role; this assignment makes both certain rather than likely.
resource statusReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (subscriptionWideStatusReads) {
  name: guid(subscriptionScope, roleNamePrefix, 'status-reader')
  properties: {
    roleName: '${roleNamePrefix} status reader'
    description: 'valerix-backup: list the subscription\'s locations (paired regions) and read PostgreSQL flexible server operation status.'
    type: 'CustomRole'
    permissions: [
      {
        actions: concat([
          'Microsoft.Resources/subscriptions/locations/read'
        ], operationStatusActions)
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscriptionScope
    ]
  }
}

// Joining the recovery subnet and private DNS zone: checked by Resource
// Manager on the linked resources when the PUT names them.
resource networkJoiner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(recoveryNetworkResourceGroups)) {
  name: guid(subscriptionScope, roleNamePrefix, 'network-join')
  properties: {
    roleName: '${roleNamePrefix} network join'
    description: 'valerix-backup geo-restore with private access: place the new server in a delegated subnet and register it in a private DNS zone.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/subnets/join/action'
          'Microsoft.Network/privateDnsZones/join/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscriptionScope
    ]
  }
}

// IDs of the conditional definitions, spelled out (the same value as
// `.id`, without a reference to a resource that may not be deployed).
var statusReaderId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(subscriptionScope, roleNamePrefix, 'status-reader'))
var networkJoinerId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(subscriptionScope, roleNamePrefix, 'network-join'))

// Read on each server's resource group: azure-check, geo-restore preflight.
module readServers 'modules/rg-role-assignment.bicep' = [for rg in serverResourceGroups: {
  name: 'valerix-read-${uniqueString(rg)}'
  scope: resourceGroup(rg)
  params: {
    roleDefinitionId: serverReader.id
    principalId: principalId
    assignmentDescription: 'valerix-backup: read the PostgreSQL flexible servers here (azure-check, geo-restore preflight).'
  }
}]

// Write on the recovery resource group only: the geo-restored server.
module restoreIntoRecoveryGroup 'modules/rg-role-assignment.bicep' = {
  name: 'valerix-restore-${uniqueString(recoveryResourceGroup)}'
  scope: resourceGroup(recoveryResourceGroup)
  params: {
    roleDefinitionId: geoRestorer.id
    principalId: principalId
    assignmentDescription: 'valerix-backup geo-restore: create the restored PostgreSQL flexible server here.'
  }
}

// The lifecycle policy of the one storage account.
module applyLifecyclePolicy 'modules/storage-role-assignment.bicep' = {
  name: 'valerix-policy-${uniqueString(storageResourceGroup, storageAccountName)}'
  scope: resourceGroup(storageResourceGroup)
  params: {
    storageAccountName: storageAccountName
    roleDefinitionId: lifecyclePolicyWriter.id
    principalId: principalId
    assignmentDescription: 'valerix-backup lifecycle-policy --apply.'
  }
}

resource statusReads 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (subscriptionWideStatusReads) {
  name: guid(subscriptionScope, principalId, statusReaderId)
  properties: {
    roleDefinitionId: statusReaderId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'valerix-backup: paired regions and geo-restore operation status.'
  }
  dependsOn: [
    statusReader
  ]
}

module joinRecoveryNetwork 'modules/rg-role-assignment.bicep' = [for rg in recoveryNetworkResourceGroups: {
  name: 'valerix-network-${uniqueString(rg)}'
  scope: resourceGroup(rg)
  params: {
    roleDefinitionId: networkJoinerId
    principalId: principalId
    assignmentDescription: 'valerix-backup geo-restore: join the recovery subnet and private DNS zone here.'
  }
  dependsOn: [
    networkJoiner
  ]
}]

output serverReaderRoleId string = serverReader.id
output geoRestoreRoleId string = geoRestorer.id
output lifecyclePolicyRoleId string = lifecyclePolicyWriter.id
