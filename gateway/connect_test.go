package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	identityv1 "github.com/sortie-dev/sortie/gen/sortie/identity/v1"
	"github.com/sortie-dev/sortie/gen/sortie/identity/v1/identityv1connect"
	"github.com/sortie-dev/sortie/identity"
)

// bearer adds a token to every request of a generated client.
func bearer(token string) connect.Option {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// TestConnectProtocols drives IdentityService with the generated client over HTTP/2 (h2c)
// in each protocol the one port speaks: Connect, gRPC and gRPC-Web.
func TestConnectProtocols(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	tok := ts.adminToken(t)
	protocols := []struct {
		name string
		opt  connect.ClientOption
	}{
		{"connect", connect.WithProtoJSON()},
		{"grpc", connect.WithGRPC()},
		{"grpc-web", connect.WithGRPCWeb()},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			ctx := context.Background()
			client := identityv1connect.NewIdentityServiceClient(h2cClient(), ts.URL, p.opt, bearer(tok))

			who, err := client.WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{}))
			if err != nil {
				t.Fatalf("WhoAmI: %v", err)
			}
			if pr := who.Msg.GetPrincipal(); pr.GetOrgName() != "acme" || pr.GetSubject() != ts.admin.Admin.ClientID || pr.GetType() != identityv1.PrincipalType_PRINCIPAL_TYPE_MACHINE {
				t.Fatalf("WhoAmI principal: %v", pr)
			}

			created, err := client.CreateCredential(ctx, connect.NewRequest(&identityv1.CreateCredentialRequest{
				Name: "via-" + p.name, Roles: []string{identity.RoleRemoteNetworkAgent},
			}))
			if err != nil {
				t.Fatalf("CreateCredential: %v", err)
			}
			if len(created.Msg.GetClientSecret()) < 43 || created.Msg.GetCredential().GetScopes()[0] != identity.ScopeConnectAgentHub {
				t.Fatalf("CreateCredential: %v", created.Msg)
			}
			// The new credential works at the token endpoint.
			ts.token(t, created.Msg.GetCredential().GetClientId(), created.Msg.GetClientSecret(), "")

			_, err = client.CreateCredential(ctx, connect.NewRequest(&identityv1.CreateCredentialRequest{Name: "via-" + p.name}))
			if connect.CodeOf(err) != connect.CodeAlreadyExists {
				t.Fatalf("duplicate CreateCredential: %v, want already_exists", err)
			}
			_, err = client.SetCredentialRoles(ctx, connect.NewRequest(&identityv1.SetCredentialRolesRequest{
				Id: created.Msg.GetCredential().GetId(), Roles: []string{"Nope"},
			}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("SetCredentialRoles with an unknown role: %v, want invalid_argument", err)
			}
			roles, err := client.SetCredentialRoles(ctx, connect.NewRequest(&identityv1.SetCredentialRolesRequest{
				Id: created.Msg.GetCredential().GetId(), Roles: []string{identity.RoleDeploymentsFullAccess},
			}))
			if err != nil || len(roles.Msg.GetRoles()) != 1 {
				t.Fatalf("SetCredentialRoles: %v %v", roles, err)
			}
			if _, err := client.DeleteCredential(ctx, connect.NewRequest(&identityv1.DeleteCredentialRequest{Id: created.Msg.GetCredential().GetId()})); err != nil {
				t.Fatalf("DeleteCredential: %v", err)
			}
			list, err := client.ListCredentials(ctx, connect.NewRequest(&identityv1.ListCredentialsRequest{}))
			if err != nil {
				t.Fatalf("ListCredentials: %v", err)
			}
			for _, c := range list.Msg.GetCredentials() {
				if c.GetId() == created.Msg.GetCredential().GetId() {
					t.Fatal("deleted credential is still listed")
				}
			}

			anon := identityv1connect.NewIdentityServiceClient(h2cClient(), ts.URL, p.opt)
			_, err = anon.WhoAmI(ctx, connect.NewRequest(&identityv1.WhoAmIRequest{}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("WhoAmI without a token: %v, want unauthenticated", err)
			}
		})
	}

	t.Run("grpc health", func(t *testing.T) {
		r := ts.do(t, "POST", "/grpc.health.v1.Health/Check", "", "{}")
		if r.Status != 200 || !strings.Contains(string(r.Body), `"SERVING_STATUS_SERVING"`) {
			t.Fatalf("health check: %d %s", r.Status, r.Body)
		}
	})

	t.Run("reflection is served", func(t *testing.T) {
		req, _ := http.NewRequest("POST", ts.URL+"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil)
		req.Header.Set("Content-Type", "application/grpc")
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("reflection: %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
		}
	})
}
