// One role assignment on the resource group this module is deployed to.
// Used by roles.bicep, which runs at subscription scope and can reach a
// resource group only through a module.

targetScope = 'resourceGroup'

@description('Full resource ID of the role definition.')
param roleDefinitionId string

@description('Principal (object) ID of the identity that gets the role.')
param principalId string

@description('Why the identity has the role (shown in the portal).')
param assignmentDescription string = ''

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
