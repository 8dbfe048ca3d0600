package console_test

import "testing"

// ssoProvider is the external OIDC provider the server trusts: Ory Hydra from e2e/hydra,
// with one person in a group the server maps to a role.
type ssoProvider struct {
	issuer, clientID, clientSecret string
	// name is the sign-in button's label ("Sign in with <name>").
	name string
	// login and password sign the person in at the provider's test login form; email is
	// theirs, role what their group maps to.
	login, password, email, role string
	group                        string
}

func (p ssoProvider) serverFlags() []string {
	if p.issuer == "" {
		return nil
	}
	return []string{
		"--oidc-issuer", p.issuer, "--oidc-client-id", p.clientID, "--oidc-client-secret", p.clientSecret,
		"--oidc-name", p.name, "--oidc-group-roles", p.group + "=" + p.role,
	}
}

// startSSO starts Hydra with a client whose redirect URI is the server's SSO callback.
func startSSO(t *testing.T, public string) ssoProvider {
	t.Helper()
	// TODO(browser): e2e/hydra lands with the sso helper's branch.
	return ssoProvider{name: "Hydra", login: "pat@example.com", password: "x", email: "pat@example.com", role: "Deployments Full Access", group: "deployers"}
}
