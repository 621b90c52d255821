// Offsite storage for valerix-backup: a storage account, the `database-backups`
// container, versioning and soft delete, the lifecycle policy that enforces the
// offsite retention, and the agent's access to the container.
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

@description('Principal (object) ID of the backup agent\'s managed identity; it gets Storage Blob Data Owner on the container (blob index tags need it).')
param principalId string

// Must equal `container` in the [azure] section of valerix-backup.toml, and the
// container name in the generated lifecycle policy below.
var containerName = 'database-backups'

// Built-in role Storage Blob Data Owner: Storage Blob Data Contributor's
// read/write/delete plus blob index tags (.../blobs/tags/read and
// .../blobs/tags/write), which uploads set and the lifecycle policy filters on
// (the `superseded` tag). Assigned on the container only.
var storageBlobDataOwner = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')

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
  }
}

resource agentBlobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, storageBlobDataOwner)
  scope: container
  properties: {
    roleDefinitionId: storageBlobDataOwner
    principalId: principalId
    principalType: 'ServicePrincipal'
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
