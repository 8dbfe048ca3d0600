package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	infrav1 "github.com/sortie-dev/sortie/gen/sortie/infra/v1"
	"github.com/sortie-dev/sortie/gen/sortie/infra/v1/infrav1connect"
	"github.com/sortie-dev/sortie/identity"
	"github.com/sortie-dev/sortie/store/redistest"
)

// credentialToken creates a credential with roles through REST and returns its id and a
// token for it.
func (ts *testServer) credentialToken(t *testing.T, name string, roles ...string) (id, token string) {
	t.Helper()
	r := ts.do(t, "POST", "/credentials", ts.adminToken(t), map[string]any{"name": name, "roles": roles})
	if r.Status != http.StatusCreated {
		t.Fatalf("create credential %s: %d %s", name, r.Status, r.Body)
	}
	c := decode[struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}](t, r.Body)
	return c.ClientID, ts.token(t, c.ClientID, c.ClientSecret, "")
}

// TestRevokedTokens: once a credential is deleted its tokens are refused on REST and Connect
// (a deleted admin cannot mint a new admin), and once its roles shrink its tokens lose the
// removed scopes.
func TestRevokedTokens(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOptions{})
	admin := ts.adminToken(t)

	t.Run("deleted", func(t *testing.T) {
		id, tok := ts.credentialToken(t, "ex-admin", identity.RoleOrganizationAdmin)
		if r := ts.do(t, "GET", "/credentials", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("before the delete: %d %s", r.Status, r.Body)
		}
		if r := ts.do(t, "DELETE", "/credentials/"+id, admin, nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		before := ts.do(t, "GET", "/credentials", admin, nil).Body
		e := wantError(t, "REST with a deleted credential's token", ts.do(t, "POST", "/credentials", tok,
			map[string]any{"name": "backdoor", "roles": []string{identity.RoleOrganizationAdmin}}), http.StatusUnauthorized)
		if !strings.Contains(e.Errors[0].Message, "deleted") {
			t.Errorf("401 message %q does not say the credential was deleted", e.Errors[0].Message)
		}
		if after := ts.do(t, "GET", "/credentials", admin, nil).Body; string(after) != string(before) {
			t.Errorf("a revoked token changed the credentials: %s", after)
		}
		r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/WhoAmI", tok, "{}")
		if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "unauthenticated") {
			t.Errorf("Connect with a deleted credential's token: %d %s", r.Status, r.Body)
		}
	})

	t.Run("roles reduced", func(t *testing.T) {
		id, tok := ts.credentialToken(t, "shrinking", identity.RoleOrganizationAdmin)
		if r := ts.do(t, "PUT", "/credentials/"+id+"/roles", admin, []string{identity.RoleDeploymentsFullAccess}); r.Status != http.StatusOK {
			t.Fatalf("set roles: %d %s", r.Status, r.Body)
		}
		wantError(t, "REST needing a removed scope", ts.do(t, "GET", "/credentials", tok, nil), http.StatusForbidden)
		r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/ListCredentials", tok, "{}")
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "permission_denied") {
			t.Errorf("Connect needing a removed scope: %d %s", r.Status, r.Body)
		}
		who := decode[struct {
			Principal struct {
				Roles  []string `json:"roles"`
				Scopes []string `json:"scopes"`
			} `json:"principal"`
		}](t, ts.do(t, "POST", "/sortie.identity.v1.IdentityService/WhoAmI", tok, "{}").Body)
		if !slices.Equal(who.Principal.Scopes, []string{"manage:deploy", "read:deploy", "read:infrastructure:data"}) || len(who.Principal.Roles) != 0 {
			t.Errorf("WhoAmI after the roles shrank: %+v", who.Principal)
		}
	})
}

