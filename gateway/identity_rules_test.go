package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
)

// TestIdentityNameRulesSameOnRESTAndConnect sends names that break the rules declared in
// identity.proto over REST and over Connect: both refuse them (422 / invalid_argument) with
// the field named and the same words, and nothing is created.
func TestIdentityNameRulesSameOnRESTAndConnect(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	tok := ts.adminToken(t)
	client := identityv1connect.NewIdentityServiceClient(h2cClient(), ts.URL, connect.WithProtoJSON(), bearer(tok))
	ctx := context.Background()
	envsBefore := string(ts.do(t, "GET", "/environments", tok, nil).Body)
	credsBefore := string(ts.do(t, "GET", "/credentials", tok, nil).Body)

	cases := []struct {
		what, path, name string
		connect          func(name string) error
		want             string // the problem's message
	}{
		{"environment name too long", "/environments", strings.Repeat("e", 64), createEnv(client, ctx), "must be at most 63 characters"},
		{"environment name with a space", "/environments", "no spaces", createEnv(client, ctx), "does not match regex pattern `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`"},
		{"empty credential name", "/credentials", "", createCred(client, ctx), "must be at least 1 characters"},
		{"credential name too long", "/credentials", strings.Repeat("é", 129), createCred(client, ctx), "must be at most 128 characters"},
		{"credential name with a tab", "/credentials", "a\tb", createCred(client, ctx), "does not match regex pattern"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			e := wantError(t, "REST "+c.what, ts.do(t, "POST", c.path, tok, map[string]any{"name": c.name}), http.StatusUnprocessableEntity)
			var restMsg string // "name: <the rule's words>"
			for _, it := range e.Errors {
				if f, _ := it.Metadata["field"].(string); f != "name" {
					t.Errorf("REST problem on field %q, want name: %+v", f, it)
				}
				if strings.Contains(it.Message, c.want) {
					restMsg = it.Message
				}
			}
			if restMsg == "" {
				t.Fatalf("REST problems %+v, want one saying %q", e.Errors, c.want)
			}
			err := c.connect(c.name)
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("Connect: %v, want invalid_argument", err)
			}
			var cerr *connect.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Connect error %T, want *connect.Error", err)
			}
			if msg := cerr.Message(); !strings.Contains(msg, restMsg) {
				t.Errorf("Connect message %q, want it to say %q as REST does", msg, restMsg)
			}
		})
	}
	if got := string(ts.do(t, "GET", "/environments", tok, nil).Body); got != envsBefore {
		t.Errorf("environments changed:\nbefore %s\nafter  %s", envsBefore, got)
	}
	if got := string(ts.do(t, "GET", "/credentials", tok, nil).Body); got != credsBefore {
		t.Errorf("credentials changed:\nbefore %s\nafter  %s", credsBefore, got)
	}
}

func createEnv(c identityv1connect.IdentityServiceClient, ctx context.Context) func(string) error {
	return func(name string) error {
		_, err := c.CreateEnvironment(ctx, connect.NewRequest(&identityv1.CreateEnvironmentRequest{Name: name}))
		return err
	}
}

func createCred(c identityv1connect.IdentityServiceClient, ctx context.Context) func(string) error {
	return func(name string) error {
		_, err := c.CreateCredential(ctx, connect.NewRequest(&identityv1.CreateCredentialRequest{Name: name}))
		return err
	}
}
