package console_test

import (
	"testing"

	"github.com/sortie-dev/sortie/e2e/hydra"
)

// ssoProvider is the external OIDC provider the server trusts: Ory Hydra from e2e/hydra,
// with one person in a group the server maps to a role.
type ssoProvider struct {
	issuer, clientID, clientSecret string
	// name is the sign-in button's label ("Sign in with <name>").
	name string
	// email and password sign the person in at the provider's test login form; their group
	// maps to role.
	email, password, group, role string
}

func (p ssoProvider) serverFlags() []string {
	return []string{
		"--oidc-issuer", p.issuer, "--oidc-client-id", p.clientID, "--oidc-client-secret", p.clientSecret,
		"--oidc-name", p.name, "--oidc-group-roles", p.group + "=" + p.role,
	}
}

// startSSO starts Hydra with a client whose redirect URI is the server's SSO callback, and
// a person in the group "deployers", which the server maps to Deployments Full Access.
func startSSO(t *testing.T, public string) ssoProvider {
	t.Helper()
	idp := hydra.Start(t)
	p := ssoProvider{
		issuer: idp.Issuer(), name: "Hydra",
		email: "pat@deployers.example", password: "pat's provider password",
		group: "deployers", role: "Deployments Full Access",
	}
	idp.AddUser(p.email, p.password, p.group)
	p.clientID, p.clientSecret = idp.CreateClient(public + "/oauth/sso/callback")
	return p
}
