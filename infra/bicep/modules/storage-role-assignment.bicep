// One role assignment on a storage account of the resource group this module
// is deployed to. Used by roles.bicep (subscription scope).

targetScope = 'resourceGroup'

@description('Name of the existing storage account.')
param storageAccountName string

@description('Full resource ID of the role definition.')
param roleDefinitionId string

@description('Principal (object) ID of the identity that gets the role.')
param principalId string

@description('Why the identity has the role (shown in the portal).')
param assignmentDescription string = ''

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, roleDefinitionId)
  scope: storageAccount
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