// TestStreamsEndWithTheirToken: a server stream ends, with a reason the client can act on,
// when its credential is deleted, loses the stream's scope, or its token expires, not only
// when it was opened.
func TestStreamsEndWithTheirToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		end      func(t *testing.T, ts *testServer, id string)
		wantCode connect.Code
		wantText string
	}{
		{
			name: "credential deleted",
			end: func(t *testing.T, ts *testServer, id string) {
				if r := ts.do(t, "DELETE", "/credentials/"+id, ts.adminToken(t), nil); r.Status != http.StatusNoContent {
					t.Fatalf("delete: %d %s", r.Status, r.Body)
				}
			},
			wantCode: connect.CodeUnauthenticated, wantText: "deleted",
		},
		{
			name: "scope removed",
			end: func(t *testing.T, ts *testServer, id string) {
				if r := ts.do(t, "PUT", "/credentials/"+id+"/roles", ts.adminToken(t), []string{identity.RoleRemoteNetworkAgent}); r.Status != http.StatusOK {
					t.Fatalf("set roles: %d %s", r.Status, r.Body)
				}
			},
			wantCode: connect.CodePermissionDenied, wantText: identity.ScopeReadInfrastructure,
		},
		{
			name:     "token expired",
			end:      func(_ *testing.T, ts *testServer, _ string) { ts.clock.Advance(testTTL) },
			wantCode: connect.CodeUnauthenticated, wantText: "expired",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverOptions{})
			fakeAgent(t, ts, ts.token(t, ts.admin.Admin.ClientID, ts.admin.Secret, identity.ScopeConnectAgentHub), "prod-west", "default")
			id, tok := ts.credentialToken(t, "watcher", identity.RoleDeploymentsFullAccess)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			client := infrav1connect.NewInfrastructureServiceClient(h2cClient(), ts.URL, connect.WithGRPC(), connect.WithInterceptors(bearerAll(tok)))
			stream, err := client.WatchAgents(ctx, connect.NewRequest(&infrav1.WatchAgentsRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			// The first event proves the stream is open before its token goes bad.
			if !stream.Receive() {
				t.Fatalf("no first event: %v", stream.Err())
			}
			tt.end(t, ts, id)
			for stream.Receive() {
			}
			var cerr *connect.Error
			if !errors.As(stream.Err(), &cerr) || cerr.Code() != tt.wantCode || !strings.Contains(cerr.Message(), tt.wantText) {
				t.Fatalf("stream ended with %v, want %v mentioning %q", stream.Err(), tt.wantCode, tt.wantText)
			}
			if ctx.Err() != nil {
				t.Fatal("the stream outlived its token until the test's deadline")
			}
		})
	}
}

// TestTokenCheckDuringOutage: when a token's credential cannot be checked (Redis is down and
// the last check is older than the TTL) the request is refused with 503, not let through and
// not blamed on the token. This Redis comes back empty, so then the token is refused: its
// credential no longer exists.
func TestTokenCheckDuringOutage(t *testing.T) {
	t.Parallel()
	rds := redistest.New(t)
	ts := startServer(t, serverOptions{redisURL: rds.URL()})
	tok := ts.adminToken(t)
	if r := ts.do(t, "GET", "/credentials", tok, nil); r.Status != http.StatusOK {
		t.Fatalf("before the outage: %d %s", r.Status, r.Body)
	}
	rds.Stop()
	ts.clock.Advance(identity.DefaultCredentialCheckTTL)
	e := wantError(t, "REST during the outage", ts.do(t, "GET", "/roles", tok, nil), http.StatusServiceUnavailable)
	if !strings.Contains(e.Errors[0].Message, "cannot check the access token") {
		t.Errorf("503 message %q", e.Errors[0].Message)
	}
	if r := ts.do(t, "POST", "/sortie.identity.v1.IdentityService/WhoAmI", tok, "{}"); r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "unavailable") {
		t.Errorf("Connect during the outage: %d %s", r.Status, r.Body)
	}
	rds.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := ts.do(t, "GET", "/roles", tok, nil)
		if r.Status != http.StatusServiceUnavailable {
			e := wantError(t, "after Redis came back empty", r, http.StatusUnauthorized)
			if !strings.Contains(e.Errors[0].Message, "deleted") {
				t.Errorf("401 message %q", e.Errors[0].Message)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still 503 after Redis came back: %s", r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
