// Offsite storage for valerix-backup: a storage account, the `database-backups`
// container (with version-level immutability, for [azure] immutable), versioning
// and soft delete, the lifecycle policy that enforces the offsite retention, and
// the data-plane roles: the agent's (no delete) and the pruner's (delete).
//
//   az deployment group create --resource-group <rg> --template-file infra/bicep/storage.bicep \
//     --parameters storageAccountName=<name> principalId=<agent identity principal id>
//
// See infra/README.md.

@description('Name of the storage account: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Region of the storage account; the resource group\'s by default.')
param location string = resourceGroup().location

@description('Redundancy: geo-redundant, with (RAGRS) or without (GRS) read access to the secondary region.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
])
param skuName string = 'Standard_RAGRS'

@description('Allow account-key and SAS (shared key) authorization. Off: Entra ID only (managed identity); Azurite-style connection strings and account SAS then stop working.')
param allowSharedKeyAccess bool = false

@description('Principal (object) ID of the backup agent\'s managed identity; it gets the custom agent role on the container: read, write, tags, immutability policies; no delete.')
param principalId string

@description('Optional: principal (object) ID of the identity that runs `prune --offsite` (accounts without the lifecycle policy); it gets the custom pruner role on the container (read, tags, delete). Empty: no one may delete copies but the lifecycle policy.')
param prunerPrincipalId string = ''

@description('Version-level immutability support on the container, which [azure] immutable needs (each copy under its own time-based retention policy). Once a container holds immutable blobs it can only be deleted empty.')
param versionLevelImmutability bool = true

@description('Prefix of the custom role names (unique in a directory).')
param roleNamePrefix string = 'valerix-backup'

// Must equal `container` in the [azure] section of valerix-backup.toml, and the
// container name in the generated lifecycle policy below.
var containerName = 'database-backups'

// Data actions as "Azure permissions for Storage" and the Blob service's
// "Permissions for Blob service operations" list them
// (learn.microsoft.com/azure/role-based-access-control/permissions/storage,
// /rest/api/storageservices/authorize-with-azure-active-directory):
//   List Blobs, Get Blob, Get Blob Properties   .../blobs/read
//   Put Block, Put Block List (a new blob)      .../blobs/write, .../blobs/add/action
//   Get/Set Blob Tags (the `superseded` tag)    .../blobs/tags/read, .../blobs/tags/write
//   the immutability policy of each upload,     .../blobs/immutableStorage/runAsSuperUser/action
//     Set Blob Legal Hold (`hold`)              ("Write Blob legal hold and immutability policy")
//   Delete Blob (`prune --offsite`)             .../blobs/delete
// Set Blob Legal Hold is also listed, in the second page, under the action
// .../containers/write, which this role does not grant: if Azure asks for it,
// run `hold` as an identity that has it (Storage Blob Data Owner on the
// container). Not tested against Azure (see docs/design.md).
var blobs = 'Microsoft.Storage/storageAccounts/blobServices/containers/blobs'
var readActions = [
  '${blobs}/read'
  '${blobs}/tags/read'
]

// The agent: uploads (each under its immutability policy), reads, tags. No
// delete of any kind: a stolen agent credential cannot delete a copy, nor a
// previous version (.../deleteBlobVersion/action), nor overwrite one in
// place (an overwrite makes a new version and keeps the old). The built-in
// Storage Blob Data Owner would also do, with delete.
resource agentRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, roleNamePrefix, 'blob-agent')
  properties: {
    roleName: '${roleNamePrefix} blob agent'
    description: 'valerix-backup agent: list, read and upload backup blobs under an immutability policy, set their index tags. No delete.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/read'
        ]
        notActions: []
        dataActions: concat(readActions, [
          '${blobs}/write'
          '${blobs}/add/action'
          '${blobs}/tags/write'
          '${blobs}/immutableStorage/runAsSuperUser/action'
        ])
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// The pruner: deletes expired copies (`prune --offsite`) and repairs their
// tags; it may not write, nor touch an immutability policy or a hold, so
// even with both credentials an unlocked policy must be removed by someone
// else first. The built-in Storage Blob Data Contributor would also do
// (without tags/write: tag repairs then fail, as a warning).
resource prunerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, roleNamePrefix, 'blob-pruner')
  properties: {
    roleName: '${roleNamePrefix} blob pruner'
    description: 'valerix-backup prune --offsite: list and read backup blobs, repair their index tags, delete expired ones.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/read'
        ]
        notActions: []
        dataActions: concat(readActions, [
          '${blobs}/tags/write'
          '${blobs}/delete'
        ])
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
  properties: {
    // Overwriting or deleting a blob keeps the old content as a previous
    // version; the lifecycle rules below delete those with the copies.
    isVersioningEnabled: true
    // Deleted blobs and versions stay recoverable for 14 days.
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
    // Version-level WORM: each blob version may carry its own time-based
    // retention policy and legal hold (needs isVersioningEnabled above).
    immutableStorageWithVersioning: {
      enabled: versionLevelImmutability
    }
  }
}

resource agentBlobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, agentRole.id)
  scope: container
  properties: {
    roleDefinitionId: agentRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'valerix-backup agent: upload, read, tag; no delete.'
  }
}

resource prunerBlobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(prunerPrincipalId)) {
  name: guid(container.id, prunerPrincipalId, prunerRole.id)
  scope: container
  properties: {
    roleDefinitionId: prunerRole.id
    principalId: prunerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'valerix-backup prune --offsite: delete expired copies.'
  }
}

// Regenerate this block with `valerix-backup lifecycle-policy --format bicep`
// whenever the [azure] retention settings change, and paste it over the old
// one (from the BEGIN line to the END line; the rest of that output declares
// `storageAccount` as an existing account, which this file creates instead).
// BEGIN valerix-backup lifecycle-policy (generated: do not edit by hand)
// Deletes daily copies (Cool) more than 30 days and weekly copies (Cold) more than 90 days
// after upload, and the previous versions that blob versioning keeps of them, but only
// copies tagged superseded = true: valerix-backup tags a copy once a newer sound copy
// of its database and tier exists, so the newest sound copy is never deleted.
// Azure runs lifecycle policies about once a day, and a new or changed policy can take
// up to 24 h to apply: a copy may outlive its retention by a day or two.
// Early deletion: a blob deleted less than 30 days after entering Cool, or 90 days after
// entering Cold, is billed for the remaining days.
// With blob soft delete on, deleted copies stay recoverable (and billed) for its period.
// A storage account has one lifecycle policy: applying this one replaces all its rules
// (`valerix-backup lifecycle-policy --apply` merges with the rules that are not ours).
resource lifecyclePolicy 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  name: 'default'
  parent: storageAccount
  properties: {
    policy: {
      rules: [
        {
          name: 'valerixDailyDelete'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'database-backups/daily/'
              ]
              blobIndexMatch: [
                {
                  name: 'superseded'
                  op: '=='
                  value: 'true'
                }
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: 30
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 30
                }
              }
            }
          }
        }
        {
          name: 'valerixWeeklyDelete'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'database-backups/weekly/'
                'database-backups/reports/'
              ]
              blobIndexMatch: [
                {
                  name: 'superseded'
                  op: '=='
                  value: 'true'
                }
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: 90
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 90
                }
              }
            }
          }
        }
      ]
    }
  }
}
// END valerix-backup lifecycle-policy

@description('Resource ID of the storage account.')
output storageAccountId string = storageAccount.id

@description('Blob endpoint: `account_url` in the [azure] section.')
output blobEndpoint string = storageAccount.properties.primaryEndpoints.blob
