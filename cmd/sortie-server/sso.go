package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/sortie-dev/sortie/gateway"
	"github.com/sortie-dev/sortie/identity"
)

// oidcFlags holds the raw values of the --oidc-* flags until they are checked.
type oidcFlags struct {
	issuer, clientID, secret, secretFile, domains, claim, groupRoles, scopes, name string
}

func addOIDCFlags(fs *flag.FlagSet) *oidcFlags {
	f := &oidcFlags{}
	fs.StringVar(&f.issuer, "oidc-issuer", "", "issuer URL of an external OpenID Connect provider for single sign-on (register <public-url>"+gateway.SSOCallbackPath+" as its redirect URI); empty: none")
	fs.StringVar(&f.clientID, "oidc-client-id", "", "client id of Sortie at the OIDC provider")
	fs.StringVar(&f.secret, "oidc-client-secret", "", "client secret of Sortie at the OIDC provider (prefer --oidc-client-secret-file)")
	fs.StringVar(&f.secretFile, "oidc-client-secret-file", "", "file holding the client secret of Sortie at the OIDC provider")
	fs.StringVar(&f.domains, "oidc-allowed-domains", "", "comma-separated email domains that may sign in through the OIDC provider (default: any)")
	fs.StringVar(&f.claim, "oidc-groups-claim", identity.DefaultGroupsClaim, "ID token claim listing the person's groups")
	fs.StringVar(&f.groupRoles, "oidc-group-roles", "", "provider groups mapped to Sortie roles, entries separated by ';': group=Role (in the default environment) or group=environment:Role, e.g. 'deployers=Deployments Full Access;admins=Organization Admin;qa=staging:Deployments Full Access'. Roles: "+strings.Join(roleNames(), ", "))
	fs.StringVar(&f.scopes, "oidc-scopes", "openid,email,profile", "comma-separated scopes asked of the OIDC provider (some providers send groups only for a 'groups' scope)")
	fs.StringVar(&f.name, "oidc-name", "", "provider name on the sign-in button, \"Sign in with <name>\" (default: the issuer's host name)")
	return f
}

func roleNames() []string {
	var names []string
	for _, r := range identity.SystemRoles() {
		names = append(names, r.Name)
	}
	return names
}

// check validates the flags into an oidcConfig.
func (f *oidcFlags) check() (identity.SSOConfig, error) {
	if f.issuer == "" {
		if f.clientID != "" || f.secret != "" || f.secretFile != "" || f.groupRoles != "" || f.domains != "" {
			return identity.SSOConfig{}, errors.New("the --oidc-* flags need --oidc-issuer")
		}
		return identity.SSOConfig{}, nil
	}
	u, err := url.Parse(f.issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return identity.SSOConfig{}, fmt.Errorf("--oidc-issuer must be an absolute http(s) URL, got %q", f.issuer)
	}
	c := identity.SSOConfig{Issuer: f.issuer, ClientID: strings.TrimSpace(f.clientID), GroupsClaim: strings.TrimSpace(f.claim), Name: strings.TrimSpace(f.name)}
	if c.ClientID == "" {
		return identity.SSOConfig{}, errors.New("--oidc-issuer needs --oidc-client-id")
	}
	switch {
	case f.secret != "" && f.secretFile != "":
		return identity.SSOConfig{}, errors.New("give --oidc-client-secret or --oidc-client-secret-file, not both")
	case f.secretFile != "":
		data, err := os.ReadFile(f.secretFile)
		if err != nil {
			return identity.SSOConfig{}, fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		c.ClientSecret = strings.TrimSpace(string(data))
		if c.ClientSecret == "" {
			return identity.SSOConfig{}, fmt.Errorf("--oidc-client-secret-file: %s is empty", f.secretFile)
		}
	case f.secret != "":
		c.ClientSecret = f.secret
	default:
		return identity.SSOConfig{}, errors.New("--oidc-issuer needs --oidc-client-secret or --oidc-client-secret-file")
	}
	if c.GroupsClaim == "" {
		return identity.SSOConfig{}, errors.New("--oidc-groups-claim must not be empty")
	}
	if c.GroupRoles, err = identity.ParseGroupRoles(f.groupRoles); err != nil {
		return identity.SSOConfig{}, fmt.Errorf("--oidc-group-roles: %w", err)
	}
	if len(c.GroupRoles) == 0 {
		return identity.SSOConfig{}, errors.New("--oidc-issuer needs --oidc-group-roles: without a group mapped to a role nobody could sign in")
	}
	for d := range strings.SplitSeq(f.domains, ",") {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
		if d == "" {
			continue
		}
		if strings.ContainsAny(d, "@/ ") || !strings.Contains(d, ".") && d != "localhost" {
			return identity.SSOConfig{}, fmt.Errorf("--oidc-allowed-domains: %q is not an email domain", d)
		}
		c.AllowedDomains = append(c.AllowedDomains, d)
	}
	for s := range strings.SplitSeq(f.scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Scopes = append(c.Scopes, s)
		}
	}
	return c, nil
}
