package identity

import (
	"slices"
	"strings"
)

// The scopes of api.md; each route and procedure declares which one it needs.
const (
	ScopeConnectAgentHub    = "connect:agentHub"
	ScopeReadInfrastructure = "read:infrastructure:data"
	ScopeReadDeploy         = "read:deploy"
	ScopeManageDeploy       = "manage:deploy"
	ScopeManageCredentials  = "manage:credentials"
	ScopeManageTenant       = "manage:tenant"
)

// Scopes lists every scope in a stable order.
var Scopes = []string{
	ScopeConnectAgentHub,
	ScopeReadInfrastructure,
	ScopeReadDeploy,
	ScopeManageDeploy,
	ScopeManageCredentials,
	ScopeManageTenant,
}

// impliedBy maps a scope to the scopes that also grant it.
var impliedBy = map[string][]string{
	ScopeReadDeploy: {ScopeManageDeploy},
}

// Grants reports whether holding the scopes in held allows an action that requires need.
func Grants(held []string, need string) bool {
	if slices.Contains(held, need) {
		return true
	}
	for _, s := range impliedBy[need] {
		if slices.Contains(held, s) {
			return true
		}
	}
	return false
}

// System role names; these roles exist in every environment.
const (
	RoleDeploymentsFullAccess = "Deployments Full Access"
	RoleRemoteNetworkAgent    = "Remote Network Agent"
	RoleOrganizationAdmin     = "Organization Admin"
)

// Grant is one permission of a role in Armory's vocabulary.
type Grant struct {
	Type       string `json:"type"`
	Resource   string `json:"resource"`
	Permission string `json:"permission"`
}

// Role groups scopes under a name.
type Role struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	Grants []Grant  `json:"grants"`
	System bool     `json:"system"`
}

// SystemRoles returns the roles present in every environment.
func SystemRoles() []Role {
	return []Role{
		{
			Name:   RoleDeploymentsFullAccess,
			Scopes: []string{ScopeManageDeploy, ScopeReadDeploy, ScopeReadInfrastructure},
			Grants: []Grant{{Type: "api", Resource: "deployment", Permission: "full"}},
			System: true,
		},
		{
			Name:   RoleRemoteNetworkAgent,
			Scopes: []string{ScopeConnectAgentHub},
			Grants: []Grant{{Type: "api", Resource: "agentHub", Permission: "full"}},
			System: true,
		},
		{
			Name:   RoleOrganizationAdmin,
			Scopes: slices.Clone(Scopes),
			Grants: []Grant{{Type: "api", Resource: "organization", Permission: "full"}},
			System: true,
		},
	}
}

// roleByName finds a system role.
func roleByName(name string) (Role, bool) {
	for _, r := range SystemRoles() {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// ScopesOf returns the sorted union of the scopes the named roles grant; unknown names grant
// nothing.
func ScopesOf(roles []string) []string {
	var out []string
	for _, name := range roles {
		if r, ok := roleByName(name); ok {
			out = append(out, r.Scopes...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// parseScopeParam splits an OAuth scope parameter (space-separated).
func parseScopeParam(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return slices.Compact(f)
}
