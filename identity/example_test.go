package identity_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store/boltstore"
)

// Example issues a client-credentials token to an organization's admin credential and
// verifies it, as the token endpoint and every API surface do.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sortie-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	masterKey, _, err := identity.LoadOrCreateMasterKey(filepath.Join(dir, "master.key"), true)
	if err != nil {
		log.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, "sortie.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	svc, err := identity.New(ctx, slog.New(slog.DiscardHandler), st, identity.Config{
		Issuer:      "https://sortie.example.com",
		Audiences:   []string{"https://api.sortie.example.com"},
		TokenTTL:    time.Hour,
		KeyRotation: 24 * time.Hour,
		MasterKey:   masterKey,
	})
	if err != nil {
		log.Fatal(err)
	}
	org, err := svc.CreateOrganization(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}

	// A request as ParseTokenRequest returns it from POST /oauth/token.
	resp, oerr := svc.Token(ctx, identity.TokenRequest{
		GrantType:    identity.GrantClientCredentials,
		ClientID:     org.Admin.ClientID,
		ClientSecret: org.Secret,
		Scope:        "manage:deploy read:deploy",
	}, "192.0.2.10")
	if oerr != nil {
		log.Fatal(oerr)
	}

	p, err := svc.Verifier().Verify(ctx, resp.AccessToken)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("organization:", p.OrgName)
	fmt.Println("roles:", strings.Join(p.Roles, ", "))
	fmt.Println("scopes:", strings.Join(p.Scopes, " "))
	fmt.Println("may read deployments:", p.HasScope(identity.ScopeReadDeploy))
	fmt.Println("may manage credentials:", p.HasScope(identity.ScopeManageCredentials))
	// Output:
	// organization: acme
	// roles: Organization Admin
	// scopes: manage:deploy read:deploy
	// may read deployments: true
	// may manage credentials: false
}
