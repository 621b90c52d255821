// One role assignment on a PostgreSQL flexible server of the resource group
// this module is deployed to. Used by roles.bicep (subscription scope) for
// the read replica that `valerix-backup failover` promotes.

targetScope = 'resourceGroup'

@description('Name of the existing flexible server.')
param serverName string

@description('Full resource ID of the role definition.')
param roleDefinitionId string

@description('Principal (object) ID of the identity that gets the role.')
param principalId string

@description('Why the identity has the role (shown in the portal).')
param assignmentDescription string = ''

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' existing = {
  name: serverName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(server.id, principalId, roleDefinitionId)
  scope: server
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
